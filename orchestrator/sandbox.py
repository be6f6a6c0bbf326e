"""Isolation levels for experiment processes: `bwrap` (bubblewrap) where it works, else `none`."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


@functools.cache
def bwrap_available() -> bool:
    """True when bubblewrap exists and can make the namespaces we need on this machine."""
    exe = shutil.which("bwrap")
    if not exe:
        return False
    try:
        cp = subprocess.run(
            [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
             "--die-with-parent", "--", "/bin/true"],
            capture_output=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return cp.returncode == 0


def resolve(level: str) -> str:
    """`auto` becomes `bwrap` where it works, else `none`; an explicit level is kept."""
    if level == "auto":
        return "bwrap" if bwrap_available() else "none"
    return level


def bwrap_argv(argv: Sequence[str], *, cwd: Path, writable: Sequence[Path]) -> list[str]:
    """Wrap argv: read-only root, private /tmp, no network, own pid namespace, only `writable` writable."""
    out = [
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--unshare-all", "--die-with-parent", "--new-session",
    ]
    for path in writable:
        p = Path(path).resolve()
        p.mkdir(parents=True, exist_ok=True)
        out += ["--bind", str(p), str(p)]
    out += ["--chdir", str(Path(cwd).resolve()), "--", *argv]
    return out
