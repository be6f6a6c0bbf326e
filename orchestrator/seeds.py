"""Seeds of a run: which seeds a full run gets (the template's `[seeds]`, the idea's `seeds`, `--seeds`),
how the seed reaches the experiment (an environment variable, a `{seed}` placeholder), where each seed
writes (`run_i/seed_<s>/`, or `run_i/` with one seed), and a run's aggregate over its ok seeds:
`run_i/final_info.json` holds the per-key mean (so plot.py and AI-Scientist-style readers work
unchanged) and `run_i/seeds.json` each metric's values, mean, sd, se, 95% interval and n (stats.py)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import stats
from .results import flatten
from .settings import Limits
from .template import Manifest
from .values import finite

SEEDS_FILE = "seeds.json"


class SeedPlan(BaseModel):
    """The seeds of every full run of a workspace, how many must be ok, and how the seed is passed."""

    values: list[int]
    min_ok: int
    env: str | None = None

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def smoke_seed(self) -> int:
        return self.values[0]

    def out_dir(self, run_dir: str, seed: int) -> str:
        """Where one seed of a full run writes: the run's folder itself when it has one seed."""
        return run_dir if self.count == 1 else f"{run_dir}/seed_{seed}"


def plan(manifest: Manifest, limits: Limits) -> SeedPlan:
    """The template's [seeds], with the idea's and the command line's count and min_ok over it."""
    s = manifest.seeds
    count = limits.seeds or s.count
    values = list(s.values[:count]) if s.values and len(s.values) >= count else list(range(count))
    min_ok = limits.seeds_min_ok or (s.min_ok if s.min_ok is not None and not limits.seeds else None) or count
    return SeedPlan(values=values, min_ok=min_ok, env=s.env)


def local_slots(manifest: Manifest, limits: Limits, cores: int | None = None) -> int:
    """How many runs go at once on this machine: the setting, else its cores over a run's declared need."""
    if limits.parallel_runs:
        return limits.parallel_runs
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // manifest.seeds.cpus)


def _numbers(flat: dict[str, Any]) -> dict[str, float]:
    return {k: x for k, v in flat.items() if (x := finite(v)) is not None}


def seed_values(per_seed: list[dict[str, Any]]) -> dict[str, list[float]]:
    """metric -> its values over the seeds (flattened numeric metrics), for the keys every seed has."""
    nums = [_numbers(flatten(m)) for m in per_seed]
    keys = set(nums[0]) if nums else set()
    for n in nums[1:]:
        keys &= set(n)
    return {k: [n[k] for n in nums] for k in sorted(keys)}


def mean_metrics(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-key mean of the seeds' flattened metrics (non-numeric keys, and keys every seed agrees
    on: the first seed's value)."""
    if not per_seed:
        return {}
    values = seed_values(per_seed)
    out = dict(flatten(per_seed[0]))
    # a key every seed agrees on (a setting, a count) keeps its value and type
    out.update({k: float(sum(v) / len(v)) for k, v in values.items() if len(set(v)) > 1})
    return out


def seeds_table(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What run_i/seeds.json holds: {metric: {values, mean, sd, se, ci95, n}} (stats.summarize)."""
    out: dict[str, dict[str, Any]] = {}
    for k, vs in seed_values(per_seed).items():
        s = stats.summarize(vs)
        out[k] = {"values": vs, "mean": s.mean, "sd": s.std, "se": s.se,
                  "ci95": None if s.ci_low is None else [s.ci_low, s.ci_high], "n": s.n}
    return out


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"core.l0": 3}` -> `{"core": {"l0": 3}}`: the results file's nested shape again."""
    out: dict[str, Any] = {}
    for key, v in flat.items():
        cur = out
        *parents, last = key.split(".")
        for p in parents:
            nxt = cur.setdefault(p, {})
            if not isinstance(nxt, dict):
                break
            cur = nxt
        else:
            cur[last] = v
    return out


def mean_results(per_seed: list[dict[str, Any]], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """`base` (the first seed's results file: nested, strings and flags kept) with every number the
    seeds disagree on replaced by its mean over them."""
    out = copy.deepcopy(base if base is not None else per_seed[0] if per_seed else {})
    for key, value in mean_metrics(per_seed).items():
        cur = out
        *parents, last = key.split(".")
        for p in parents:
            cur = cur.get(p) if isinstance(cur, dict) else None
        if isinstance(cur, dict) and last in cur:
            cur[last] = value
    return out


def write_aggregate(run_dir: Path, results_file: str, per_seed: list[dict[str, Any]],
                    base: dict[str, Any] | None = None) -> None:
    """run_i/<results_file> = the per-key mean over the ok seeds (`base`: a seed's results file, for the
    keys that are not numbers); run_i/seeds.json = their statistics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / results_file).write_text(json.dumps(mean_results(per_seed, base), indent=2) + "\n")
    (run_dir / SEEDS_FILE).write_text(json.dumps(seeds_table(per_seed), indent=1) + "\n")
