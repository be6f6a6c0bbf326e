"""The package's shape: dependencies go one way (no import cycle among orchestrator's modules), and every
module imports on its own, so none works only because another happened to be imported first."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "orchestrator"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The orchestrator modules `name` imports, anywhere in its body (function-level imports count too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        for t in targets:
            # `from . import x` names a module when x is one; otherwise the nearest known module above it
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("orchestrator"):
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph = {n: _imports(n, p, known) for n, p in mods.items()}
    # importing a.b.c runs a and a.b first: that is the package's own business, not a dependency edge
    return {n: {d for d in deps if not n.startswith(d + ".")} for n, deps in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_imports():
    graph = _graph()
    assert "orchestrator.pipeline" in graph["orchestrator.drive"]
    assert "orchestrator.executors.factory" in graph["orchestrator.pipeline"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_package():
    assert _cycles(_graph()) == []


def test_cli_is_a_leaf():
    graph = _graph()
    importers = sorted(n for n, deps in graph.items() if "orchestrator.cli" in deps)
    assert importers == []


def test_every_module_imports_on_its_own():
    names = sorted(_modules())
    # one interpreter per batch of modules, each module in a fresh one would take a minute; a batch runs each
    # import in a fresh subinterpreter-like state by clearing orchestrator's modules between them
    code = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for m in [m for m in sys.modules if m == 'orchestrator' or m.startswith('orchestrator.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    batches = [names[i::4] for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", code, *b], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for b in batches]
    problems = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        if p.returncode != 0:
            problems.append(out)
    assert not problems, "\n".join(problems)
    assert len(names) > 60


RECORDS = {"orchestrator.events", "orchestrator.journal", "orchestrator.migrations", "orchestrator.env",
           "orchestrator.errors", "orchestrator.settings"}
ABOVE_STAGES = ("orchestrator.cli", "orchestrator.commands", "orchestrator.drive", "orchestrator.pipeline",
                "orchestrator.fleet", "orchestrator.replay")


def test_dependencies_go_one_way():
    graph = _graph()
    for name in RECORDS:
        assert graph[name] <= RECORDS, f"{name} imports {sorted(graph[name] - RECORDS)}: records depend on records only"
    for name, deps in graph.items():
        if name.startswith(("orchestrator.stages", "orchestrator.executors", "orchestrator.agents", "orchestrator.paper")):
            up = sorted(d for d in deps if d.startswith(ABOVE_STAGES))
            assert not up, f"{name} imports {up}, which sit above the stages"
