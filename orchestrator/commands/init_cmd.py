"""`orchestrate init DIR`: a new template skeleton that passes `orchestrate check` as it is."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HELP = "make a new template skeleton (template.toml, experiment, protected harness, baseline, an example idea)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("dir", type=Path, metavar="DIR", help="the new template's folder (must not exist, or be empty)")
    parser.add_argument("--name", help="the template's name (default: the folder's name)")


def main(args: argparse.Namespace) -> int:
    """Write the skeleton, then its baseline (run_0) by running the experiment once."""
    from .. import skeleton
    from ..errors import InputError
    from ..spec import NAME_RULE, SLUG
    from ..template import Manifest

    d: Path = args.dir
    name = args.name or d.resolve().name
    if not re.match(SLUG, name):
        raise InputError(d, f"{name!r} is not a usable template name: use {NAME_RULE} (or pass --name)")
    if d.exists() and (not d.is_dir() or any(d.iterdir())):
        raise InputError(d, "already exists and is not an empty folder")
    if not d.parent.is_dir():
        raise InputError(d, f"the folder {d.parent} does not exist")
    manifest = skeleton.MANIFEST.format(name=name)
    sealed = "evaluate" in Manifest.model_fields  # an orchestrator with sealed evaluation: use it
    if sealed:
        manifest += skeleton.EVALUATE
    try:
        d.mkdir(exist_ok=True)
        files = {"template.toml": manifest, "experiment.py": skeleton.EXPERIMENT, "harness.py": skeleton.HARNESS,
                 "plot.py": skeleton.PLOT, "notes.txt": skeleton.NOTES, "requirements.txt": skeleton.REQUIREMENTS,
                 "idea.json": skeleton.IDEA.format()}
        for rel, text in files.items():
            (d / rel).write_text(text)
    except OSError as exc:
        raise InputError(d, f"cannot write: {exc.strerror}") from None
    run0 = d / "run_0"
    res = subprocess.run([sys.executable, "experiment.py", "--out_dir=run_0"], cwd=d, capture_output=True, text=True,
                         timeout=60)
    if res.returncode != 0 or not (run0 / "final_info.json").is_file():
        raise InputError(d, f"the skeleton's baseline did not run: {res.stderr.strip().splitlines()[-1:]}")
    json.loads((run0 / "final_info.json").read_text())
    print(f"made template {name!r} in {d}{' (with a sealed evaluator)' if sealed else ''}; try: "
          f"orchestrate check {d / 'idea.json'}")
    return 0
