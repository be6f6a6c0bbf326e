"""What a run left behind outside the journal: the tails of its logs and its change to the code (from the
workspace's git repository, else from the journal's recorded edit diffs)."""

from __future__ import annotations

import re
from pathlib import Path

from .paths import readable
from .readmodel import RunView
from .results import code_files
from .timeline import Timeline
from .workspace import Workspace

_SHA = re.compile(r"^[0-9a-f]{7,64}$")  # a commit id from the journal, never an option or a range for git


def log_tail(root: Path, log_dir: str, name: str, lines: int = 20) -> str | None:
    """The last lines of a run's stdout.txt / stderr.txt (None when the file is not there)."""
    if not log_dir:
        return None
    path = readable(root, Path(log_dir) / name)  # never through a link a run left in its place
    if path is None or not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64_000))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def run_diff(tl: Timeline, run: RunView, ws: Workspace | None = None, path: str = "experiment.py") -> str:
    """The run's change to `path` against the previous run's code: from git when the workspace has its
    repository, else the run's recorded edit diffs. A node of the search tree is diffed against its parent's
    code instead, over its code files (node_diff)."""
    if run.run in tl.model.nodes:
        return node_diff(tl, run, ws)
    if ws is not None and (ws.root / ".git").exists():
        new = run.code_commit
        old = tl.previous_code_commit(run.run)
        if new:
            if old is None:
                old = _root_commit(ws)
            if old:
                d = ws.diff(old, new, path)
                if d.strip() or old != new:
                    return d
    return _recorded(run, path)


def diff_base(tl: Timeline, run: RunView) -> str:
    """What `run_diff` compares the run against, in words."""
    node = tl.model.nodes.get(run.run)
    if node is None:
        return "the previous run"
    return "the template (its parent)" if node.parent == 0 else f"node {node.parent} (its parent)"


def node_diff(tl: Timeline, run: RunView, ws: Workspace | None = None) -> str:
    """A search node's change to its code files (results.code_files: the editable code, not notes or the plot
    script, as the engine puts them back from the parent) against the code it started from: `git diff
    base_commit..commit`; the parent's code when the node names no base, the template's for a draft. Without
    the repository, the node's recorded edit diffs."""
    node = tl.model.nodes[run.run]
    new = run.code_commit
    if ws is not None and (ws.root / ".git").exists() and new and _SHA.match(new):
        old = node.base_commit
        if not old:
            parent = tl.run(node.parent) if node.parent else None
            old = parent.code_commit if parent is not None else _root_commit(ws)
        if old and _SHA.match(old):
            paths = code_files(ws.manifest) if ws.template is not None else []
            if paths:
                return ws.diff(old, new, *paths)
    return _recorded(run, None)


def _root_commit(ws: Workspace) -> str | None:
    """The workspace's first commit: the template's code."""
    root_commit = ws.git("rev-list", "--max-parents=0", "HEAD", check=False).split()
    return root_commit[0] if root_commit else None


def _recorded(run: RunView, path: str | None) -> str:
    """The run's recorded edit diffs (of `path`; of every file when None)."""
    parts = [e.diff for e in run.edits
             if e.diff and (path is None or path in e.files or not e.files or path in e.diff)]
    return "\n".join(p.rstrip("\n") for p in parts)
