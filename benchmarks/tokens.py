"""Prompt tokens sent per run attempt, per stage, through the live aider path.

The idea's transcript replies are served by a loopback OpenAI-compatible server, so aider builds and
sends its real prompts (system prompt, files, history) and the journal counts them. The reference
log (AI Scientist on the same idea) sent about 12-17k tokens per message; target: at most half.

    .venv/bin/python benchmarks/tokens.py [--idea ideas/hsae.json] [--stages experiments]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

REFERENCE = (12_000, 17_000)  # tokens sent per message in ../shared/reference/aider-chat-history-hsae.md


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idea", type=Path, default=ROOT / "ideas" / "hsae.json")
    ap.add_argument("--stages", default="experiments")
    ap.add_argument("--python", help="the experiment interpreter (default: the template's environment)")
    args = ap.parse_args()
    from fake_openai import Canned, FakeOpenAI

    from orchestrator.events import Exchange
    from orchestrator.spec import load_idea

    loaded = load_idea(args.idea)
    if loaded.transcript_path is None:
        sys.exit(f"{args.idea}: names no transcript to serve")
    lines = [json.loads(x) for x in loaded.transcript_path.read_text().splitlines()[1:] if x.strip()]
    stages = args.stages.split(",")
    srv = FakeOpenAI(replies=[Canned(content=x["response"]) for x in lines if x["stage"] in stages])
    os.environ.update(OPENAI_API_BASE=srv.base_url, OPENAI_API_KEY="sk-benchmark")
    tmp = Path(tempfile.mkdtemp(prefix="tokens_"))
    from orchestrator.cli import main as cli

    argv = ["run", str(args.idea), "--model", "openai/benchmark-model", "--sandbox", str(tmp), "--stages", args.stages]
    if args.python:
        argv += ["--python", args.python]
    rc = cli(argv)
    ws = next(p for p in tmp.iterdir() if p.is_dir())
    from orchestrator.journal import Journal

    ex = Journal(ws / ".orchestrate" / "journal.jsonl").of(Exchange)
    per_stage: dict[str, list[int]] = defaultdict(list)
    for e in ex:
        per_stage[e.stage].append(e.prompt_tokens)
    print(f"exit code {rc}; workspace {ws}")
    print(f"{'stage':<12} {'messages':>8} {'mean sent':>10} {'max sent':>9} {'total':>8}")
    for stage, toks in per_stage.items():
        print(f"{stage:<12} {len(toks):>8} {statistics.mean(toks):>10.0f} {max(toks):>9} {sum(toks):>8}")
    allt = [e.prompt_tokens for e in ex]
    if allt:
        mean = statistics.mean(allt)
        ref = sum(REFERENCE) / 2
        print(f"mean prompt tokens per attempt: {mean:.0f}; reference about {REFERENCE[0]}-{REFERENCE[1]} "
              f"(midpoint {ref:.0f}): ratio {mean / ref:.2f} (target <= 0.5)")
    srv.close()


if __name__ == "__main__":
    main()
