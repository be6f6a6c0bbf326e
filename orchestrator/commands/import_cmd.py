"""`orchestrate import LOG`: an aider chat history or AI Scientist console log as a read-only workspace."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "import an aider chat history or AI Scientist console log as a read-only workspace (then show/report it)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .args import sandbox_dir

    parser.add_argument("log", type=Path, metavar="LOG",
                        help="aider markdown chat history (.md/_aider.txt) or console capture (log.txt)")
    parser.add_argument("--sandbox", type=sandbox_dir, default=Path("sandbox"), metavar="DIR", help="where the workspace is made")
    parser.add_argument("--template", type=Path, metavar="DIR",
                        help="the template (folder or template.toml) whose checks judge the results "
                             "(default: a built-in manifest for the AI Scientist template the log names)")
    parser.add_argument("--model", help="the model that wrote the replies, when the log does not say (default: the log's)")


def main(args: argparse.Namespace) -> int:
    from ..events import RunRecorded
    from ..importers import import_log
    from .args import check_writable

    check_writable(args.sandbox)
    ws = import_log(args.log, sandbox=args.sandbox, template=args.template, model=args.model)
    recs = ws.journal.of(RunRecorded)
    verdicts = ", ".join(f"run {r.run} {r.status}" for r in recs) or "no run with an outcome"
    ok = sum(1 for r in recs if r.status == "ok")
    print(f"imported {args.log} -> {ws.root} (read-only): {verdicts}; {ok} result(s)")
    print(f"see it: orchestrate show {ws.root}   ·   orchestrate report {ws.root}")
    return 0
