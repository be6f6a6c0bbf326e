"""Orchestrator time per run iteration, excluding the experiment's and the agent's own time.

20 runs of a template whose experiment does nothing; each iteration is a scripted agent edit through
aider, a smoke run, a full run, validation, notes and commits. Overhead = wall time of the stage minus
the experiment processes' wall time and the agent's latency, divided by the number of runs.
Target: under 0.25 s per iteration.

    .venv/bin/python benchmarks/overhead.py [--runs 20] [--isolation auto|none|bwrap]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOOP = '''import argparse
import json
import os

VALUE = 0

parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", required=True)
out = parser.parse_args().out_dir
os.makedirs(out, exist_ok=True)
json.dump({"training": {"steps_executed": 1, "final_loss": 1.0 / (VALUE + 1)}, "value": VALUE},
          open(os.path.join(out, "final_info.json"), "w"))
'''
MANIFEST = '''name = "noop"
command = "python experiment.py --out_dir={out_dir}"
editable = ["experiment.py", "notes.txt"]
protected = ["template.toml"]
required_keys = ["training.steps_executed", "training.final_loss"]
key_metrics = ["value"]
[[checks]]
path = "training.steps_executed"
min = 1
[compare]
keys = ["value"]
'''


def build(tmp: Path, runs: int) -> Path:
    tpl = tmp / "noop"
    (tpl / "run_0").mkdir(parents=True)
    (tpl / "experiment.py").write_text(NOOP)
    (tpl / "template.toml").write_text(MANIFEST)
    (tpl / "notes.txt").write_text("noop template\n")
    (tpl / "run_0" / "final_info.json").write_text(json.dumps({"training": {"steps_executed": 1, "final_loss": 1.0}, "value": 0}))
    lines = [{"transcript": 1, "idea": "noop", "template": "noop", "note": "scripted: benchmark"}]
    for i in range(1, runs + 1):
        reply = f"experiment.py\n```python\n<<<<<<< SEARCH\nVALUE = {i - 1}\n=======\nVALUE = {i}\n>>>>>>> REPLACE\n```\n"
        lines.append({"stage": "experiments", "run": i, "attempt": 1, "response": reply})
    (tmp / "noop.transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    idea = {"name": "noop", "title": "noop", "template": str(tpl), "experiment": "nothing", "max_runs": runs,
            "transcript": "noop.transcript.jsonl"}
    (tmp / "noop.json").write_text(json.dumps(idea))
    return tmp / "noop.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--isolation", default="auto")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="overhead_"))
    os.environ.setdefault("ORCHESTRATE_HOME", str(tmp / "home"))
    idea = build(tmp, args.runs)
    from orchestrator.events import Exchange, RunFinished
    from orchestrator.pipeline import RunOptions, execute, start

    ctx, _ = start(idea, RunOptions(sandbox=tmp / "sb", stages=["experiments"], isolation=args.isolation), log=lambda s: None)
    t0 = time.perf_counter()
    execute(ctx, ["experiments"])
    wall = time.perf_counter() - t0
    j = ctx.journal
    exp_s = sum(e.wall_s for e in j.of(RunFinished))
    agent_s = sum(e.latency_s for e in j.of(Exchange))
    ok = sum(1 for e in j.of(RunFinished) if e.phase == "full" and e.status == "ok")
    per = (wall - exp_s - agent_s) / args.runs
    print(f"runs: {args.runs} ({ok} ok), isolation: {ctx.isolation}")
    print(f"stage wall time: {wall:.2f} s; experiment processes: {exp_s:.2f} s; agent (aider edit path): {agent_s:.2f} s")
    print(f"orchestrator overhead per run iteration: {per:.3f} s (target < 0.25 s)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
