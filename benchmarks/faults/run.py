"""Run every fault of the catalogue through the orchestrator and print the table.

    .venv/bin/python benchmarks/faults/run.py [--isolation auto|bwrap|none] [--no-cgroup] [--only FILE ...]
    .venv/bin/python benchmarks/faults/run.py --template sae [--isolation bwrap none] [--smoke-only] [--only FILE ...]

Columns: fault, verdict, seconds from the start of the faulty run to its verdict, machine clean (no
process of the run left, nothing written outside, no connection out), workspace clean (yardstick,
hashes and journal intact, disk use within the limit). Then: faults contained N/M, and the median
seconds to verdict. Exit code 0 when every fault is contained.

`--template sae`: the attacks of an adversarial experiment (experiments_sae/) on a real workspace of
templates/sae, per isolation level (see sae_catalogue.py and README.md): verdict, expected verdict,
contained, seconds to verdict; then contained N/M per level (an attack nothing can contain at a level
is listed with the reason) and the sealed evaluator's wall time per run against the run's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import catalogue


def _exception(feedback: str) -> str:
    """The exception line of a run's traceback, as the agent is shown it."""
    try:
        tb = json.loads(feedback).get("traceback") or ""
    except (ValueError, AttributeError):
        return ""
    lines = [line.strip() for line in tb.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "none"])
    p.add_argument("--no-cgroup", action="store_true", help="no per-run cgroups: the watchdog alone caps memory and processes")
    p.add_argument("--only", nargs="*", help="fault files to run (e.g. fork_bomb memory_hog)")
    p.add_argument("--keep", type=Path, help="make the workspaces here and keep them")
    p.add_argument("--template", default="tiny", choices=["tiny", "sae"], help="tiny: the fault catalogue; sae: the attacks")
    p.add_argument("--levels", nargs="*", default=["bwrap", "none"], help="--template sae: the isolation levels")
    p.add_argument("--smoke-only", action="store_true", help="--template sae: no full run after a passing smoke run")
    p.add_argument("--cache", type=Path, help="--template sae: the data cache (default: a fresh one, removed after)")
    args = p.parse_args()
    if args.template == "sae":
        import sae_run

        return sae_run.main(args)
    if args.no_cgroup:
        os.environ["ORCHESTRATE_CGROUP"] = "0"
    level = catalogue.isolation_level(args.isolation)
    faults = [f for f in catalogue.FAULTS if not args.only or f.file in args.only]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="orchestrate-faults-"))
    listener = catalogue.Listener()
    rows = []
    print(f"isolation: {level}{' (no cgroups)' if args.no_cgroup else ''}; {len(faults)} faults; workspaces in {workdir}")
    print(f"{'fault':34} {'verdict':11} {'expected':11} {'seconds':>7}  {'machine':8} {'workspace':9}  reason")
    try:
        for fault in faults:
            out = catalogue.run_fault(fault, workdir, isolation=level, listener=listener)
            rows.append(out)
            reason = (out.problems or out.mismatches or out.reasons or [""])[0]
            error = _exception(out.feedback)
            if error and reason.startswith("exited with code"):
                reason = f"{reason}: {error}"
            print(f"{fault.name:34} {out.verdict:11} {out.expected or '-':11} {out.seconds:7.2f}  "
                  f"{'clean' if out.machine_clean else 'DIRTY':8} {'clean' if out.workspace_clean else 'DIRTY':9}  "
                  f"{reason[:90]}", flush=True)
    finally:
        listener.close()
        if args.keep is None:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    contained = sum(o.contained for o in rows)
    median = statistics.median(o.seconds for o in rows) if rows else 0.0
    smoke = [o for o in rows if o.fault.needs_smoke_only]
    slow = [o.fault.name for o in smoke if o.seconds > 30]
    print(f"faults contained {contained}/{len(rows)}")
    print(f"median seconds to verdict {median:.2f} (max {max((o.seconds for o in rows), default=0):.2f})")
    slow_text = f" (slow: {', '.join(slow)})" if slow else ""
    print(f"revealed by a smoke run within 30 s: {len(smoke) - len(slow)}/{len(smoke)}{slow_text}")
    unexpected = [o.fault.name for o in rows if o.expected is not None and not o.as_expected]
    if unexpected:
        print(f"not as the catalogue expects: {', '.join(unexpected)}")
    return 0 if contained == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
