"""The data plane's Python: a cached virtual environment built from a template's requirements.txt
(keyed by the file's hash), or an interpreter the user names with --python."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import sys
from pathlib import Path

from pydantic import BaseModel

from .errors import EnvironmentBuildError, InputError, PackageNotFound
from .runner import tool
from .template import Template


def env_dir(cache: Path, requirements: Path | bytes) -> Path:
    """Where the environment for these requirements lives: keyed by their hash (a file, or the inferred text)."""
    data = requirements if isinstance(requirements, bytes) else requirements.read_bytes()
    return cache / "envs" / hashlib.sha256(data).hexdigest()[:16]


def check_python(python: str) -> str:
    """The interpreter's path when it runs and is Python 3.9 or newer; EnvironmentBuildError otherwise."""
    exe = shutil.which(python) or python
    res = tool([exe, "-c", "import sys; print(sys.version_info[:2] >= (3, 9))"], timeout_s=60)
    if res.exit_code != 0 or res.stdout.strip() != "True":
        raise InputError(python, "--python: not a working Python 3.9+ interpreter")
    return exe


class Requirements(BaseModel):
    """What the experiment's environment is built from: the template's requirements.txt, or (an AI Scientist
    folder without one) the packages its imports name."""

    text: str
    source: str  # for messages: the file, or "<folder>'s imports"
    file: Path | None = None  # the requirements.txt (pip reads it, its relative paths as written); None: inferred
    inferred: bool = False

    def key(self) -> Path | bytes:
        """What the environment's folder is keyed by: the file's bytes, or the inferred text."""
        return self.file if self.file is not None else self.text.encode()


def requirements_of(template: Template) -> Requirements | None:
    """The template's requirements; None when the experiment runs on this interpreter (nothing to install)."""
    from . import adopt, imports

    req = template.requirements_file
    if req is not None:
        text = req.read_text()
        return Requirements(text=text, source=str(req), file=req) if text.strip() else None
    if adopt.is_ai_scientist(template.root):
        pkgs = imports.requirements(template.root)
        if pkgs and not has_modules(imports.modules(template.root)):
            return Requirements(text="".join(f"{p}\n" for p in pkgs), source=f"{template.root}'s imports", inferred=True)
    return None


def has_modules(modules: list[str]) -> bool:
    """Whether this interpreter finds every module's top-level package (found, not imported: nothing runs). Then
    an AI Scientist folder runs on it, as it did on the user's own environment, and nothing is built."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m.split(".", 1)[0]) is not None for m in modules)
    except (ImportError, ValueError):
        return False


def ready_python(template: Template, cache: Path) -> str | None:
    """The interpreter a run would use, when it needs no building: this one, or the environment already built."""
    req = requirements_of(template)
    if req is None:
        return sys.executable
    target = env_dir(cache, req.key())
    return str(target / "bin" / "python") if (target / ".ready").exists() else None


def pip_problem(template: Template, req: Requirements, output: str) -> str:
    """One line for a failed install: the package pip could not find (with pip's own line, the module that
    imports it, and how to provide it), else pip's last error lines in full."""
    from . import imports

    missing = imports.missing_package(output)
    if missing is not None:
        pkg, line = missing
        users = [i for i in imports.third_party(template.root) if imports.norm(i.package) == imports.norm(pkg)]
        where = f" (imported as {users[0].module} at {users[0].where()})" if users else ""
        how = ("pass --python with an interpreter that has it (e.g. your AI Scientist environment), or add a "
               f"requirements.txt to the template that says where it comes from (e.g. `{pkg} @ git+https://…`)")
        return f"{req.source}: {pkg}{where} is not on the package index (pip: {line}): {how}"
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")] or lines[-3:]
    return f"{req.source}: building the experiment environment failed: {' | '.join(errors[-4:])}"


def experiment_python(template: Template, cache: Path, *, override: str | None = None, log=print) -> str:
    """The interpreter that runs the template's experiment, building its environment when needed."""
    if override:
        return check_python(override)
    req = requirements_of(template)
    if req is None:
        return sys.executable
    target = env_dir(cache, req.key())
    python = target / "bin" / "python"
    ready = target / ".ready"
    if ready.exists():
        return str(python)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another orchestrator may be building the same environment
        if ready.exists():
            return str(python)
        what = f"the packages its imports name ({', '.join(req.text.split())})" if req.inferred else req.source
        log(f"building the experiment environment from {what} into {target} (once; cached by their hash)")
        shutil.rmtree(target, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(target)],
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req.file or "/dev/stdin")],
        ]
        for argv in steps:
            res = tool(argv, timeout_s=3600, input_text=req.text if argv[-1] == "/dev/stdin" else None)
            if res.exit_code != 0:
                shutil.rmtree(target, ignore_errors=True)
                problem = pip_problem(template, req, f"{res.stdout}\n{res.stderr}")
                raise (PackageNotFound if "is not on the package index" in problem else EnvironmentBuildError)(problem)
        (target / "requirements.txt").write_text(req.text)
        ready.write_text("ok\n")
    return str(python)


