"""Scaling figures for many ideas at once, and the Slurm executor's added latency per run.

    .venv/bin/python benchmarks/scale.py                  # both parts (Slurm only if `sinfo` answers)
    .venv/bin/python benchmarks/scale.py --run-s 10 --ideas 1,2,4 --json out.json
    .venv/bin/python benchmarks/scale.py --no-local       # only the Slurm latency

Scaling: N ideas on a template whose full run takes a fixed time (tests/fixtures/fleet_sleep), run by
`orchestrate run --all --parallel P` with P = the CPU slots (os.cpu_count()). Each idea is one agent
edit, a smoke run and a full run. Two figures per N (1.0 is perfect for both):
  efficiency         = ceil(N/P) * T(1) / T(N): N ideas should take as long as ceil(N/P) single ideas;
  speed-up per slot  = T(N, --parallel 1) / (min(N, P) * T(N)): against running the same N one at a time
                       (stricter: the fleet's fixed start-up counts once on both sides).

Slurm: a trivial run (`python -c pass`) submitted K times through SlurmExecutor: submit -> start on the
node -> result seen here, against the same run through the local runner.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EDIT = ("Raise the learning rate.\n\nexperiment.py\n```python\n<<<<<<< SEARCH\nLR = 0.05\n=======\nLR = 0.1\n"
        ">>>>>>> REPLACE\n```\n")
DONE = 'Done.\n\n```json\n{"orchestrate": "done", "reason": "one run"}\n```\n'


def _ideas(tmp: Path, n: int, run_s: float) -> Path:
    tr = tmp / "bench.transcript.jsonl"
    tr.write_text("".join(json.dumps(x) + "\n" for x in [
        {"transcript": 1, "template": "fleet_sleep", "note": "scripted: benchmark"},
        {"stage": "experiments", "run": 1, "attempt": 1, "response": EDIT},
        {"stage": "experiments", "run": 2, "attempt": 1, "response": DONE},
    ]))
    ideas = [{"name": f"bench_{i}", "title": "Benchmark", "template": str(FIXTURES / "fleet_sleep"),
              "experiment": "Sleep a fixed time.", "max_runs": 2, "transcript": tr.name,
              "template_config": {"sleep_s": run_s}, "limits": {"isolation": "none"}} for i in range(n)]
    path = tmp / f"ideas_{n}.json"
    path.write_text(json.dumps(ideas))
    return path


def fleet_wall(n: int, parallel: int, run_s: float, tmp: Path) -> float:
    ideas = _ideas(tmp, n, run_s)
    sandbox = tmp / f"sb_{n}"
    env = {**os.environ, "ORCHESTRATE_HOME": str(tmp / "home"), "HOME": str(tmp / "userhome")}
    (tmp / "userhome").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(ideas), "--all", "--parallel", str(parallel),
           "--gpus", "none", "--sandbox", str(sandbox), "--stages", "experiments", "--python", sys.executable]
    t0 = time.monotonic()
    cp = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT, env=env, timeout=3600)
    wall = time.monotonic() - t0
    if cp.returncode != 0 or f"{n} of {n} idea(s) finished" not in cp.stdout:
        raise SystemExit(f"fleet of {n} failed:\n{cp.stdout}\n{cp.stderr}")
    return wall


def scaling(counts: list[int], run_s: float, slots: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="orch-scale-") as d:
        tmp = Path(d)

        def timed(n: int, parallel: int) -> float:
            sub = tmp / f"n{n}_p{parallel}"
            sub.mkdir()
            return fleet_wall(n, parallel, run_s, sub)

        (tmp / "warm").mkdir()
        fleet_wall(1, slots, 0.0, tmp / "warm")  # warm the file cache and the imports: not counted
        rows = []
        t1 = None
        for n in sorted(set(counts) | {1}):
            par = timed(n, slots)
            t1 = t1 or par
            seq = par if n == 1 or slots == 1 else timed(n, 1)
            if n in counts:
                rows.append({"ideas": n, "parallel": slots, "wall_s": round(par, 2), "one_at_a_time_s": round(seq, 2),
                             "efficiency": round(math.ceil(n / slots) * t1 / par, 3),
                             "speedup_per_slot": round(seq / (min(n, slots) * par), 3)})
    return {"run_s": run_s, "cpu_slots": slots, "rows": rows}


def slurm_latency(k: int) -> dict | None:
    from orchestrator import executors, runner
    from orchestrator.executors.slurm import SlurmExecutor, slurm_available

    if not slurm_available():
        return None
    ex = SlurmExecutor()
    argv = [sys.executable, "-c", "pass"]
    env = runner.scrub_env(os.environ)
    samples = []
    with tempfile.TemporaryDirectory(prefix="orch-slurm-lat-", dir=os.environ.get("ORCH_BENCH_SHARED")) as d:
        for i in range(k + 1):  # the first one warms the node's caches; not counted
            log_dir = Path(d) / f"r{i}"
            t0 = time.time()
            rec = executors.run(ex, runner.RunSpec(argv=argv, cwd=Path(d), log_dir=log_dir, timeout_s=60, env=env,
                                                   key=f"bench/{i}"))
            t_end = time.time()
            if rec.exit_code != 0 or rec.killed:
                raise SystemExit(f"slurm job failed: {rec}")
            if i == 0:
                continue
            samples.append({"submit_to_start_s": rec.started_at - t0, "total_s": t_end - t0, "run_wall_s": rec.wall_s,
                            "end_to_result_s": t_end - (rec.started_at + rec.wall_s)})
        local = []
        for i in range(k):
            t0 = time.time()
            runner.run(runner.RunSpec(argv=argv, cwd=Path(d), log_dir=Path(d) / f"l{i}", timeout_s=60, env=env))
            local.append(time.time() - t0)
    med = {key: round(statistics.median(s[key] for s in samples), 3) for key in samples[0]}
    local_s = statistics.median(local)
    return {"runs": k, **med, "local_total_s": round(local_s, 3), "added_latency_s": round(med["total_s"] - local_s, 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ideas", default="1,2,4", help="idea counts to time (default 1,2,4)")
    p.add_argument("--run-s", type=float, default=10.0, help="seconds each full run takes (default 10)")
    p.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="--parallel (default: the CPU count)")
    p.add_argument("--slurm-runs", type=int, default=5, help="jobs to time for the Slurm latency (default 5)")
    p.add_argument("--no-local", action="store_true", help="skip the scaling part")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args()
    out: dict = {}
    if not a.no_local:
        counts = [int(x) for x in a.ideas.split(",")]
        out["scaling"] = s = scaling(counts, a.run_s, a.slots)
        print(f"scaling: full run {s['run_s']:g} s, --parallel {s['cpu_slots']} (CPU slots)")
        print(f"  {'ideas':>5}  {'wall s':>8}  {'efficiency':>10}  {'one at a time s':>15}  {'speed-up per slot':>17}")
        for r in s["rows"]:
            print(f"  {r['ideas']:>5}  {r['wall_s']:>8.1f}  {r['efficiency']:>10.3f}  {r['one_at_a_time_s']:>15.1f}"
                  f"  {r['speedup_per_slot']:>17.3f}")
    out["slurm"] = lat = slurm_latency(a.slurm_runs) if shutil.which("sinfo") else None
    if lat is None:
        print("slurm: no cluster answers sinfo (scripts/slurm-cluster start): latency not measured")
    else:
        print(f"slurm: median of {lat['runs']} jobs of `python -c pass`: submit->start {lat['submit_to_start_s']:.2f} s, "
              f"end->result seen {lat['end_to_result_s']:.2f} s, total {lat['total_s']:.2f} s "
              f"vs local {lat['local_total_s']:.2f} s: added latency {lat['added_latency_s']:.2f} s per run")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
