"""`notes.txt`: ours to structure (one section per run), the agent's to annotate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import UnsafePath
from .events import EditApplied, RunRecorded
from .paths import safe_path
from .results import flatten


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def metric_rows(keys: list[str], metrics: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, str]]:
    flat_base = flatten(baseline) if baseline else {}
    return [
        {"key": k, "value": fmt(metrics[k]), "baseline": fmt(flat_base.get(k, "n/a"))}
        for k in keys
        if k in metrics
    ]


def run_section(rec: RunRecorded, edits: list[EditApplied], keys: list[str], baseline: dict[str, Any], max_attempts: int) -> str:
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
        lines.append("Validated results (baseline -> this run):")
        lines += [f"  {r['key']}: {r['baseline']} -> {r['value']}" for r in metric_rows(keys, rec.metrics, baseline)]
    else:
        lines.append("Not a result; it enters no table, plot or paper. Why:")
        lines += [f"  - {r}" for r in rec.reasons] or ["  - no reason recorded"]
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
