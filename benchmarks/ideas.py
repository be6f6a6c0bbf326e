"""Issue 17's figures: `orchestrate ideas` per minute offline (the scripted sae transcript and its recorded
literature); the novelty check under a 429 storm from a loopback OpenAlex (requests made, total time
backing off, ideas checked; the run must never fail); and the vision review's plumbing on a planted
blank panel and a planted missing axis label (the plots stage on the tiny template, the loopback model
answering as a vision model would: which figures reached it, whether its findings reached the agent and
review.json, and what the rounds add to the stage's time). Whether a real vision model sees the planted
problems needs a provider key and the network, which this benchmark does not use.

    .venv/bin/python benchmarks/ideas.py [--repeat 5] [--retry-after 0.2] [--only offline,storm,vision]
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
    after = f"Retry-After {retry_after} s" if retry_after else "no Retry-After: 1 s doubling to 20 s"
    print(f"novelty check under 429s ({after}; at most 8 tries a query, 60 s of backing off in all):")
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


def _plots_stage(d: Path, model: str, replies: list[str]) -> tuple[int, float, Path, list[dict]]:
    """The plots and review stages of an idea on a tiny copy whose plot.py plants both problems; (exit code,
    the plots stage's wall time from the journal, the workspace, the model's requests)."""
    import shutil

    from fake_openai import Canned, FakeOpenAI
    from test_vision import PLOT

    from orchestrator.cli import main as cli

    tiny = d / "tiny"
    shutil.copytree(ROOT / "tests" / "fixtures" / "tiny", tiny)
    (tiny / "plot.py").write_text(PLOT)
    idea = d / "idea.json"
    idea.write_text(json.dumps({"name": "planted", "title": "Planted figure problems", "template": str(tiny),
                                "experiment": "Plot the runs.", "limits": {"isolation": "none"}}))
    srv = FakeOpenAI(replies=[Canned(content=r) for r in replies])
    os.environ.update(OPENAI_API_BASE=srv.base_url, OPENAI_API_KEY="sk-loopback")
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli(["-q", "run", str(idea), "--model", model, "--sandbox", str(d / "sb"),
                      "--stages", "plots,review"])
    finally:
        srv.close()
    (ws,) = [p for p in (d / "sb").iterdir() if p.is_dir()]
    rows = [json.loads(x) for x in (ws / ".orchestrate" / "journal.jsonl").read_text().splitlines() if x.strip()]
    t0 = next(r["ts"] for r in rows if r["type"] == "stage_started" and r["stage"] == "plots")
    t1 = next(r["ts"] for r in rows if r["type"] == "stage_finished" and r["stage"] == "plots")
    return rc, t1 - t0, ws, srv.requests


def vision(repeat: int) -> None:
    """The planted blank panel and missing axis label through the plots stage, with and without a vision model."""
    import subprocess

    from fake_openai import images
    from test_vision import CLEAN, LOOKED, NOTES, PLAIN, VISION, _fix

    base = {"max_input_tokens": 100000, "litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 0,
            "output_cost_per_token": 0}
    with_v, without, parts = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            os.environ["ORCHESTRATE_HOME"] = f"{d}/home"
            meta = Path(d) / "models.json"
            meta.write_text(json.dumps({VISION: {**base, "supports_vision": True}, PLAIN: base}))
            os.environ["ORCHESTRATE_MODEL_METADATA"] = str(meta)
            rc, wall, ws, reqs = _plots_stage(Path(d) / "v", VISION, ["The script plots both figures.", NOTES, LOOKED,
                                                                       _fix(), CLEAN])
            looks = [r for r in reqs if images(r)]
            first = reqs.index(looks[0])
            rows = [json.loads(x) for x in (ws / ".orchestrate" / "journal.jsonl").read_text().splitlines() if x.strip()]
            plot_runs = [r for r in rows if r["type"] == "run_finished" and r.get("phase") == "plot"]
            commit = plot_runs[0]["commit"]
            looked = [r["latency_s"] for r in rows if r["type"] == "exchange" and r["step"] == "vision"]
            fixed = [r["latency_s"] for r in rows if r["type"] == "exchange" and r["step"] == "vision-fix"]
            parts.append((sum(looked), sum(fixed), plot_runs[-1]["wall_s"]))
            planted = [subprocess.run(["git", "-C", str(ws), "show", f"{commit}:{f}"], capture_output=True,
                                      check=True).stdout for f in ("fig_nolabel.png", "fig_panels.png")]
            sent = [b for _, b in images(looks[0])]
            fix_prompt = str(reqs[first + 1]["messages"][-1]["content"])
            review = json.loads((ws / "review.json").read_text())["vision"]
            found = [(f["figure"], f["kind"]) for f in review["rounds"][0]["findings"]]
            with_v.append(wall)
            rc2, wall2, _, reqs2 = _plots_stage(Path(d) / "n", PLAIN, ["The script plots both figures.", NOTES])
            without.append(wall2)
    kb = sum(len(b) for b in sent) / 1024
    print("vision review, planted blank panel + missing axis label (loopback model, its reply scripted to name both; "
          "a real vision model needs a key and the network, not measured here):")
    print(f"  exit {rc}; {len(sent)} figures sent as data URLs ({kb:.0f} KiB), identical to plot attempt 1's files: "
          f"{sent == planted}; findings in the agent's next prompt: "
          f"{'empty-panel' in fix_prompt and 'missing-labels' in fix_prompt}; review.json round 1: {found}, "
          f"open after round {len(review['rounds'])}: {len(review['open_findings'])}; {len(looks)} looks")
    print(f"  plots stage {statistics.median(with_v):.2f} s with 2 vision rounds (one fix, one plot re-run) vs "
          f"{statistics.median(without):.2f} s without a vision model (exit {rc2}, {len(reqs2)} requests, none with "
          f"images), medians of {repeat}; in the last: two looks {parts[-1][0]:.2f} s (encode, request, parse; "
          f"loopback), the fix exchange {parts[-1][1]:.2f} s (aider), the plot re-run {parts[-1][2]:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--retry-after", default="0.2")
    ap.add_argument("--only", default="offline,storm,vision")
    args = ap.parse_args()
    parts = args.only.split(",")
    if "offline" in parts:
        offline(args.repeat)
    if "storm" in parts:
        storm(args.retry_after)
    if "vision" in parts:
        vision(min(args.repeat, 3))


if __name__ == "__main__":
    main()
