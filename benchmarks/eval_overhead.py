"""The sealed evaluator's overhead per run: its wall time against the run's, from workspaces' journals.

    .venv/bin/python benchmarks/eval_overhead.py WORKSPACE [WORKSPACE ...]
    .venv/bin/python benchmarks/eval_overhead.py --tiny [--isolation auto|none|bwrap]   # makes one on tiny_eval

Prints one line per evaluated run (phase, run wall s, evaluator wall s, overhead %) and the median
overhead of the full runs. The issue's target (sae template): under 10% of the full run's wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _tiny_workspace(isolation: str) -> Path:
    from orchestrator.cli import main

    tmp = Path(tempfile.mkdtemp(prefix="orchestrate-eval-overhead-"))
    edit = "experiment.py\n```python\n<<<<<<< SEARCH\nSTEPS = 20\n=======\nSTEPS = 60\n>>>>>>> REPLACE\n```\n"
    lines = [{"transcript": 1, "idea": "overhead", "template": "tiny_eval", "note": "scripted: benchmark"},
             {"stage": "experiments", "run": 1, "attempt": 1, "response": edit}]
    (tmp / "overhead.transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    idea = {"name": "overhead", "title": "Evaluator overhead", "template": str(ROOT / "tests/fixtures/tiny_eval"),
            "experiment": "Train longer.", "max_runs": 1, "transcript": "overhead.transcript.jsonl",
            "limits": {"isolation": isolation, "max_attempts": 1}}
    (tmp / "overhead.json").write_text(json.dumps(idea))
    if main(["run", str(tmp / "overhead.json"), "--sandbox", str(tmp / "sb"), "--stages", "experiments"]) != 0:
        raise SystemExit("the tiny_eval run failed")
    return next(p for p in (tmp / "sb").iterdir() if p.is_dir())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workspaces", nargs="*", type=Path)
    p.add_argument("--tiny", action="store_true", help="make a workspace on the tiny_eval fixture first")
    p.add_argument("--isolation", default="auto", choices=["auto", "none", "bwrap"])
    args = p.parse_args()
    from orchestrator.events import RunFinished
    from orchestrator.workspace import Workspace

    wss = list(args.workspaces) + ([_tiny_workspace(args.isolation)] if args.tiny else [])
    full = []
    print(f"{'workspace':40} {'run':>3} {'phase':6} {'run s':>8} {'eval s':>8} {'overhead':>9}")
    for root in wss:
        for fin in Workspace(root).journal.of(RunFinished):
            if fin.evaluation != "evaluated" or fin.wall_s <= 0:
                continue
            pct = 100 * fin.eval_wall_s / fin.wall_s
            if fin.phase == "full":
                full.append(pct)
            print(f"{root.name[:40]:40} {fin.run:>3} {fin.phase:6} {fin.wall_s:8.2f} {fin.eval_wall_s:8.2f} {pct:8.1f}%")
    if not full:
        print("no evaluated full run")
        return 1
    print(f"median evaluator overhead on full runs: {statistics.median(full):.1f}% of the run's wall time ({len(full)} run(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
