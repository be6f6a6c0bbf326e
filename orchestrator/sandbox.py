"""Isolation levels for experiment processes: `bwrap` (bubblewrap) where it works, else `none`.

`bwrap`: the whole file system read-only, a private `/tmp`, no network (own network namespace: even
127.0.0.1 is a different, empty loopback), own pid, ipc and uts namespaces, the process dies with the
orchestrator. Writable: the workspace and the experiment's cache folder only — and inside the
workspace the orchestrator's state (`.orchestrate/`: journal, hashes, pristine copies), its history
(`.git/`) and the manifest's protected files are bound read-only again on top, so a run cannot rewrite
its own record or its yardstick. `none`: no namespaces; the runner's rlimits, cgroup and watchdogs
still apply, and a changed protected file is caught afterwards (verdict `tampered`). Where neither a
pid namespace nor a cgroup holds the run, `reaper_argv` puts a subreaper between the runner and the
command: orphans of the run become its children, whatever they did to their session or environment,
and it ends them all when the command ends or when it is told to (SIGTERM).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError

LEVELS = ("none", "bwrap")
STATE_DIR = ".orchestrate"  # workspace.STATE_DIR (not imported: workspace imports the runner)


@functools.cache
def bwrap_problem() -> str | None:
    """None when bubblewrap exists and can make the namespaces we need here, else why not."""
    exe = shutil.which("bwrap")
    if not exe:
        return "bubblewrap (bwrap) is not installed"
    try:
        cp = subprocess.run(
            [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--unshare-all",
             "--die-with-parent", "--new-session", "--", "/bin/true"],
            check=False, capture_output=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be started: {exc}"
    if cp.returncode != 0:
        err = cp.stderr.decode(errors="replace").strip().splitlines()
        return f"bwrap cannot make namespaces here: {err[-1] if err else 'exit code ' + str(cp.returncode)}"
    return None


def bwrap_available() -> bool:
    return bwrap_problem() is None


def resolve(level: str) -> str:
    """`auto` becomes `bwrap` where it works, else `none`; an explicit `bwrap` that cannot work is an error."""
    if level == "auto":
        return "bwrap" if bwrap_available() else "none"
    if level == "bwrap" and not bwrap_available():
        raise InputError(None, f"isolation bwrap was asked for, but {bwrap_problem()} (use --isolation none or auto)")
    if level not in LEVELS:
        raise InputError(None, f"unknown isolation level {level!r} (have: auto, {', '.join(LEVELS)})")
    return level


def workspace_read_only(cwd: Path) -> list[Path]:
    """What must stay read-only inside a workspace: its state, its history, its protected files.

    Empty when `cwd` is not a workspace (no `.orchestrate/protected.json`)."""
    root = Path(cwd).resolve()
    state = root / STATE_DIR
    try:
        protected = json.loads((state / "protected.json").read_text())
    except (OSError, ValueError):
        return []
    out = [state]
    if (root / ".git").exists():
        out.append(root / ".git")
    out += [root / rel for rel in protected if (root / rel).exists()]
    return out


def hidden_by_private_tmp(executable: str) -> list[Path]:
    """The interpreter's environments that live under /tmp, which the sandbox replaces by a private
    tmpfs: bound back read-only so that `--python /tmp/env/bin/python` still runs. Every hop of a
    symlink chain counts (a venv's python links to its base interpreter, which may be under /tmp too)."""
    cur = Path(shutil.which(executable) or executable)
    roots: list[Path] = []
    seen: set[Path] = set()
    while cur.is_absolute() and cur not in seen and len(seen) < 40:
        seen.add(cur)
        root = cur.parent.parent if cur.parent.name == "bin" else cur.parent
        if root.is_relative_to("/tmp") and root != Path("/tmp") and root not in roots:
            roots.append(root)
        if not cur.is_symlink():
            break
        target = Path(os.readlink(cur))
        cur = target if target.is_absolute() else cur.parent / target
    return roots


def bwrap_argv(argv: Sequence[str], *, cwd: Path, writable: Sequence[Path], read_only: Sequence[Path] = ()) -> list[str]:
    """Wrap argv: read-only root, private /tmp, no network, own pid namespace, only `writable` writable,
    and `read_only` (paths inside the writable ones) bound read-only on top of them."""
    out = [
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--unshare-all", "--die-with-parent", "--new-session",
    ]
    for path in writable:
        p = Path(path).resolve()
        p.mkdir(parents=True, exist_ok=True)
        out += ["--bind", str(p), str(p)]
    for path in read_only:  # after the writable binds: a later mount covers an earlier one
        p = Path(path).resolve()
        if p.exists():
            out += ["--ro-bind", str(p), str(p)]
    out += ["--chdir", str(Path(cwd).resolve()), "--", *argv]
    return out


# The subreaper (Linux PR_SET_CHILD_SUBREAPER), run with -I -S: stdlib only, a few milliseconds.
REAPER = r"""
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
me = os.getpid()
report, argv = sys.argv[1], sys.argv[2:]
def descendants():
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as fh:
                    parent[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, todo = set(), [me]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        todo += kids
    return found
ended = set()
def end_all():
    for _ in range(200):
        pids = descendants()
        if not pids:
            break
        ended.update(pids)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
    try:
        with open(report, "w") as fh:
            fh.write(str(len(ended)))
    except OSError:
        pass
def on_term(*_):
    end_all()
    os._exit(128 + signal.SIGTERM)
signal.signal(signal.SIGTERM, on_term)
child = os.fork()
if child == 0:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write("cannot start %s: %s\n" % (argv[0], exc.strerror))
        os._exit(127)
while True:
    pid, status = os.waitpid(-1, 0)
    if pid == child:
        break
end_all()
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    signal.signal(sig, signal.SIG_DFL)
    os.kill(me, sig)
    os._exit(128 + sig)
os._exit(os.WEXITSTATUS(status))
"""


def reaper_argv(argv: Sequence[str], *, report: Path) -> list[str]:
    """argv under a subreaper that ends every descendant when argv ends (or on SIGTERM), and writes how
    many it ended to `report`."""
    return [sys.executable, "-I", "-S", "-c", REAPER, str(report), *argv]
