"""`orchestrate check IDEA [--idea NAME | --all] [--python PY]`: every idea and its template checked without
running anything: the idea validates, the template (or the manifest inferred for an AI Scientist folder)
loads, and every module the template imports imports with the interpreter a run would use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "validate an idea spec and its template without running anything"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("idea", type=Path, metavar="IDEA", help="the idea file")
    parser.add_argument("--idea", dest="idea_name", metavar="NAME", help="pick one idea from an AI Scientist ideas.json list")
    parser.add_argument("--all", action="store_true", help="check every idea of an ideas list")
    parser.add_argument("--template", metavar="DIR", help="template name or folder (default: the idea's)")
    parser.add_argument("--python", help="the experiment's interpreter to import the template's modules with "
                        "(default: the environment a run would use, when it is built)")


def _idea_line(loaded, template, limits, stages) -> str:
    tinfo = ""
    if loaded.transcript_path:
        from ..agents.replay import load_transcript

        t = load_transcript(loaded.transcript_path)
        tinfo = f", transcript {len(t.lines)} line(s){' (scripted)' if t.scripted else ''}"
    m = template.manifest
    tinfo += (f"; prepare: {m.prepare.command}" if m.prepare else "") + (
        f"; evaluated by: {m.evaluate.command}" if m.evaluate else "; no [evaluate]: results are self-reported")
    return (f"ok: idea {loaded.idea.name!r} on template {m.name!r} ({template.root}); "
            f"{limits.max_runs} runs x {limits.max_attempts} attempts; stages {', '.join(stages)}{tinfo}")


def main(args: argparse.Namespace) -> int:
    """Check each idea (the first problem stops it, in one line), then each distinct template's environment."""
    from ..env import cache_home
    from ..fleet import expand_ideas
    from ..pipeline import RunOptions, prepare
    from ..pyenv import check_environment

    ideas = expand_ideas([args.idea], all_=args.all, idea_name=args.idea_name)
    templates: dict[Path, object] = {}
    for path, name in ideas:
        loaded, template, limits, _model, _t, stages = prepare(path, RunOptions(idea_name=name, template=args.template,
                                                                                model="(check)"))
        if not args.all:
            for line in loaded.warnings:
                print(line, file=sys.stderr)
        print(_idea_line(loaded, template, limits, stages))
        templates.setdefault(template.root, template)
    for template in templates.values():
        print(check_environment(template, cache_home(), override=args.python))
    if args.all:
        print(f"ok: {len(ideas)} idea(s) checked on {len(templates)} template(s)")
    return 0
