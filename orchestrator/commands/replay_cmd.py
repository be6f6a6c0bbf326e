"""`orchestrate replay SOURCE`: re-execute a workspace or a transcript with its recorded replies."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "re-execute a workspace or transcript with its recorded replies; report metric deltas"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("source", type=Path, help="a workspace folder or a transcript .jsonl")
    parser.add_argument("--idea-file", type=Path, help="the idea spec, for a transcript whose idea file is not beside it")
    parser.add_argument("--sandbox", type=Path, default=Path("sandbox"))
    parser.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance for a metric to count as reproduced")
    parser.add_argument("--python")
    parser.add_argument("--stages")


def main(args: argparse.Namespace) -> int:
    """Run the replay; exit 1 when a run or an edit diverged from the recording."""
    from ..replay import replay

    stages = [s for s in args.stages.split(",")] if args.stages else None
    return replay(args.source, idea_file=args.idea_file, sandbox=args.sandbox, rtol=args.rtol, python=args.python,
                  stages=stages)
