"""Seed parallelism: two seeds on two local slots against the same two one after the other.

    PYTHONPATH=. python benchmarks/seeds_parallel.py [--work-s 4] [--repeats 3] [--sae]

Each seed is a real run through the executor protocol (LocalExecutor.submit, then wait), under the
runner's containment. The default workload is a CPU-bound Python loop of about --work-s seconds (one
core); --sae runs the sae template's experiment.py at smoke size instead (needs ORCHESTRATE_SAE_PYTHON
and a prepared cache in ORCHESTRATE_CACHE_DIR). efficiency = serial wall / (2 x parallel wall): 1.0
when two slots halve the time. The machine's load average is printed with the figure: on a shared
machine the figure is only as good as the cores that were free."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.executors import LocalExecutor
from orchestrator.runner import RunSpec
from orchestrator.settings import Limits

LOOP = """
import os, time
n, t0 = 0, time.time()
budget = float(os.environ["WORK_S"])
# calibrated once per run: a fixed number of iterations (the same work for every seed)
target = int(os.environ["WORK_ITERS"])
while n < target:
    n += 1
print(n, time.time() - t0)
"""


def _calibrate(work_s: float) -> int:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        for _ in range(10000):
            n += 1
    return int(n * work_s / 0.5)


def _specs(tmp: Path, args) -> list[RunSpec]:
    specs = []
    for seed in (0, 1):
        d = tmp / f"seed_{seed}"
        d.mkdir(parents=True, exist_ok=True)
        if args.sae:
            sae = Path(__file__).resolve().parents[1] / "templates" / "sae"
            env = {**os.environ, "ORCHESTRATE_SEED": str(seed), "ORCHESTRATE_SMOKE": "1", "HF_HUB_OFFLINE": "1"}
            argv = [os.environ["ORCHESTRATE_SAE_PYTHON"], str(sae / "experiment.py"), f"--out_dir={d / 'out'}"]
            specs.append(RunSpec(argv=argv, cwd=sae, log_dir=d / "log", timeout_s=600, env=env, limits=Limits()))
        else:
            (d / "loop.py").write_text(LOOP)
            env = {**os.environ, "WORK_S": str(args.work_s), "WORK_ITERS": str(args.iters)}
            specs.append(RunSpec(argv=[sys.executable, "loop.py"], cwd=d, log_dir=d / "log", timeout_s=600, env=env,
                                 limits=Limits()))
    return specs


def _wall(slots: int, specs: list[RunSpec]) -> float:
    ex = LocalExecutor(slots=slots)
    t0 = time.monotonic()
    records = [ex.wait(h) for h in [ex.submit(s) for s in specs]]
    wall = time.monotonic() - t0
    bad = [r for r in records if not r.ok]
    if bad:
        raise SystemExit(f"a seed failed: exit {bad[0].exit_code}, see {bad[0].stderr_path}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work-s", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sae", action="store_true", help="the sae template's smoke experiment as the workload")
    args = ap.parse_args()
    args.iters = _calibrate(args.work_s)
    load_before = os.getloadavg()
    serial, parallel = [], []
    with tempfile.TemporaryDirectory(prefix="seeds-parallel-") as tmp:
        specs = _specs(Path(tmp), args)
        for _ in range(args.repeats):
            serial.append(_wall(1, specs))
            parallel.append(_wall(2, specs))
    s, p = statistics.median(serial), statistics.median(parallel)
    print(f"workload: {'sae smoke experiment' if args.sae else f'CPU loop of ~{args.work_s:g} s'}, "
          f"{args.repeats} repeat(s), cores: {os.cpu_count()}")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; "
          f"after: {os.getloadavg()[0]:.2f}")
    print(f"2 seeds serial (1 slot):   {s:.2f} s (median; runs {', '.join(f'{x:.2f}' for x in serial)})")
    print(f"2 seeds parallel (2 slots): {p:.2f} s (median; runs {', '.join(f'{x:.2f}' for x in parallel)})")
    print(f"efficiency = serial / (2 x parallel) = {s / (2 * p):.2f}")


if __name__ == "__main__":
    main()
