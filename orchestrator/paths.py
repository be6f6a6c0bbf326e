"""Workspace paths the orchestrator reads or writes outside the sandbox, never through a link.

A run may replace any file it can write (notes.txt, a results file, a figure, latex/results.tex) by a
symbolic link — or, under isolation `none`, a hard link — to a host file; the orchestrator, which runs
with the user's rights, must then neither append to the target nor read it into a prompt or a report."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

from .errors import UnsafePath


def safe_path(root: Path, rel: str | Path) -> Path:
    """`root/rel`, refusing a path that leaves `root`, passes through a symbolic link, or is a hard link."""
    root = Path(root).resolve()
    rel = Path(rel)
    if rel.is_absolute():
        try:
            rel = rel.relative_to(root)
        except ValueError:
            raise UnsafePath(rel, f"is outside the workspace {root}") from None
    cur = root
    for part in rel.parts:
        if part in ("..", ""):
            raise UnsafePath(root / rel, "leaves the workspace (..)")
        cur = cur / part
        if cur.is_symlink():
            raise UnsafePath(cur, f"is a symbolic link (to {os.readlink(cur)}); the orchestrator does not follow it")
    if cur.is_file() and cur.stat().st_nlink > 1:  # a hard link to a file elsewhere (isolation none)
        raise UnsafePath(cur, "is a hard link to another file; the orchestrator does not write or read through it")
    return cur


def readable(root: Path, rel: str | Path) -> Path | None:
    """safe_path for a file the orchestrator only reads: None when it is unsafe (or absent)."""
    try:
        p = safe_path(root, rel)
    except UnsafePath:
        return None
    return p if p.exists() else None


def writable(root: Path, rel: str | Path) -> Path:
    """safe_path for a file the orchestrator (re)writes whole: a link in its place is removed (never
    followed, its target untouched); a link among its folders is refused (UnsafePath)."""
    try:
        return safe_path(root, rel)
    except UnsafePath:
        p = Path(root).resolve() / rel
        safe_path(root, Path(rel).parent)
        if p.is_symlink() or p.is_file():
            p.unlink()
            return p
        raise


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under `folder` (relative paths; symbolic links recorded as `link:<target>`,
    anything else as `special`, a file that cannot be read as `unreadable`)."""
    out: dict[str, str] = {}
    if not folder.is_dir() or folder.is_symlink():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in sorted(filenames) + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            out[rel] = f"link:{os.readlink(p)}" if p.is_symlink() else file_digest(p)
    return out


# path -> (its (device, inode, size, mtime, ctime) when hashed, its sha256)
_DIGESTS: dict[str, tuple[tuple[int, int, int, int, int], str]] = {}
# file systems whose ctime moves with every change, mmap writes included (after writeback): others are hashed
# every time (tmpfs: a write through a mapping moves no time; FUSE: the times are whatever its daemon says)
TIMED_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "overlay", "nfs", "nfs4", "lustre", "gpfs"})
_SETTLE_NS: dict[int, int | None] = {}  # device -> how long a file must be unchanged to have its hash remembered


def file_digest(path: Path) -> str:
    """sha256 of a regular file (`special` for anything else, `unreadable` when it cannot be opened).

    Every check after a run hashes the same recorded run folders and data cache again, so a hash is remembered
    with the file's (device, inode, size, mtime, ctime) and given again while all five are the same. Any write,
    truncation, rename over it, chmod or utime moves the ctime to the clock's present and no call sets a ctime
    back (only changing the system clock: never from a sandboxed run; a root run at isolation `none` can do
    worse anyway), so a changed file is hashed anew. A hash is remembered only on a file system of TIMED_FS and
    only for a file whose times are `_settle_ns` behind the clock when it was read: a write in the same clock tick
    (timestamps are coarse, up to 2 s on some file systems), or through a mapping whose page is still dirty (the
    first write after each writeback moves the times, later ones do not), could otherwise keep the ctime. The stat
    comes from the opened file (on NFS, opening revalidates its attributes)."""
    began = time.time_ns()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # never a link, never blocked on a FIFO
    except OSError:
        return "unreadable"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "special"
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        where = os.path.abspath(path)
        known = _DIGESTS.get(where)
        if known is not None and known[0] == key:
            return known[1]
        try:
            with open(fd, "rb", closefd=False) as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError:
            return "unreadable"
    finally:
        os.close(fd)
    settle = _settle_ns(st.st_dev)
    if settle is not None and max(st.st_mtime_ns, st.st_ctime_ns) < began - settle:
        _DIGESTS[where] = (key, digest)
    else:
        _DIGESTS.pop(where, None)
    return digest


def _settle_ns(dev: int) -> int | None:
    """How long (ns) a file on device `dev` must be unchanged before its hash is remembered: the kernel's dirty
    page expiry and writeback interval, 5 s more, at least 3 s; None: never (not a file system of TIMED_FS)."""
    if dev not in _SETTLE_NS:
        _SETTLE_NS[dev] = None
        want = f"{os.major(dev)}:{os.minor(dev)}"
        try:
            mounts = Path("/proc/self/mountinfo").read_text().splitlines()
            waits = [int(Path(f"/proc/sys/vm/{k}_centisecs").read_text()) for k in ("dirty_expire", "dirty_writeback")]
        except (OSError, ValueError):
            return None
        for line in mounts:
            fields, _, rest = line.partition(" - ")
            if len(fields.split()) > 2 and fields.split()[2] == want:
                if rest.split()[:1] and rest.split()[0] in TIMED_FS:
                    _SETTLE_NS[dev] = int(max(3.0, sum(waits) / 100 + 5.0) * 1e9)
                break
    return _SETTLE_NS[dev]


def changed_files(folder: Path, recorded: dict[str, str]) -> list[str]:
    """Files of `folder` that differ from `recorded` (changed, added or removed)."""
    now = tree_hashes(folder)
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))
