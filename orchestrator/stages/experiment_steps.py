"""The steps every strategy of the experiments stage shares (the linear loop, the search tree): the files the
agent edits, the baseline, the prompts' check and feedback texts, and a run's verdict recorded once."""

from __future__ import annotations

import shlex
from typing import Any

from .. import prompts
from ..context import Context
from ..events import EditApplied, Message, NodeCreated, RunFinished, RunRecorded
from ..notes import append_section, run_section, run_stats

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


def baseline_metrics(ctx: Context) -> dict[str, Any]:
    """The baseline's validated metrics, from the journal (evaluated once per workspace, after prepare)."""
    from ..execution import baseline, prepare

    prepare(ctx)
    return baseline(ctx).metrics


def check_texts(ctx: Context) -> list[str]:
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


def feedback_prompt(ctx: Context, files: list[str], fin: RunFinished) -> str:
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


def record_run(ctx: Context, run: int, status: str, attempts: int, reasons: list[str], metrics: dict, baseline: dict,
            evaluation: str = "self-reported", *, code: str | None = None) -> RunRecorded:
    """A run's final verdict, its notes section and its commit — once. `code`: a tree node landing while the
    working tree holds another node's code (its code's commit, for the notes): only the notes are committed."""
    j = ctx.journal
    done = j.last(RunRecorded, run=run)
    if done is not None:
        return done
    edits = [e for e in j.of(EditApplied, stage=STAGE, run=run)]
    rec = RunRecorded(run=run, status=status, attempts=attempts, reasons=[] if status == "ok" else reasons,
                      metrics=metrics if status == "ok" else {}, evaluation=evaluation)
    if "notes.txt" in ctx.manifest.editable:
        rec_for_notes = rec.model_copy(update={"commit": code or ctx.ws.head()})
        tree_node = j.last(NodeCreated, run=run) is not None  # a search node gets one attempt: a failure is debugged as a child
        section = run_section(rec_for_notes, edits, ctx.manifest.key_metrics, baseline,
                              1 if tree_node else ctx.limits.max_attempts,
                              run_stats(j.events, run))
        problem = append_section(ctx.ws.root, "notes.txt", section)
        if problem:
            j.append(Message(level="warning", stage=STAGE, text=problem))
    rec.commit = ctx.ws.commit(f"run {run}: {status} after {attempts} attempt(s)", paths=["notes.txt"] if code else None)
    return j.append(rec)
