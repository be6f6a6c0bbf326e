"""The plots stage's vision rounds (issue 17): once the figures pass the deterministic checks and the
notes describe them, a model that takes images looks at each with its caption (its lines in notes.txt),
the notes and the validated runs' numbers (vision.py). Its findings go back to the agent, which edits
plot.py (step `vision-fix`); the plot runs again as a new plot attempt and the new figures are looked
at again, for at most `limits.vision_rounds` rounds. Every round is a `figures_reviewed` event, which
review.json reports. A fix that breaks the plot is undone: the last figures that passed stay.

Resumable like the rest of the stage: a recorded look (an exchange), reply and plot run are served
from the journal, never asked or run again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import prompts, vision
from ..context import Context
from ..conversation import Conversations
from ..events import BaselineRecorded, FiguresReviewed, Message, NodeCreated, RunFinished, RunRecorded
from ..figures import FigureCheck
from ..notes import fmt
from ..paths import readable

STAGE = "plots"
STEP = "vision-fix"


def captions(notes: str, figures: list[str]) -> dict[str, str]:
    """Each figure's lines in the notes: the paragraph that names its file (the agent's description of it)."""
    out: dict[str, str] = {}
    paragraphs = [p.strip() for p in notes.split("\n\n") if p.strip()]
    for rel in figures:
        name = Path(rel).name
        found = [p for p in paragraphs if name in p]
        if found:
            lines = [ln for ln in found[-1].splitlines() if name in ln] or found[-1].splitlines()
            out[rel] = " ".join(lines)[:600]
    return out


def numbers(ctx: Context) -> str:
    """The validated runs' key metrics, from the journal (never from files the agent could have changed)."""
    keys = list(ctx.manifest.key_metrics)
    rows = []
    base = ctx.journal.of(BaselineRecorded)
    if base:
        b = base[-1]
        rows.append("run_0 (baseline): " + ", ".join(f"{k} {fmt(b.metrics[k])}" for k in keys if k in b.metrics))
    last: dict[int, RunRecorded] = {r.run: r for r in ctx.journal.of(RunRecorded)}
    ablations = {n.run for n in ctx.journal.of(NodeCreated) if n.kind == "ablation"}
    for n, r in sorted(last.items()):
        if r.status == "ok" and n != 0:
            rows.append(f"run_{n}{' (ablation)' if n in ablations else ''}: "
                        + ", ".join(f"{k} {fmt(r.metrics[k])}" for k in keys if k in r.metrics))
    return "\n".join(rows)


def _notes(ctx: Context) -> str:
    f = readable(ctx.ws.root, "notes.txt")
    return f.read_text(errors="replace")[-20_000:] if f is not None and f.is_file() else ""


def _restore(ctx: Context, commit: str | None, script: str, figures: list[str]) -> None:
    """Put plot.py and the figures back as the last plot attempt that passed left them."""
    if commit:
        ctx.ws.git("checkout", commit, "--", script, *figures)
        ctx.ws.commit("plots: vision fix undone, the last figures that passed restored")


PlotRun = Callable[[Context, int], tuple[RunFinished, list[FigureCheck]]]


def review_rounds(ctx: Context, conv: Conversations, *, files: list[str], script: str, good: list[FigureCheck],
                  attempt: int, run_plot: PlotRun) -> tuple[list[FigureCheck], str]:
    """Look at the figures, send the findings to the agent and plot again (`run_plot`: plots.execute_plot),
    for up to vision_rounds rounds. Returns the figures that stand (those of the last plot attempt that
    passed; `attempt` is that attempt) and what the review came to, for the stage's summary."""
    j = ctx.journal
    rounds = ctx.limits.vision_rounds
    chat, why = vision.chat_for(ctx, STAGE)
    if chat is None or rounds == 0:
        why = why or "vision_rounds is 0"
        if not j.of(Message, stage=STAGE, text=f"vision review skipped: {why}"):
            j.append(vision.VisionReview(model=None, skipped=why).event(STAGE, 0))
            j.append(Message(stage=STAGE, text=f"vision review skipped: {why}"))
        return good, f"vision review skipped: {why}"
    passed = j.last(RunFinished, stage=STAGE, attempt=attempt, phase="plot")
    good_commit = passed.commit if passed is not None else None
    for r in range(1, rounds + 1):
        paths = [c.path for c in good]
        notes = _notes(ctx)
        review = vision.review_figures(chat, ctx.ws.root, paths, captions=captions(notes, paths), notes=notes,
                                       numbers=numbers(ctx), stage_round=r)
        recorded = j.last(FiguresReviewed, stage=STAGE, round=r)
        if recorded is None or vision.VisionReview.of(recorded) != review:  # a resumed stage records a round once
            j.append(review.event(STAGE, r))
        if review.clean or review.skipped:
            if review.skipped:
                j.append(Message(stage=STAGE, text=f"vision review skipped: {review.skipped}"))
                return good, f"vision review skipped: {review.skipped}"
            return good, f"vision review: no finding in round {r}" + (f" (after {r - 1} fix(es))" if r > 1 else "")
        if r == rounds:
            j.append(Message(stage=STAGE, level="warning",
                             text=f"vision review: {len(review.findings)} finding(s) left after {rounds} round(s): "
                                  + "; ".join(f"{f.figure}: {f.kind}" for f in review.findings[:6])))
            return good, f"vision review: {len(review.findings)} finding(s) left after {rounds} round(s)"
        attempt += 1
        prompt = prompts.render("plots_vision", findings=review.findings, round=r, rounds=rounds, script=script,
                                figures=paths)
        outcome = conv.ask(STAGE, prompt, files=files, attempt=attempt, step=STEP)
        if not outcome.changed:
            j.append(Message(stage=STAGE, level="warning",
                             text=f"vision review: the agent changed nothing for {len(review.findings)} finding(s)"))
            return good, f"vision review: {len(review.findings)} finding(s) left, the agent changed nothing"
        fin, checks = run_plot(ctx, attempt)
        if fin.status != "ok":
            _restore(ctx, good_commit, script, paths)
            j.append(Message(stage=STAGE, level="warning",
                             text=f"vision review: the fix broke the plot ({'; '.join(fin.reasons)[:200]}); "
                                  "the last figures that passed are kept"))
            return good, f"vision review: {len(review.findings)} finding(s) left, the fix broke the plot and was undone"
        good, good_commit = [c for c in checks if c.ok], fin.commit
    return good, "vision review: done"  # not reached: the last round returns above
