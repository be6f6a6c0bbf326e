"""One run of the experiment (smoke or full) or of the plot script, recorded and judged.

Memoised like exchanges: a run whose verdict is in the journal is not run again; a run that was
started but never finished (a crash, kill -9) is redone from its code snapshot."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import runner
from .context import Context
from .events import RunFinished, RunStarted
from .feedback import failure_summary
from .results import Verdict, code_files, code_unchanged, load_results, validate

SMOKE_DIR = ".smoke"


def experiment_env(ctx: Context, *, smoke: bool) -> dict[str, str]:
    """The child's environment: ours without secrets, plus the run's switches and writable homes."""
    env = runner.scrub_env(os.environ)
    home = ctx.cache_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        ORCHESTRATE_CACHE_DIR=str(ctx.cache_dir),
        ORCHESTRATE_WORKSPACE=str(ctx.ws.root),
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        MPLCONFIGDIR=str(home / ".mpl"),
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("ORCHESTRATE_SMOKE", None)
    if smoke:
        env["ORCHESTRATE_SMOKE"] = "1"
    return env


def out_dir_for(run: int, attempt: int, phase: str) -> str:
    return f"run_{run}" if phase == "full" else f"{SMOKE_DIR}/run_{run}_attempt_{attempt}"


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, json.JSONDecodeError):
        return None


def previous_ok(ctx: Context, run: int) -> dict[str, Any] | None:
    """The results of the last run before `run` that was a result."""
    for r in range(run - 1, 0, -1):
        data = _load_json(ctx.ws.root / f"run_{r}" / ctx.manifest.results_file)
        if data is not None:
            return data
    return None


def execute(ctx: Context, run: int, attempt: int, phase: str) -> RunFinished:
    """Run the experiment once; returns its recorded verdict (from the journal if already judged)."""
    j = ctx.journal
    done = j.last(RunFinished, run=run, attempt=attempt, phase=phase)
    if done is not None:
        return done
    ws, m = ctx.ws, ctx.manifest
    rel = out_dir_for(run, attempt, phase)
    out = ws.root / rel
    log_dir = ws.attempt_dir(run, attempt) / phase
    smoke = phase == "smoke"
    timeout = ctx.limits.smoke_timeout_s if smoke else ctx.limits.full_timeout_s
    argv = runner.command_argv(m.command, ctx.python, out_dir=rel)
    kw = {"cwd": ws.root, "log_dir": log_dir, "timeout_s": timeout, "env": experiment_env(ctx, smoke=smoke),
          "limits": ctx.limits, "isolation": ctx.isolation, "writable": [ctx.cache_dir], "watch_dir": ws.root,
          "stop": ctx.stop, "key": f"run_{run}/attempt_{attempt}/{phase}"}
    started = j.last(RunStarted, run=run, attempt=attempt, phase=phase)
    if started is not None and started.job_id and hasattr(ctx.executor, "wait"):
        record = ctx.executor.wait(started.job_id, argv=argv, **kw)  # resumed: its job may still run; never submit twice
    else:
        if out.exists():
            shutil.rmtree(out)
        if log_dir.exists():
            shutil.rmtree(log_dir)
        job_id = ctx.executor.submit(argv, out_dir=rel, **kw) if hasattr(ctx.executor, "submit") else None  # Slurm
        j.append(RunStarted(run=run, attempt=attempt, phase=phase, out_dir=rel, commit=ws.head(), job_id=job_id))
        record = ctx.executor.wait(job_id, argv=argv, **kw) if job_id else ctx.executor.run(argv, **kw)
    verdict, status = judge(ctx, record, out, run=run, smoke=smoke)
    tb, err_tail, out_tail = failure_summary(Path(record.stdout_path), Path(record.stderr_path), workdir=str(ws.root))
    if tb and verdict.reasons and verdict.reasons[0].startswith("exited with code"):
        # name the exception where the verdict is read (notes, show, report), not only in the feedback
        verdict.reasons[0] += f": {tb.strip().splitlines()[-1].strip()[:200]}"
    feedback = ""
    commit = None
    if status != "ok":
        feedback = json.dumps({"traceback": tb, "stderr_tail": err_tail, "stdout_tail": out_tail})
        if out.exists() and phase == "full":  # keep what it wrote, out of the way of the next attempt
            shutil.move(str(out), str(ws.attempt_dir(run, attempt) / "out"))
    elif phase == "full":
        commit = ws.commit(f"run {run} attempt {attempt}: full run is a result")
    return j.append(RunFinished(
        run=run, attempt=attempt, phase=phase, out_dir=rel, status=status, reasons=verdict.reasons,
        exit_code=record.exit_code, wall_s=record.wall_s, peak_rss_mb=record.peak_rss_mb,
        timed_out=record.timed_out, metrics=verdict.metrics, feedback=feedback, log_dir=str(log_dir.relative_to(ws.root)),
        commit=commit, containment=record.containment, job=getattr(record, "job", {}),
    ))


def judge(ctx: Context, record: runner.RunRecord, out: Path, *, run: int, smoke: bool) -> tuple[Verdict, str]:
    """Tampering first (a changed yardstick voids everything), then the process, then the results."""
    ws, m = ctx.ws, ctx.manifest
    changed = ws.changed_protected()
    if changed:
        ws.restore_protected(changed)
        return Verdict(status="failed", reasons=[
            f"protected file {', '.join(changed)} was changed during the run; it has been restored and the run rejected"
        ]), "tampered"
    if record.killed == "interrupted":
        return Verdict(status="failed", reasons=["interrupted"]), "interrupted"
    if record.timed_out:
        limit = ctx.limits.smoke_timeout_s if smoke else ctx.limits.full_timeout_s
        return Verdict(status="failed", reasons=[f"killed after its time limit of {limit:g} s"]), "timeout"
    if record.killed:  # the executor words every limit it enforced (runner._limit_detail, Slurm's states)
        detail = record.limit_detail or record.killed
        return Verdict(status="failed", reasons=[f"stopped: {detail}"], kinds=[f"limit-{record.killed}"]), "failed"
    if record.exit_code != 0:
        return Verdict(status="failed", reasons=[f"exited with code {record.exit_code}"]), "failed"
    info, err = load_results(out / m.results_file)
    baseline = _load_json(ws.root / "run_0" / m.results_file)
    verdict = validate(info, m, baseline=baseline, previous=previous_ok(ctx, run), smoke=smoke, load_error=err)
    prev = None if smoke or info is None else _previous_result(ctx, run)
    files = code_files(m)
    if prev is not None and files and not ws.diff(prev.commit, ws.head(), *files).strip():
        verdict.reasons.append(code_unchanged(files, prev.run))
        verdict.kinds.append("code-unchanged")
        verdict.status = "degenerate"
    return verdict, verdict.status


def _previous_result(ctx: Context, run: int) -> RunStarted | None:
    """The start (with its code commit) of the last full run before `run` that was a result."""
    for fin in reversed(ctx.journal.of(RunFinished, phase="full", status="ok")):
        if fin.run < run:
            started = ctx.journal.last(RunStarted, run=fin.run, attempt=fin.attempt, phase="full")
            return started if started is not None and started.commit else None
    return None
