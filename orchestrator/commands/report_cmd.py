"""`orchestrate report WORKSPACE [-o FILE]`: one self-contained HTML file of what happened."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "self-contained HTML report: timeline, diffs, metrics and charts, plots, notes, paper, review, cost"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .args import count, positive_int

    parser.add_argument("workspace", type=Path, metavar="WORKSPACE", help="the workspace folder")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it (default: WORKSPACE/report.html)")
    parser.add_argument("--pdf-pages", type=count, default=8, metavar="N", help="paper pages to embed as images (0: none)")
    parser.add_argument("--pdf-dpi", type=positive_int, default=60, metavar="DPI", help="resolution of the page images")


def main(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..report import Options, write
    from ..workspace import Workspace

    if args.pdf_pages < 0 or args.pdf_dpi < 10:
        raise InputError(None, "--pdf-pages must be >= 0 and --pdf-dpi >= 10")
    ws = Workspace(args.workspace)
    out = write(ws, args.output, Options(pdf_pages=args.pdf_pages, pdf_dpi=args.pdf_dpi))
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1024:.0f} KiB)")
    return 0
