"""`notes.txt`: ours to structure (one section per run), the agent's to annotate.

Each run's numbers are given over its seeds as stats.py prints them (mean ± 95% CI half-width, the
difference from the baseline with its Welch interval), with how many seeds they are over and whether
the sealed evaluator computed them; the same rows are the key metrics the agent is shown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stats
from .errors import UnsafePath
from .events import EditApplied, Event, RunRecorded
from .paths import safe_path
from .readmodel import WorkspaceModel
from .results import flatten


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


@dataclass
class RunStats:
    """A run's per-seed values and the baseline's, from the journal (WorkspaceModel): what its notes
    section and the agent's key-metrics rows print their uncertainty from."""

    run: int
    seeds: dict[str, list[float]] = field(default_factory=dict)
    baseline: dict[str, list[float]] = field(default_factory=dict)
    seeds_ok: int = 0
    seeds_planned: int = 0
    min_ok: int | None = None
    evaluated: dict[str, str] = field(default_factory=dict)  # metric -> evaluated / self-reported
    baseline_evaluated: dict[str, str] = field(default_factory=dict)

    @property
    def seeds_line(self) -> str:
        head = (f"{self.seeds_ok} seed{'s' if self.seeds_ok != 1 else ''}" if self.seeds_ok == self.seeds_planned
                or not self.seeds_planned else f"{self.seeds_ok} of {self.seeds_planned} seeds")
        need = self.min_ok
        return head + (f" (at least {need} required)" if need is not None and need < self.seeds_planned else "")


def run_stats(events: Sequence[Event], run: int) -> RunStats:
    """The run's RunStats from the journal's events."""
    model = WorkspaceModel.build(list(events))
    seeds, base = model.seed_values(run), model.seed_values(0)
    return RunStats(run=run, seeds=seeds, baseline=base, seeds_ok=len(model.seeds_ok(run)),
                    seeds_planned=model.seeds_planned(run), min_ok=model.min_ok(run),
                    evaluated={k: model.key_evaluation(run, k) for k in seeds},
                    baseline_evaluated={k: model.key_evaluation(0, k) for k in base})


def baseline_values(keys: list[str], baseline: dict[str, Any], st: RunStats | None = None) -> dict[str, str]:
    """The baseline's key metrics for the agent: "0.913 ± 0.012 (3 seeds, evaluated)" when its seeds are known."""
    flat = flatten(baseline) if baseline else {}
    out = {}
    for k in keys:
        vals = st.baseline.get(k) if st is not None else None
        if vals:
            n = len(vals)
            out[k] = (f"{stats.format_summary(stats.summarize(vals))} ({n} seed{'s' if n != 1 else ''}, "
                      f"{st.baseline_evaluated.get(k, 'self-reported')})")
        elif k in flat:
            out[k] = fmt(flat[k])
    return out


def metric_rows(keys: list[str], metrics: dict[str, Any], baseline: dict[str, Any],
                st: RunStats | None = None) -> list[dict[str, str]]:
    """One row per key metric the run has: value and baseline ("mean ± h" over seeds when known), the
    difference from the baseline with its 95% Welch interval ("" without seeds), significance and source."""
    flat_base = flatten(baseline) if baseline else {}
    rows = []
    for k in keys:
        if k not in metrics:
            continue
        row = {"key": k, "value": fmt(metrics[k]), "baseline": fmt(flat_base.get(k, "n/a")), "diff": "",
               "significant": "", "source": ""}
        vals, base = (st.seeds.get(k), st.baseline.get(k)) if st is not None else (None, None)
        if vals:
            row["value"] = stats.format_summary(stats.summarize(vals))
            row["source"] = st.evaluated.get(k, "self-reported")
        if base:
            row["baseline"] = stats.format_summary(stats.summarize(base))
        if vals and base:
            d = stats.compare(vals, base)
            row["diff"] = stats.format_difference(d)
            row["significant"] = ("significant" if d.significant else
                                  "not significant" if d.status in ("ok", "no-variance") else f"no test: {d.status}")
        rows.append(row)
    return rows


def run_section(rec: RunRecorded, edits: list[EditApplied], keys: list[str], baseline: dict[str, Any], max_attempts: int,
                st: RunStats | None = None) -> str:
    files: dict[str, list[int]] = {}
    for e in edits:
        for f in e.files:
            files.setdefault(f, [0, 0])
        if e.files:
            files[e.files[0]][0] += e.added
            files[e.files[0]][1] += e.removed
    changed = ", ".join(f"{f} (+{a} -{r})" for f, (a, r) in files.items()) or "nothing"
    label = ("evaluated: computed by the template's sealed evaluator" if rec.evaluation == "evaluated"
             else "self-reported: written by the experiment itself, not checked by an evaluator")
    lines = [
        f"## Run {rec.run}: {rec.status.upper()}",
        f"Attempts: {rec.attempts} of {max_attempts}",
        f"What changed: {changed}",
        f"Code: commit {rec.commit[:10] if rec.commit else 'n/a'}",
    ]
    if rec.status == "ok":
        lines.append(f"Metrics: {label}")
        if st is not None and st.seeds:
            lines.append(f"Seeds: {st.seeds_line}; values are mean ± 95% CI half-width over seeds, "
                         "Δ the difference from the baseline [95% Welch interval]")
        lines.append("Validated results (baseline -> this run):")
        for r in metric_rows(keys, rec.metrics, baseline, st):
            extra = f"  (Δ {r['diff']}, {r['significant']})" if r["diff"] else ""
            src = f" [{r['source']}]" if r["source"] and r["source"] != label.split(":")[0] else ""
            lines.append(f"  {r['key']}: {r['baseline']} -> {r['value']}{extra}{src}")
    else:
        lines.append("Not a result; it enters no table, plot or paper. Why:")
        # a reason may span lines (aider's SEARCH/REPLACE error): its later lines indented, so none reads as a
        # section of its own ("## SearchReplaceNoExactMatch: ...") or as an edit block
        lines += [f"  - {first}" + "".join(f"\n    {ln}" for ln in rest if ln.strip())
                  for first, *rest in (r.strip().splitlines() or [""] for r in rec.reasons)] or ["  - no reason recorded"]
    return "\n".join(lines) + "\n"


def append_section(root: Path, rel: str, section: str) -> str | None:
    """Append a run's section to the notes file, never through a symbolic link: a link (a run may leave one
    to a host file) is removed, not followed, and the notes start afresh. Returns what was refused, if anything."""
    problem = None
    try:
        path = safe_path(root, rel)
    except UnsafePath as exc:
        problem = f"{rel} was not followed: {exc.problem}; it was replaced by a plain notes file"
        bad = Path(root) / rel
        linked = bad.is_symlink() or (bad.is_file() and bad.stat().st_nlink > 1)
        if not linked or bad.parent.resolve() != Path(root).resolve():
            return f"{rel} was not written: {exc.problem}"
        bad.unlink()
        path = bad
    text = path.read_text() if path.is_file() else ""
    path.write_text(text.rstrip("\n") + "\n\n" + section)
    return problem
