"""Text for people: the one number formatter, durations, token counts, changes against a baseline, and
`describe(event)`, the one line each journal event reads as in the progress and fleet views.

The paper's numbers are typeset by `paper.results_tex.format_value` (LaTeX, not text)."""

from __future__ import annotations

import math
from typing import Any

from .events import (
    EditApplied,
    Event,
    Exchange,
    FiguresReviewed,
    Message,
    RunAggregated,
    RunFinished,
    RunRecorded,
    StageFinished,
    StageStarted,
)
from .readmodel import NOT_APPLICABLE, NOT_APPLICABLE_REASON, not_applicable


def fmt_num(v: Any, *, digits: int = 4, missing: str = "n/a") -> str:
    """Numbers for people: `digits` significant digits (scientific when tiny or huge), `missing` for None."""
    if v is None:
        return missing
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(v)


def fmt_wall(s: float | None) -> str:
    """A duration: 12.3s, 4m05s, 2h03m; "-" when not measured."""
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def fmt_tokens(n: int) -> str:
    """A token count: 9,999 or 12.3k."""
    return f"{n / 1000:.1f}k" if n >= 10_000 else f"{n:,}"


def delta(value: float | None, base: float | None) -> str:
    """Relative change against the baseline, for a table cell."""
    if value is None or base is None:
        return ""
    if base == 0:
        return "" if value == 0 else f"{value - base:+.3g}"
    return f"{(value - base) / abs(base) * 100:+.1f}%"


def describe(e: Event) -> str | None:
    """The line an event reads as while a workspace runs; None for events that are shown only as state."""
    if isinstance(e, StageStarted):
        return f"stage {e.stage}: started"
    if isinstance(e, StageFinished):
        return f"stage {e.stage}: {e.status}" + (f" — {e.summary}" if e.summary else "")
    if isinstance(e, Exchange):
        where = f" run {e.run} attempt {e.attempt}" if e.run else ""
        return (f"  agent{where}: {e.step} reply ({e.prompt_tokens}+{e.completion_tokens} tokens, "
                f"${e.cost_usd:.4f}{', scripted' if e.scripted else ''})")
    if isinstance(e, EditApplied):
        what = f"edited {', '.join(e.files)} (+{e.added} -{e.removed})" if e.files else "no edit"
        if e.failed:
            what += " — edit blocks did not apply"
        if e.refused:
            what += f" — refused edits to {', '.join(e.refused)}"
        if e.done:
            what = "declared the stage done"
        return f"  agent: {what}"
    if isinstance(e, RunFinished):
        why = f" — {e.reasons[0]}" if e.reasons else ""
        who = f"run {e.run}" if e.run is not None else e.stage
        seed = f" seed {e.seed}" if e.seed is not None and "/seed_" in e.out_dir else ""  # one of several seeds
        return f"  {who} attempt {e.attempt} {e.phase}{seed}: {e.status} in {e.wall_s:.1f}s{why}"
    if isinstance(e, RunAggregated):
        n = len(e.seeds_ok) + len(e.seeds_failed)
        why = f" — {e.reasons[0]}" if e.reasons and e.status != "ok" else ""
        return f"  run {e.run} attempt {e.attempt}: {e.status} over its seeds ({len(e.seeds_ok)} of {n} ok){why}"
    if isinstance(e, RunRecorded):
        if not_applicable(e):  # an ablation whose change no longer comes out: nothing ran, not a failure
            why = e.reasons[0].removeprefix(NOT_APPLICABLE_REASON).strip()
            return f"run {e.run}: {NOT_APPLICABLE.upper()}, nothing was run: {why}"
        return f"run {e.run}: {e.status.upper()} after {e.attempts} attempt(s)"
    if isinstance(e, FiguresReviewed) and e.round:
        found = "".join(f", {f.get('figure')} {f.get('kind')}" for f in e.findings[:4])
        return f"  vision review round {e.round}: {e.skipped or f'{len(e.findings)} finding(s){found}'}"
    if isinstance(e, Message):
        return f"{e.level}: {e.text}" if e.level != "info" else e.text
    return None