def resolvable(template: Template, req: Requirements) -> None:
    """Whether every requirement is on the index, without installing anything (`pip install --dry-run`):
    what `check` says when the environment is not built yet. PackageNotFound in one line otherwise."""
    res = tool([sys.executable, "-m", "pip", "install", "--dry-run", "-q", "--no-deps", "--ignore-installed",
                "--disable-pip-version-check", "-r", str(req.file or "/dev/stdin")], timeout_s=600,
               input_text=None if req.file else req.text)
    if res.exit_code != 0:
        problem = pip_problem(template, req, f"{res.stdout}\n{res.stderr}")
        raise (PackageNotFound if "is not on the package index" in problem else EnvironmentBuildError)(problem)


IMPORT_PROBE = """\
import importlib, json, sys
bad = {}
for m in sys.argv[1:]:
    try:
        importlib.import_module(m)
    except BaseException as exc:  # noqa: BLE001 - every failure is the answer
        bad[m] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
print(json.dumps(bad))
"""


def import_problems(template: Template, python: str, *, isolation: str, work: Path) -> dict[str, str]:
    """Every third-party module the template imports, imported with `python` in the sandbox (no network, a
    scratch folder as the working directory, so the template's own files shadow nothing): module -> why it failed."""
    import json
    import tempfile

    from . import imports
    from .runner import RunSpec, run

    mods = imports.modules(template.root)
    if not mods:
        return {}
    work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="imports_", dir=work))
    try:
        (scratch / "probe.py").write_text(IMPORT_PROBE)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
        rec = run(RunSpec(argv=[python, "probe.py", *mods], cwd=scratch, log_dir=scratch / "logs", timeout_s=600,
                          isolation=isolation, env=env, key="check/imports"))
        out = Path(rec.stdout_path).read_text(errors="replace").strip().splitlines() if rec.stdout_path else []
        try:
            return json.loads(out[-1]) if rec.ok and out else {"(probe)": _probe_failed(rec)}
        except json.JSONDecodeError:
            return {"(probe)": _probe_failed(rec)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_environment(template: Template, cache: Path, *, override: str | None = None,
                      isolation: str = "auto") -> str:
    """What `check` says of the experiment's environment, running no experiment: every third-party module the
    template imports is imported with the interpreter a run would use (--python, or the environment already
    built); when that is not built yet, the inferred packages of an AI Scientist folder are resolved against the
    index without installing. A module that does not import, or a package not on the index, is one line (exit 2)."""
    from . import imports
    from .sandbox import resolve

    python = check_python(override) if override else ready_python(template, cache)
    mods = imports.modules(template.root)
    if python is None:
        req = requirements_of(template)
        assert req is not None
        if not req.inferred:
            return (f"environment: not built yet (from {req.source}, once, at the first run); its imports are not "
                    f"checked: pass --python to check them with an interpreter")
        resolvable(template, req)
        return (f"environment: not built yet; the {len(req.text.split())} package(s) its imports name are on the "
                f"index ({', '.join(req.text.split())}); built once at the first run, or pass --python")
    require_imports(template, python, isolation=resolve(isolation), work=cache / "check")
    return f"environment: {python} imports all {len(mods)} module(s) the template imports"


def require_imports(template: Template, python: str, *, isolation: str, work: Path) -> None:
    """InputError (one line, exit 2) naming every third-party module the template imports that does not import
    with `python`, each with its file, line and error: what `check` says, and what an adopted run says before
    its baseline runs."""
    from . import imports

    bad = import_problems(template, python, isolation=isolation, work=work)
    if bad:
        where = {i.module: i.where() for i in reversed(imports.third_party(template.root))}
        listed = "; ".join(f"{m} ({where.get(m, '?')}: {why})" for m, why in bad.items())
        raise InputError(template.root, f"{len(bad)} module(s) the template imports do not import with {python}: "
                                        f"{listed}: pass --python with an environment that has them, or add a "
                                        f"requirements.txt to the template")


def _probe_failed(rec) -> str:
    tail = Path(rec.stderr_path).read_text(errors="replace").strip().splitlines()[-1:] if rec.stderr_path else []
    return f"the import check itself failed ({rec.limit_detail or f'exit {rec.exit_code}'}): {' '.join(tail)}"


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.pyenv TEMPLATE_DIR`: build (or find) the template's environment, print its python."""
    import argparse
    import sys as _sys

    from .env import cache_home
    from .errors import OrchestratorError
    from .template import find_template, load_template

    parser = argparse.ArgumentParser(prog="python -m orchestrator.pyenv")
    parser.add_argument("template")
    args = parser.parse_args(argv)
    try:
        template = load_template(find_template(args.template))
        print(experiment_python(template, cache_home(), log=lambda s: print(s, file=_sys.stderr)))
    except OrchestratorError as exc:
        print(f"orchestrate: {exc}", file=_sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
