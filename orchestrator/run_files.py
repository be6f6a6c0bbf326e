"""What a run left behind outside the journal: the tails of its logs and its change to the code (from the
workspace's git repository, else from the journal's recorded edit diffs)."""

from __future__ import annotations

from pathlib import Path

from .paths import readable
from .readmodel import RunView
from .timeline import Timeline
from .workspace import Workspace


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
    repository, else the run's recorded edit diffs."""
    if ws is not None and (ws.root / ".git").exists():
        new = run.code_commit
        old = tl.previous_code_commit(run.run)
        if new:
            if old is None:
                root_commit = ws.git("rev-list", "--max-parents=0", "HEAD", check=False).split()
                old = root_commit[0] if root_commit else None
            if old:
                d = ws.diff(old, new, path)
                if d.strip() or old != new:
                    return d
    parts = [e.diff for e in run.edits if e.diff and (path in e.files or not e.files or path in e.diff)]
    return "\n".join(p.rstrip("\n") for p in parts)
