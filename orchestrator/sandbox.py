"""Isolation levels for experiment processes: `bwrap` (bubblewrap) where it works, else `none`.

`bwrap`: a sealed root. Only the system directories (`/usr`, `/bin`, `/lib*`, `/sbin`, `/etc` with its
secrets masked: shadow files, ssh host keys, sudoers, private TLS keys), the interpreter's environment
(every hop of its symlink chain, and the venv's base interpreter), the run's working folder and the
paths the caller names are bound; nothing else of the host exists inside, so the user's home (with the
orchestrator's config and provider keys), other workspaces and the orchestrator's own checkout are out
of reach. A private `/tmp`, no network (own network namespace: even 127.0.0.1 is a different, empty
loopback), own pid, ipc and uts namespaces, the process dies with the orchestrator. Inside a workspace:
its history (`.git/`), the manifest's protected files and every earlier run's folder are bound
read-only again on top; the orchestrator's state (`.orchestrate/`: journal, hashes, pristine copies,
the evaluation seed) is hidden by an empty read-only folder, but for the run's own home
(`.orchestrate/home`). `none`: no namespaces; the runner's rlimits, cgroup and watchdogs still apply,
and what a run changed that it must not (a protected file, an earlier run, `.git/config`, hooks) is
caught afterwards (verdict `tampered`). Where neither a pid namespace nor a cgroup holds the run,
`reaper_argv` puts a subreaper between the runner and the command: orphans of the run become its
children, whatever they did to their session or environment, and it ends them all when the command
ends or when it is told to (SIGTERM).
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError

LEVELS = ("none", "bwrap")
STATE_DIR = ".orchestrate"  # workspace.STATE_DIR (not imported: workspace imports the runner)
HOME_DIR = f"{STATE_DIR}/home"  # the run's writable home inside a workspace (per workspace, never shared)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
               "/var/lib/texmf")  # TeX Live's generated formats and font maps (Debian)
# inside /etc: what a run never needs and must never read (masked by an empty file or folder)
ETC_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d",
               "/etc/ssh", "/etc/ssl/private", "/etc/security/opasswd", "/etc/machine-id")


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


def earlier_runs(root: Path, *, except_: str | None = None) -> list[Path]:
    """The run folders already in a workspace (`run_0` and every `run_i`), but `except_` (the one being written)."""
    root = Path(root)
    skip = (root / except_).resolve() if except_ else None
    return sorted(p for p in root.glob("run_*") if p.is_dir() and not p.is_symlink() and p.resolve() != skip)


def homes() -> list[Path]:
    """The user's home folders (the account's and $HOME): never bound, nor any folder holding them."""
    out = []
    try:
        out.append(Path(pwd.getpwuid(os.getuid()).pw_dir).resolve())
    except KeyError:
        pass
    if os.environ.get("HOME"):
        out.append(Path(os.environ["HOME"]).resolve())
    return out


def interpreter_roots(executable: str) -> list[Path]:
    """The folders an interpreter needs: the root of every hop of its symlink chain (`<root>/bin/python`)
    and a venv's base interpreter (`pyvenv.cfg`'s `home`). A root that is, or holds, the user's home is
    narrowed to the executable's own folder: the home itself is never bound."""
    start = Path(shutil.which(executable) or executable)
    todo, roots, seen = [start], [], set()
    while todo and len(seen) < 40:
        cur = todo.pop()
        if not cur.is_absolute() or cur in seen:
            continue
        seen.add(cur)
        root = cur.parent.parent if cur.parent.name == "bin" else cur.parent
        cfg = root / "pyvenv.cfg"
        if cfg.is_file():
            for line in cfg.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() in ("home", "executable") and value.strip():
                    todo.append(Path(value.strip()) / "python3" if key.strip() == "home" else Path(value.strip()))
        if any(h.is_relative_to(root.resolve()) for h in homes()):
            root = cur.parent
        if root not in roots and root != Path("/"):
            roots.append(root)
        if cur.is_symlink():
            target = Path(os.readlink(cur))
            todo.append(target if target.is_absolute() else cur.parent / target)
    return roots


def _system_binds() -> list[str]:
    out: list[str] = []
    for d in SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():  # /lib -> usr/lib on merged-/usr systems
            out += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            out += ["--ro-bind", d, d]
    for secret in ETC_SECRETS:
        p = Path(secret)
        if p.is_dir() and not p.is_symlink():
            out += ["--tmpfs", secret, "--remount-ro", secret]
        elif p.exists():
            out += ["--ro-bind", "/dev/null", secret]
    if Path("/sys").is_dir():
        out += ["--ro-bind", "/sys", "/sys"]  # CPU topology for BLAS and torch; nothing of the user's
    return out


def gpu_devices() -> list[str]:
    """The GPU device nodes a run may use (NVIDIA's, and DRI render nodes): bound after `--dev`, whose
    minimal /dev has none. Which GPU a run sees is still CUDA_VISIBLE_DEVICES's (the executor's)."""
    dev = Path("/dev")
    found = sorted(str(p) for p in dev.glob("nvidia*") if not p.is_dir())
    found += [str(p) for p in (dev / "nvidia-caps").glob("*")] if (dev / "nvidia-caps").is_dir() else []
    return found + (["/dev/dri"] if (dev / "dri").is_dir() else [])


def bwrap_argv(argv: Sequence[str], *, cwd: Path, writable: Sequence[Path], read_only: Sequence[Path] = (),
               hidden: Sequence[Path] = (), rebind: Sequence[Path] = ()) -> list[str]:
    """Wrap argv in a sealed root: the system directories and the interpreter's environment read-only,
    a private /tmp, no network, own pid namespace; `writable` bound writable, `read_only` bound read-only
    (after the writable ones: a later mount covers an earlier one, so paths inside `writable` stay
    read-only), `hidden` replaced by an empty read-only folder, and `rebind` (paths inside `hidden`)
    bound writable again."""
    out = ["bwrap", *_system_binds(), "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for node in gpu_devices():
        out += ["--dev-bind-try", node, node]
    system = [Path(d) for d in SYSTEM_DIRS]
    for root in interpreter_roots(argv[0]) if argv else []:
        if root.exists() and not any(root.is_relative_to(d) for d in system):
            out += ["--ro-bind", str(root), str(root)]
    for path in writable:
        p = Path(path).resolve()
        p.mkdir(parents=True, exist_ok=True)
        out += ["--bind", str(p), str(p)]
    for path in read_only:
        p = Path(path).resolve()
        if p.exists():
            out += ["--ro-bind", str(p), str(p)]
    for path in hidden:
        p = Path(path).resolve()
        out += ["--tmpfs", str(p)]
        for inner in rebind:
            q = Path(inner).resolve()
            if q.is_relative_to(p):
                q.mkdir(parents=True, exist_ok=True)
                out += ["--dir", str(q), "--bind", str(q), str(q)]
        out += ["--remount-ro", str(p)]
    out += ["--remount-ro", "/", "--unshare-all", "--die-with-parent", "--new-session",
            "--chdir", str(Path(cwd).resolve()), "--", *argv]
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
