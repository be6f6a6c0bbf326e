"""`orchestrate ideas` figures: ideas per minute offline (the scripted sae transcript and its recorded
literature), and the novelty check under a 429 storm from a loopback OpenAlex (requests made, total
time backing off, ideas checked; the run must never fail).

    .venv/bin/python benchmarks/ideas.py [--repeat 5] [--retry-after 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SAE = ROOT / "templates" / "sae"
TRANSCRIPT = ROOT / "ideas" / "sae_ideas.transcript.jsonl"
LITERATURE = ROOT / "ideas" / "sae_ideas.literature.jsonl"


def _quiet(_s: str) -> None:
    pass


def offline(repeat: int) -> None:
    from orchestrator.ideation.run import IdeasOptions, run_ideas

    walls = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            os.environ["ORCHESTRATE_HOME"] = f"{d}/home"
            t0 = time.perf_counter()
            run_ideas(IdeasOptions(template=str(SAE), n=3, output=Path(d) / "ideas.json", sandbox=Path(d) / "sb"), log=_quiet)
            walls.append(time.perf_counter() - t0)
            n = len(json.loads((Path(d) / "ideas.json").read_text()))
    med = statistics.median(walls)
    print(f"offline (scripted sae transcript, recorded literature): {n} ideas in {med:.3f} s median of {repeat} "
          f"(first {walls[0]:.3f} s) = {n / med * 60:.0f} ideas/min; 16 exchanges and 5 literature queries a run")


def storm(retry_after: str) -> None:
    """The sae transcript's replies through the live litellm path (loopback model), the literature from a
    loopback OpenAlex that answers the recorded papers, under no storm, a burst and a storm that never ends."""
    from fake_literature import FakeLiterature, work
    from fake_openai import Canned, FakeOpenAI

    from orchestrator.agents.replay import load_transcript
    from orchestrator.ideation.literature import load_recorded
    from orchestrator.ideation.run import IdeasOptions, run_ideas

    replies = [line.response for line in load_transcript(TRANSCRIPT).lines]
    answers = {r.query: [work(p.title, p.year or 2024, p.abstract, p.doi) for p in r.papers]
               for r in load_recorded(LITERATURE).values()}
    print(f"novelty check under 429s (Retry-After {retry_after} s; at most 8 tries a query, 60 s of backing off in all):")
    for label, n429 in (("no storm", 0), ("a burst of 5 429s", 5), ("a storm that never ends", -1)):
        with tempfile.TemporaryDirectory() as d:
            os.environ["ORCHESTRATE_HOME"] = f"{d}/home"
            model, lit = FakeOpenAI(replies=[Canned(content=r) for r in replies]), FakeLiterature(answers=answers, storm=n429,
                                                                                               retry_after=retry_after)
            os.environ.update(OPENAI_API_BASE=model.base_url, OPENAI_API_KEY="sk-loopback", ORCHESTRATE_LITERATURE="openalex",
                              ORCHESTRATE_LITERATURE_URL=lit.base_url)
            if n429 < 0:  # without papers no novelty exchange is asked for: serve only generation and ranking
                model.replies = [Canned(content=r) for i, r in enumerate(replies) if i < 8 or i >= 13]
            t0 = time.perf_counter()
            try:
                run_ideas(IdeasOptions(template=str(SAE), n=3, model="openai/test-model", output=Path(d) / "ideas.json",
                                       sandbox=Path(d) / "sb"), log=_quiet)
                outcome = "ok"
            except Exception as exc:  # the figure is whether it fails, so any failure is reported, not raised
                outcome = f"FAILED: {exc}"
            wall = time.perf_counter() - t0
            ideas = json.loads((Path(d) / "ideas.json").read_text()) if (Path(d) / "ideas.json").exists() else []
            checked = sum(e["novelty"]["checked"] for e in ideas)
            backoff = lit.arrivals[-1] - lit.arrivals[0] if len(lit.arrivals) > 1 else 0.0
            print(f"  {label:<24} {outcome}; {checked}/{len(ideas)} ideas checked; {len(lit.requests)} literature requests; "
                  f"{backoff:.2f} s from first to last request; run {wall:.2f} s")
            model.close()
            lit.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--retry-after", default="0.2")
    args = ap.parse_args()
    offline(args.repeat)
    storm(args.retry_after)


if __name__ == "__main__":
    main()
