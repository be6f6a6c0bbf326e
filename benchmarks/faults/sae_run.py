"""`run.py --template sae`: the attack catalogue on templates/sae, per isolation level, and the figures
(contained N/M per level, seconds to verdict per attack, the sealed evaluator's overhead per run)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import sae_catalogue as sc

from orchestrator import sandbox


def _planted_in_our_environment() -> None:
    """Start again with the planted key in the orchestrator's environment from exec on, as a user who
    exports their key has it (visible in /proc/<pid>/environ, which is what a run under none can read)."""
    if os.environ.get("OPENAI_API_KEY") != sc.KEY:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "OPENAI_API_KEY": sc.KEY})


def main(args: argparse.Namespace) -> int:
    _planted_in_our_environment()
    levels = []
    for level in args.levels:
        if level == "bwrap" and sandbox.bwrap_problem() is not None:
            print(f"isolation bwrap skipped: {sandbox.bwrap_problem()}")
            continue
        levels.append(level)
    attacks = [a for a in sc.ATTACKS_SAE if not args.only or a.file in args.only]
    python = sc.sae_python()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="orchestrate-sae-faults-", dir="/var/tmp"))
    cache = args.cache or workdir / "cache"
    rows: list[sc.Outcome] = []
    print(f"sae template attacks; python {python}; workspaces in {workdir}; cache {cache}"
          f"{'; smoke runs only' if args.smoke_only else ''}")
    print(f"{'attack':42} {'isolation':9} {'verdict':11} {'expected':11} {'contained':9} {'seconds':>7}  runs / reason")
    try:
        for level in levels:
            for attack in attacks:
                out = sc.run_attack(attack, workdir / level, isolation=level, cache_dir=cache, python=python,
                                    smoke_only=args.smoke_only)
                rows.append(out)
                why = (out.problems or out.mismatches or out.reasons or [""])[0]
                print(f"{attack.name:42} {level:9} {out.verdict:11} {out.expected or '-':11} "
                      f"{'yes' if out.contained else 'NO':9} {out.seconds:7.1f}  {' '.join(out.phases)}; {why[:110]}",
                      flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = True
    for level in levels:
        mine = [o for o in rows if o.isolation == level]
        contained = sum(o.contained for o in mine)
        print(f"isolation {level}: contained {contained}/{len(mine)}")
        ok &= all(o.contained or level in o.attack.not_containable for o in mine)
        for o in mine:
            if level in o.attack.not_containable:
                print(f"  not containable at {level}: {o.attack.name}: {o.attack.not_containable[level]}"
                      f" (this attack: {'contained' if o.contained else 'got through: ' + '; '.join(o.problems)})")
        unexpected = [o.attack.name for o in mine if not o.as_expected and o.expected is not None]
        if unexpected:
            print(f"  not as the catalogue expects: {', '.join(unexpected)}")
    if rows:
        print(f"seconds to verdict: median {statistics.median(o.seconds for o in rows):.1f}, "
              f"max {max(o.seconds for o in rows):.1f}")
    _overhead(rows)
    return 0 if ok else 1


def _overhead(rows: list[sc.Outcome]) -> None:
    """The evaluator's wall time per run against the run's, over every evaluated run of every workspace."""
    seen = [(phase, run, ev) for o in rows for phase, run, ev in o.run_wall_s if ev > 0]
    for kind in ("smoke", "full"):
        mine = [(run, ev) for phase, run, ev in seen if phase.startswith(kind)]
        if mine:
            pct = [100 * ev / run for run, ev in mine if run > 0]
            print(f"evaluator per {kind} run: median {statistics.median(ev for _, ev in mine):.2f} s against "
                  f"{statistics.median(r for r, _ in mine):.1f} s run wall time: median {statistics.median(pct):.1f}% "
                  f"(max {max(pct):.1f}%, {len(mine)} runs){'; target < 10%' if kind == 'full' else ''}")
