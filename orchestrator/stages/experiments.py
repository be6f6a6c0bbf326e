"""The experiments stage: agent edit, smoke run, full run, validation — per run, with attempts."""

from __future__ import annotations

import shlex
from typing import Any

from .. import prompts
from ..adopt import template_prompt
from ..context import Context
from ..conversation import Conversations
from ..events import EditApplied, Message, RunFinished, RunRecorded
from ..notes import append_section, baseline_values, metric_rows, run_section, run_stats
from ..results import flatten
from . import stage

STAGE = "experiments"


def experiment_files(ctx: Context) -> list[str]:
    """The editable files the agent works on in this stage: the command's script and other code. Notes
    stay out of this chat (the orchestrator writes the run sections; the agent annotates them in the
    plots stage): sending them with every message would only cost tokens."""
    m = ctx.manifest
    script = next((p for p in shlex.split(m.command) if p.endswith(".py")), None)
    plot = next((p for p in shlex.split(m.plot_command or "") if p.endswith(".py")), None)
    files = [f for f in m.editable if f not in (plot, "notes.txt") and not any(c in f for c in "*?[")]
    if script and script in files:
        files.remove(script)
        files.insert(0, script)
    return files


def _baseline(ctx: Context) -> dict[str, Any]:
    """The baseline's validated metrics, from the journal (evaluated once per workspace, after prepare)."""
    from ..execution import baseline, prepare

    prepare(ctx)
    return baseline(ctx).metrics


def _check_texts(ctx: Context) -> list[str]:
    out = []
    for c in ctx.manifest.checks:
        parts = [c.path]
        if c.min is not None:
            parts.append(f">= {c.min}")
        if c.max is not None:
            parts.append(f"<= {c.max}")
        if c.finite:
            parts.append("finite")
        out.append(" ".join(parts))
    if ctx.manifest.compare.keys:
        out.append(f"{', '.join(ctx.manifest.compare.keys)} differ from the baseline's and the previous run's")
    return out


def _feedback_prompt(ctx: Context, files: list[str], fin: RunFinished) -> str:
    fb = fin.feedback
    what = {"failed": "failed", "degenerate": "finished but its results are degenerate",
            "timeout": "ran out of time", "tampered": "changed what no run may change",
            "misreported": "reported metrics its evaluation does not reproduce"}.get(fin.status, fin.status)
    return prompts.render(
        "experiments_feedback", run=fin.run, attempt=fin.attempt, max_attempts=ctx.limits.max_attempts,
        phase=fin.phase, what=what, reasons=fin.reasons, traceback=fb.traceback,
        stderr_tail=fb.stderr_tail, stdout_tail=fb.stdout_tail, files=files,
        command=ctx.manifest.command_for(f"run_{fin.run}", fin.seed),
    )


@stage(STAGE)
def run_stage(ctx: Context, conv: Conversations) -> str:
    m = ctx.manifest
    files = experiment_files(ctx)
    baseline = _baseline(ctx)
    flat_base = flatten(baseline)
    j = ctx.journal
    max_runs, max_attempts = ctx.limits.max_runs, ctx.limits.max_attempts
    prompt = prompts.render(
        "experiments_first", idea=ctx.idea, max_runs=max_runs, files=files,
        baseline=baseline_values(m.key_metrics, flat_base, run_stats(j.events, 0)),
        command=m.command_for("run_i"), protected=m.protected, checks=_check_texts(ctx),
        framing=template_prompt(ctx.ws),
    )
    results = 0
    for run in range(1, max_runs + 1):
        status, attempts, reasons, metrics, evaluation = "failed", 0, ["no attempt"], {}, "self-reported"
        for attempt in range(1, max_attempts + 1):
            attempts = attempt
            outcome = conv.ask(STAGE, prompt, files=files, run=run, attempt=attempt)
            if outcome.done and results > 0:
                j.append(Message(stage=STAGE, text=f"the agent ended the experiments before run {run}"))
                return f"{results} result(s); the agent ended the experiments"
            if not outcome.changed:
                reasons = ["the reply changed no file"]
                prompt = prompts.render(
                    "edit_not_applied", run=run, attempt=attempt, max_attempts=max_attempts,
                    failed=outcome.edit.failed, refused=outcome.edit.refused, files=files,
                    decision=outcome.done,
                )
                continue
            smoke = _execute(ctx, run, attempt, "smoke")
            if smoke.status != "ok":
                status, reasons = smoke.status, smoke.reasons
                prompt = _feedback_prompt(ctx, files, smoke)
                continue
            full, seeds = _execute_full(ctx, run, attempt)
            status, reasons, metrics = full.status, full.reasons, full.metrics
            evaluation = full.evaluation
            if full.status == "ok":
                break
            failed = next((f for f in seeds if f.status != "ok"), None)
            if failed is None:
                break  # nothing the agent can act on (no seed ran)
            prompt = _feedback_prompt(ctx, files, failed.model_copy(update={"reasons": full.reasons}))
        rec = _record(ctx, run, status, attempts, reasons, metrics, baseline, evaluation)
        if rec.status == "ok":
            results += 1
        runs_left = max_runs - run
        prompt = prompts.render(
            "experiments_next", run=run, status=rec.status, reasons=rec.reasons,
            metrics=metric_rows(m.key_metrics, rec.metrics, baseline, run_stats(j.events, run)), runs_left=runs_left,
            next_run=run + 1,
        )
    return f"{results} result(s) of {max_runs} run(s)"


def _execute(ctx: Context, run: int, attempt: int, phase: str) -> RunFinished:
    from ..execution import execute

    return execute(ctx, run, attempt, phase)


def _execute_full(ctx: Context, run: int, attempt: int):
    from ..execution import execute_full

    return execute_full(ctx, run, attempt)


def _record(ctx: Context, run: int, status: str, attempts: int, reasons: list[str], metrics: dict, baseline: dict,
            evaluation: str = "self-reported") -> RunRecorded:
    """A run's final verdict, its notes section and its commit — once."""
    j = ctx.journal
    done = j.last(RunRecorded, run=run)
    if done is not None:
        return done
    edits = [e for e in j.of(EditApplied, stage=STAGE, run=run)]
    rec = RunRecorded(run=run, status=status, attempts=attempts, reasons=[] if status == "ok" else reasons,
                      metrics=metrics if status == "ok" else {}, evaluation=evaluation)
    if "notes.txt" in ctx.manifest.editable:
        rec_for_notes = rec.model_copy(update={"commit": ctx.ws.head()})
        section = run_section(rec_for_notes, edits, ctx.manifest.key_metrics, baseline, ctx.limits.max_attempts,
                              run_stats(j.events, run))
        problem = append_section(ctx.ws.root, "notes.txt", section)
        if problem:
            j.append(Message(level="warning", stage=STAGE, text=problem))
    rec.commit = ctx.ws.commit(f"run {run}: {status} after {attempts} attempt(s)")
    return j.append(rec)
