"""The experiments stage: agent edit, smoke run, full run, validation — per run, with attempts."""

from __future__ import annotations

from .. import prompts
from ..adopt import template_prompt
from ..context import Context
from ..conversation import Conversations
from ..events import Message, RunFinished
from ..notes import baseline_values, metric_rows, run_stats
from ..results import flatten
from . import stage
from .experiment_steps import STAGE, baseline_metrics, check_texts, experiment_files, feedback_prompt, record_run
from .experiment_steps import record_run as _record  # noqa: F401  (benchmarks/faults/sae_catalogue.py reads it)


@stage(STAGE)
def run_stage(ctx: Context, conv: Conversations) -> str:
    if ctx.strategy == "tree":
        from ..search.engine import run_search

        return run_search(ctx, conv)
    m = ctx.manifest
    files = experiment_files(ctx)
    baseline = baseline_metrics(ctx)
    flat_base = flatten(baseline)
    j = ctx.journal
    max_runs, max_attempts = ctx.limits.max_runs, ctx.limits.max_attempts
    prompt = prompts.render(
        "experiments_first", idea=ctx.idea, max_runs=max_runs, files=files,
        baseline=baseline_values(m.key_metrics, flat_base, run_stats(j.events, 0)),
        command=m.command_for("run_i"), protected=m.protected, checks=check_texts(ctx),
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
                prompt = feedback_prompt(ctx, files, smoke)
                continue
            full, seeds = _execute_full(ctx, run, attempt)
            status, reasons, metrics = full.status, full.reasons, full.metrics
            evaluation = full.evaluation
            if full.status == "ok":
                break
            failed = next((f for f in seeds if f.status != "ok"), None)
            if failed is None:
                break  # nothing the agent can act on (no seed ran)
            prompt = feedback_prompt(ctx, files, failed.model_copy(update={"reasons": full.reasons}))
        rec = record_run(ctx, run, status, attempts, reasons, metrics, baseline, evaluation)
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
