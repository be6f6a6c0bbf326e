"""`orchestrate clean [SANDBOX]`: remove workspaces, safely. Never one that is running (its lock is held,
and clean holds it while it removes), never anything outside the sandbox, never through a symlink;
`--dry-run` lists what would go."""

from __future__ import annotations

import argparse
import fcntl
import shutil
import sys
import time
from pathlib import Path

from .args import duration_s

HELP = "remove workspaces under a sandbox (never a running one); --dry-run lists what would go"
STATES = ("finished", "failed", "interrupted", "not-started", "imported", "unreadable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("sandbox", type=Path, nargs="?", default=Path("sandbox"), metavar="SANDBOX",
                        help="the folder workspaces are made in (default: sandbox)")
    parser.add_argument("--older-than", type=duration_s, metavar="AGE",
                        help="only workspaces made longer ago than AGE: 30m, 12h, 7d (a bare number is days) (default: any age)")
    parser.add_argument("--state", action="append", choices=STATES, metavar="STATE",
                        help=f"only workspaces in this state, repeatable: {', '.join(STATES)} (default: any state)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    parser.add_argument("--yes", action="store_true", help="remove without asking")


def main(args: argparse.Namespace) -> int:
    """Pick the workspaces, then remove each under its own lock."""
    from ..errors import InputError
    from .list_cmd import entry, workspace_folders

    now = time.time()
    chosen, kept = [], []
    for path in workspace_folders(args.sandbox):
        e = entry(path)
        state = e.state.replace(" ", "-")
        if args.state and state not in args.state:
            continue
        if args.older_than is not None and now - e.created_ts < args.older_than:
            continue
        if e.pid:
            kept.append((path, f"running (pid {e.pid})"))
            continue
        chosen.append((path, state))
    for path, why in kept:
        print(f"keep    {path.name}: {why}")
    if not chosen:
        print("nothing to remove")
        return 0
    verb = "would remove" if args.dry_run else "remove"
    for path, state in chosen:
        print(f"{verb} {path.name} ({state})")
    if args.dry_run:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError(args.sandbox, f"{len(chosen)} workspace(s) to remove: pass --yes to remove them, or --dry-run")
        if input(f"remove {len(chosen)} workspace(s)? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 0
    removed = 0
    for path, _ in chosen:
        if _remove(path):
            removed += 1
    print(f"removed {removed} of {len(chosen)} workspace(s)")
    return 0 if removed == len(chosen) else 1


def _remove(path: Path) -> bool:
    """Remove one workspace while holding its lock (so no orchestrator starts in it meanwhile)."""
    lock = path / ".orchestrate" / "lock"
    if lock.is_symlink():
        print(f"keep    {path.name}: its lock file is a symlink", file=sys.stderr)
        return False
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"keep    {path.name}: an orchestrator started in it", file=sys.stderr)
            return False
        # rmtree removes symlinks inside, never what they point at (fd-based on Linux)
        tmp = path.with_name(f".removing_{path.name}")
        path.rename(tmp)
        shutil.rmtree(tmp)
    return True
