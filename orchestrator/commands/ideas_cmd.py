"""`orchestrate ideas TEMPLATE`: generate, check for novelty and rank research ideas for a template."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import count, positive_float, positive_int

HELP = "generate research ideas for a template: refined, checked against the literature, ranked"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("template", help="template name or folder")
    parser.add_argument("-n", type=positive_int, default=3, help="ideas to generate")
    parser.add_argument("--reflections", type=count, default=3, help="refinement rounds per idea after its draft")
    parser.add_argument("--model", help="any litellm model name; default: the template's scripted transcript")
    parser.add_argument("-o", "--output", type=Path, default=Path("ideas.json"), help="the ideas file")
    parser.add_argument("--budget-usd", type=positive_float, metavar="X",
                        help="stop before the model call that would spend more (default: no limit)")
    parser.add_argument("--top", type=positive_int, help="keep the best K ideas of the ranking in the ideas file")
    parser.add_argument("--offline", action="store_true", help="no literature search: the cache only")
    parser.add_argument("--literature", choices=["openalex", "semanticscholar", "offline"],
                        help="novelty search backend (default: $ORCHESTRATE_LITERATURE, else openalex; offline when replaying)")
    parser.add_argument("--literature-cache", type=Path, help="a recorded literature cache (JSONL) to answer from")
    parser.add_argument("--novelty-rounds", type=positive_int, default=3, help="rounds of the novelty check per idea")
    parser.add_argument("--transcript", type=Path, help="replay these replies instead of asking a model")
    parser.add_argument("--sandbox", type=Path, default=Path("sandbox"),
                        help="where the run's folder is made (default ./sandbox)")


def main(args: argparse.Namespace) -> int:
    from ..ideation.run import IdeasOptions, run_ideas

    run_ideas(IdeasOptions(
        template=args.template, n=args.n, reflections=args.reflections, model=args.model, output=args.output,
        budget_usd=args.budget_usd, top=args.top, offline=args.offline, literature=args.literature,
        literature_cache=args.literature_cache, novelty_rounds=args.novelty_rounds, transcript=args.transcript,
        sandbox=args.sandbox,
    ), log=lambda s: print(s, flush=True))
    return 0
