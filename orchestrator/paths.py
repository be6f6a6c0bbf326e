"""Workspace paths the orchestrator reads or writes outside the sandbox, never through a link.

A run may replace any file it can write (notes.txt, a results file, a figure, latex/results.tex) by a
symbolic link — or, under isolation `none`, a hard link — to a host file; the orchestrator, which runs
with the user's rights, must then neither append to the target nor read it into a prompt or a report."""

from __future__ import annotations

import hashlib
import os
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
    """sha256 of every regular file under `folder` (relative paths; symbolic links recorded as `link:<target>`)."""
    out: dict[str, str] = {}
    if not folder.is_dir() or folder.is_symlink():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in sorted(filenames) + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            out[rel] = (f"link:{os.readlink(p)}" if p.is_symlink()
                        else hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "special")
    return out


def changed_files(folder: Path, recorded: dict[str, str]) -> list[str]:
    """Files of `folder` that differ from `recorded` (changed, added or removed)."""
    now = tree_hashes(folder)
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))
