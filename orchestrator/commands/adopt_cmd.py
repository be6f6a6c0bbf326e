"""`orchestrate adopt DIR [--show]`: the manifest inferred for an AI Scientist template folder, written as
DIR/template.toml for the user to edit (or only shown)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "infer a template.toml for an AI Scientist template folder and write it there (or --show it only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="the AI Scientist template folder (experiment.py, plot.py, ...)")
    parser.add_argument("--show", action="store_true", help="print the inferred manifest, write nothing")


def main(args: argparse.Namespace) -> int:
    from ..adopt import infer, manifest_toml, write_manifest

    if args.show:
        manifest, results = infer(args.folder)
        print(manifest_toml(manifest, results), end="")
        return 0
    target, text = write_manifest(args.folder)
    print(text, end="")
    print(f"wrote {target}")
    return 0
