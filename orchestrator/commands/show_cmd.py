"""`orchestrate show WORKSPACE [--run N]`: the workspace's timeline in the terminal."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "terminal timeline of a workspace: runs, attempts, verdicts, metrics, stages, cost"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .args import count, positive_int

    parser.add_argument("workspace", type=Path, metavar="WORKSPACE", help="the workspace folder")
    parser.add_argument("--run", type=count, metavar="N", help="show one run: its diff, its logs' tails and its results")
    parser.add_argument("--tail", type=count, default=15, metavar="LINES", help="log lines to show with --run")
    parser.add_argument("--width", type=positive_int, metavar="COLUMNS", help="render at this width (default: the terminal's)")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..errors import InputError
    from ..show import overview, run_detail
    from ..timeline import build
    from ..workspace import Workspace

    ws = Workspace(args.workspace)
    tl = build(ws)
    console = Console(width=args.width, highlight=False, soft_wrap=False)
    if args.run is not None:
        run = tl.run(args.run)
        if run is None:
            have = ", ".join(str(r.run) for r in tl.runs) or "none"
            raise InputError(args.workspace, f"--run {args.run}: no such run (runs: {have})")
        console.print(run_detail(tl, run, ws, tail=args.tail))
    else:
        console.print(overview(tl))
    return 0
