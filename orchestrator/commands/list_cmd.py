"""`orchestrate list [SANDBOX]`: the workspaces under a sandbox with their state, results, cost and age.
Reads only: no journal is repaired, no lock taken, nothing written."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

HELP = "list the workspaces under a sandbox: state, results, cost, age (reads only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("sandbox", type=Path, nargs="?", default=Path("sandbox"), metavar="SANDBOX",
                        help="the folder workspaces are made in (default: sandbox)")


@dataclass
class Entry:
    """One workspace as `list` and `clean` see it."""

    path: Path
    state: str
    detail: str
    results: int
    max_runs: int
    cost_usd: float
    created_ts: float
    pid: int | None  # the live orchestrator holding its lock, or None
    unverified: bool = False  # its template checks nothing (unverified = true)


def workspace_folders(sandbox: Path) -> list[Path]:
    """The sandbox's direct sub-folders that are workspaces; never a symlink, nothing outside it."""
    from ..errors import InputError

    if not sandbox.is_dir():
        raise InputError(sandbox, "no such folder (a sandbox is where `orchestrate run` makes workspaces)")
    root = sandbox.resolve()
    out = []
    for p in sorted(root.iterdir()):
        if p.is_symlink() or not p.is_dir() or p.name.startswith("."):
            continue
        j = p / ".orchestrate" / "journal.jsonl"
        if (p / ".orchestrate").is_symlink() or j.is_symlink() or not j.is_file():
            continue
        if p.resolve().parent != root:
            continue
        out.append(p)
    return out


def entry(path: Path) -> Entry:
    """A workspace's state, results and cost from its journal; an unreadable one is state "unreadable"."""
    from ..errors import OrchestratorError
    from ..events import Exchange
    from ..timeline import build
    from ..workspace import Workspace

    try:
        ws = Workspace(path)
        tl = build(ws)
    except OrchestratorError as exc:
        return Entry(path, "unreadable", str(exc), 0, 0, 0.0, path.stat().st_mtime, None)
    pid = ws.running_pid()
    unverified = ws.template is not None and ws.template.manifest.unverified
    return Entry(path, tl.state, tl.state_detail, len(tl.results), int(tl.created.limits.get("max_runs") or 0),
                 sum(e.cost_usd for e in ws.journal.of(Exchange)), tl.created.ts or path.stat().st_mtime, pid, unverified)


def age(seconds: float) -> str:
    """An age for people: 45s, 12m, 5h, 3d."""
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds / n:.0f}{unit}"
    return f"{seconds:.0f}s"


def main(args: argparse.Namespace) -> int:
    """Print one row per workspace."""
    from rich.console import Console
    from rich.table import Table

    entries = [entry(p) for p in workspace_folders(args.sandbox)]
    if not entries:
        print(f"no workspaces under {args.sandbox}")
        return 0
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for col in ("workspace", "state", "results", "cost", "age"):
        table.add_column(col, justify="right" if col in ("results", "cost", "age") else "left")
    now = time.time()
    for e in entries:
        state = f"running (pid {e.pid})" if e.pid and e.pid > 0 else e.state
        state += " (unverified)" if e.unverified else ""
        table.add_row(e.path.name, state, f"{e.results} of {e.max_runs}", f"${e.cost_usd:.4f}", age(now - e.created_ts))
    Console(highlight=False, soft_wrap=True).print(table)
    return 0
