"""`orchestrate replay SOURCE`: re-execute a workspace or a transcript with its recorded replies."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "re-execute a workspace or transcript with its recorded replies; report metric deltas"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    from .args import name_list, nonneg_float, sandbox_dir

    parser.add_argument("source", type=Path, metavar="WORKSPACE|TRANSCRIPT|IDEAS",
                        help="a workspace folder, a transcript .jsonl, or an idea file (.json) whose idea names its transcript")
    parser.add_argument("--idea-file", type=Path, metavar="IDEA",
                        help="the idea spec, for a transcript whose idea file is not beside it (default: <idea>.json beside it)")
    parser.add_argument("--idea", dest="idea_name", metavar="NAME",
                        help="the idea in an ideas list (an AI Scientist ideas.json): SOURCE may be that file, its "
                        "entry naming the transcript")
    parser.add_argument("--sandbox", type=sandbox_dir, default=Path("sandbox"), metavar="DIR",
                        help="where the replay's workspace is made")
    parser.add_argument("--rtol", type=nonneg_float, default=1e-3, metavar="R",
                        help="relative tolerance for a metric to count as reproduced")
    parser.add_argument("--python",
                        help="the experiment's interpreter (default: an environment built from the template's requirements.txt)")
    parser.add_argument("--stages", type=name_list, metavar="LIST",
                        help="comma-separated stages to replay (default: experiments, and ablations when the workspace "
                        "has ablation runs)")


def main(args: argparse.Namespace) -> int:
    """Run the replay; exit 1 when a run or an edit diverged from the recording."""
    from ..replay import replay
    from .args import check_writable

    check_writable(args.sandbox)
    stages = args.stages
    return replay(args.source, idea_file=args.idea_file, sandbox=args.sandbox, rtol=args.rtol, python=args.python,
                  stages=stages, idea_name=args.idea_name)
