"""The packages a template needs, read from its imports (an AI Scientist folder ships no requirements.txt).

Every `.py` file the template ships is parsed (never run); each top-level `import a.b` / `from a.b import c`
names a module. The standard library, `__future__`, relative imports and the template's own modules (a
`datasets.py` beside experiment.py shadows the `datasets` package, as it does when the script runs) are
left out, and so are imports guarded by `except ImportError` (optional by the script's own word). What is
left maps to a package on the index: the module's name, or the known distribution name (sklearn ->
scikit-learn, PIL -> pillow, cv2 -> opencv-python, ...)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from pydantic import BaseModel

# A module whose distribution on the index has another name. Anything not here installs under its own name.
PACKAGE_OF = {
    "sklearn": "scikit-learn", "PIL": "pillow", "cv2": "opencv-python", "yaml": "PyYAML",
    "skimage": "scikit-image", "bs4": "beautifulsoup4", "attr": "attrs", "dateutil": "python-dateutil",
    "dotenv": "python-dotenv", "Crypto": "pycryptodome", "serial": "pyserial", "docx": "python-docx",
    "pptx": "python-pptx", "magic": "python-magic", "IPython": "ipython", "Bio": "biopython",
    "OpenGL": "PyOpenGL", "igraph": "python-igraph", "mpl_toolkits": "matplotlib", "pkg_resources": "setuptools",
    "google.protobuf": "protobuf", "jwt": "PyJWT", "git": "GitPython", "gym": "gym", "fitz": "PyMuPDF",
    "tensorflow_datasets": "tensorflow-datasets", "sentence_transformers": "sentence-transformers",
    "huggingface_hub": "huggingface-hub", "umap": "umap-learn", "faiss": "faiss-cpu", "jax": "jax",
    "torch_geometric": "torch-geometric", "lightning": "lightning", "wandb": "wandb",
}
_SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", "latex"}
_OPTIONAL = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


class Import(BaseModel):
    """One import statement's module, where it is, and the package that provides it."""

    module: str  # dotted, as written (`npeet.entropy_estimators`; `from a.b import c` -> `a.b`)
    file: str  # relative to the template
    line: int
    package: str = ""

    @property
    def top(self) -> str:
        return self.module.split(".", 1)[0]

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def package_of(module: str) -> str:
    """The index's name for the distribution that provides a module (`sklearn.metrics` -> scikit-learn)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in PACKAGE_OF:
            return PACKAGE_OF[".".join(parts[:n])]
    return parts[0]


def source_files(root: Path) -> list[Path]:
    """The template's Python files (run folders, caches and the paper's folder aside)."""
    out = []
    for p in sorted(Path(root).rglob("*.py")):
        rel = p.relative_to(root)
        if p.is_symlink() or rel.parts[0].startswith(("run_", ".")) or any(part in _SKIP_DIRS for part in rel.parts):
            continue
        out.append(p)
    return out


def local_modules(root: Path) -> set[str]:
    """Names the template's own files take on sys.path (the script's folder comes first): `x.py` and `x/`."""
    root = Path(root)
    names = {p.stem for p in root.glob("*.py")}
    names |= {p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    return names


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in a `try:` body whose handlers catch ImportError (an optional import)."""
    child, cur = node, parents.get(node)
    while cur is not None:
        if isinstance(cur, ast.Try) and child in cur.body:
            for h in cur.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if h.type is None or any(isinstance(n, ast.Name) and n.id in _OPTIONAL for n in names):
                    return True
        child, cur = cur, parents.get(cur)
    return False


def _imports_of(text: str, rel: str) -> list[Import]:
    try:
        tree = ast.parse(text, filename=rel)
    except SyntaxError:
        return []  # a file that does not parse imports nothing we can know; running it says why
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module]
        else:
            continue
        if _guarded(node, parents):
            continue
        out += [Import(module=m, file=rel, line=node.lineno) for m in mods]
    return out


def third_party(root: Path) -> list[Import]:
    """Every import of a module from outside the template and the standard library, in file and line order,
    each with its package."""
    root = Path(root)
    local = local_modules(root)
    skip = set(sys.stdlib_module_names) | {"__future__"} | local
    out = []
    for p in source_files(root):
        rel = p.relative_to(root).as_posix()
        for imp in _imports_of(p.read_text(encoding="utf-8", errors="replace"), rel):
            if imp.top not in skip:
                out.append(imp.model_copy(update={"package": package_of(imp.module)}))
    return out


def requirements(root: Path) -> list[str]:
    """The packages the template's imports need, sorted and unique (what an inferred requirements.txt holds)."""
    return sorted({i.package for i in third_party(root)}, key=str.lower)


def modules(root: Path) -> list[str]:
    """The distinct third-party modules to import when checking an interpreter, in first-seen order."""
    return list(dict.fromkeys(i.module for i in third_party(root)))


_NOT_FOUND = re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)")


def missing_package(pip_output: str) -> tuple[str, str] | None:
    """(package, pip's own line) when pip says a requirement is not on the index."""
    for line in pip_output.splitlines():
        m = _NOT_FOUND.search(line)
        if m:
            return m.group(1), line.strip()
    return None


def norm(name: str) -> str:
    """A distribution name as the index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()
