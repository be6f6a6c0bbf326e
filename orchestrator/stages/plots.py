"""The plots stage: the agent edits plot.py, the runner runs it in the experiment's environment, every
figure is checked (exists, readable image, not blank or a single colour); a crash or a bad figure
goes back to the agent, bounded by max_plot_attempts. Then the agent describes each figure in
notes.txt.

A template whose shipped plot script draws the runs named in a `labels` dict (AI Scientist's plot.py)
is told to add each run that is a result to it, and after each edit the dict is read (plot_labels, by
`ast`): a result run it leaves out fails the figure check like a blank figure.

plot.py sees only results: failed and degenerate runs never exist as run_i folders (execution.py
moves them under .orchestrate/runs/). A plot script that changes a run's files is caught and undone."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .. import prompts
from ..context import Context
from ..conversation import Conversations
from ..errors import UnsafePath
from ..events import Artifact, Feedback, Message, RunFinished, RunStarted
from ..figures import FigureCheck, check_image, find_figures
from ..notes import fmt
from ..paths import readable, safe_path
from ..plot_labels import Labels, read_labels
from ..workspace import sha256
from . import stage
from .plots_vision import review_rounds as vision_rounds

STAGE = "plots"


def plot_script(ctx: Context) -> str:
    m = ctx.manifest
    return next((p for p in shlex.split(m.plot_command or "") if p.endswith(".py")), "plot.py")


def _result_dirs(ctx: Context) -> list[Path]:
    return sorted((p for p in ctx.ws.root.glob("run_*") if p.is_dir() and p.name[4:].isdigit()),
                  key=lambda p: int(p.name[4:]))


def result_runs(ctx: Context) -> list[Path]:
    """The run folders that are results: the baseline and every run recorded ok (failed runs have none)."""
    from ..events import RunRecorded

    ok = {r.run for r in ctx.journal.of(RunRecorded) if r.status == "ok"}
    return [d for d in _result_dirs(ctx) if int(d.name[4:]) == 0 or int(d.name[4:]) in ok]


def labels_mode(ctx: Context, script: str) -> bool:
    """Whether the template's plot script, as shipped (the workspace's first commit), draws the runs of a
    `labels` dict: then every result run must be named in it."""
    roots = ctx.ws.git("rev-list", "--max-parents=0", "HEAD", check=False).split()
    if not roots:
        return False
    shipped = read_labels(ctx.ws.git("show", f"{roots[-1]}:{script}", check=False))
    return shipped.found and not shipped.problem


def check_labels(ctx: Context, script: str) -> tuple[Labels, list[str]]:
    """The script's labels now, and the result runs they leave out (every one when they cannot be read)."""
    path = readable(ctx.ws.root, script)
    try:
        text = path.read_text(encoding="utf-8", errors="replace") if path is not None and path.is_file() else ""
    except OSError:
        text = ""
    labels = read_labels(text)
    runs = [d.name for d in result_runs(ctx)]
    if not labels.found:
        labels = labels.model_copy(update={"problem": f"`labels` is gone from {script}"})
    return labels, (runs if labels.problem else labels.missing(runs))


def _snapshot(dirs: list[Path]) -> dict[str, str]:
    out = {}
    for d in dirs:
        for f in d.rglob("*"):
            if f.is_file():
                out[str(f)] = sha256(f)
    return out


def _undo_result_changes(ctx: Context, before: dict[str, str]) -> list[str]:
    """Put run_i folders back as they were; returns what had changed (relative paths)."""
    after = _snapshot(_result_dirs(ctx))
    root = ctx.ws.root
    changed = sorted({p for p in before if after.get(p) != before[p]} | {p for p in after if p not in before})
    rels = [str(Path(p).relative_to(root)) for p in changed]
    for rel in rels:
        if (root / rel).exists() and str(root / rel) not in before:
            (root / rel).unlink()
    tracked = [r for r in rels if str(root / r) in before]
    if tracked:
        ctx.ws.git("checkout", "HEAD", "--", *tracked)
    return rels


def execute_plot(ctx: Context, attempt: int) -> tuple[RunFinished, list[FigureCheck]]:
    """Run the plot command once and check its figures; memoised by the journal like experiment runs.
    The process is judged as an experiment is (execution.process_verdict): a plot script stopped at its
    memory limit reads as an experiment stopped at it."""
    from .. import executors, runner
    from ..execution import experiment_env, named_exception, process_verdict, workspace_spec
    from ..feedback import for_run

    j, ws, m = ctx.journal, ctx.ws, ctx.manifest
    done = j.last(RunFinished, stage=STAGE, attempt=attempt, phase="plot")
    if done is not None:
        return done, [check_image(ws.root / a.path, rel=a.path)
                      for a in j.of(Artifact, stage=STAGE)
                      if a.kind == "figure" and a.detail.startswith(f"attempt {attempt}:")]
    for old in find_figures(ws.root, m.figures):  # a figure left from an earlier attempt must not pass for a new one
        old.unlink()
    log_dir = ws.state / "plots" / f"attempt_{attempt}"
    j.append(RunStarted(stage=STAGE, attempt=attempt, phase="plot", out_dir=".", commit=ws.head()))
    before = _snapshot(_result_dirs(ctx))
    git_before = ws.git_snapshot()
    spec = workspace_spec(ctx, runner.command_argv(m.plot_command, ctx.python, out_dir="."), log_dir=log_dir,
                          timeout_s=ctx.limits.plot_timeout_s, key=f"plots/attempt_{attempt}", writing=None,
                          env=experiment_env(ctx, smoke=False))
    record = executors.run(ctx.executor, spec)
    reasons: list[str] = []
    status = "ok"
    tampered = ws.changed_protected()
    if tampered:
        ws.restore_protected(tampered)
        status, reasons = "tampered", [f"protected file {', '.join(tampered)} was changed; it has been restored"]
    git = ws.restore_git(git_before)
    if git:
        status = "tampered"
        reasons.append(f"the plot script changed .git/{git[0]} (the orchestrator's history and configuration); "
                       "restored")
    undone = _undo_result_changes(ctx, before)
    if undone:
        status = "tampered"
        reasons.append(f"the plot script changed run results ({', '.join(undone[:5])}); they have been restored — "
                       "read them, never write them")
    feedback = for_run(record.stdout_path, record.stderr_path, workdir=ws.root)
    ended = process_verdict(record, timeout_s=ctx.limits.plot_timeout_s)
    if ended is not None:
        named_exception(ended, feedback)
        if ended.status == "interrupted":
            status, reasons = "interrupted", ended.reasons
        else:
            status = status if status == "tampered" else ended.status
            reasons += ended.reasons
    checks = [check_image(p, rel=str(p.relative_to(ws.root))) for p in find_figures(ws.root, m.figures)]
    if not checks and status == "ok":
        status = "failed"
        reasons.append(f"no figure was written (expected files matching {' or '.join(m.figures)} "
                       "in the workspace root)")
    for c in checks:
        if not c.ok:
            if status == "ok":
                status = "failed"
            reasons.append(f"{c.path}: {c.problem}")
    script = plot_script(ctx)
    if labels_mode(ctx, script):
        labels, missing = check_labels(ctx, script)
        if missing:
            status = "failed" if status == "ok" else status
            why = labels.problem or f"its labels dict does not name {', '.join(missing)}"
            reasons.append(f"{script} draws exactly the runs in its `labels` dict, and {why}: add an entry "
                           f"\"run_N\": \"<what the run changed>\" for each run that is a result")
        j.append(Artifact(stage=STAGE, kind="plot-labels", path=script, ok=not missing,
                          detail=f"attempt {attempt}: " + (f"missing {', '.join(missing)}" if missing else
                                                          f"names {', '.join(labels.runs)}")))
    for c in checks:
        j.append(Artifact(stage=STAGE, kind="figure", path=c.path, ok=c.ok,
                          detail=f"attempt {attempt}: " + (f"{c.width}x{c.height}" if c.ok else c.problem)))
    n_ok = len([c for c in checks if c.ok])
    commit = ws.commit(f"plots attempt {attempt}: {status}" + (f" ({n_ok} figure(s))" if checks else ""))
    fin = j.append(RunFinished(
        stage=STAGE, attempt=attempt, phase="plot", out_dir=".", status=status, reasons=reasons,
        exit_code=record.exit_code, wall_s=record.wall_s, peak_rss_mb=record.peak_rss_mb, timed_out=record.timed_out,
        feedback=Feedback() if status == "ok" else feedback, log_dir=str(log_dir.relative_to(ws.root)), commit=commit,
        containment=record.containment, job=record.job,
    ))
    return fin, checks


def _first_prompt(ctx: Context, script: str) -> str:
    from ..events import NodeCreated

    m = ctx.manifest
    ablations = {n.run: n for n in ctx.journal.of(NodeCreated) if n.kind == "ablation"}
    runs = []
    for d in result_runs(ctx):
        n = int(d.name[4:])
        try:
            info = json.loads(safe_path(ctx.ws.root, f"{d.name}/{m.results_file}").read_text())
        except (OSError, json.JSONDecodeError, UnsafePath):
            continue
        from ..results import flatten

        flat = flatten(info)
        a = ablations.get(n)
        title = (f"ablation of run {a.parent}: run {a.parent} without the change of run {a.ablates} (not a search result)"
                 if a is not None else "baseline" if n == 0 else f"run {n}")
        runs.append({"dir": d.name, "title": title,
                     "metrics": ", ".join(f"{k} {fmt(flat[k])}" for k in m.key_metrics if k in flat)})
    return prompts.render(
        "plots_first", idea=ctx.idea, script=script, runs=runs, results_file=m.results_file,
        command=m.plot_command, timeout_s=ctx.limits.plot_timeout_s, max_attempts=ctx.limits.max_plot_attempts,
        figures=m.figures, key_metrics=m.key_metrics, labels=labels_mode(ctx, script),
        run_dirs=[d.name for d in result_runs(ctx)], ablations=bool(ablations),
    )


@stage(STAGE)
def run_stage(ctx: Context, conv: Conversations) -> str:
    m = ctx.manifest
    if not m.plot_command:
        ctx.journal.append(Message(stage=STAGE, text="the template has no plot_command: no figures"))
        return "no plot command in the template"
    script = plot_script(ctx)
    files = [script] + (["notes.txt"] if "notes.txt" in m.editable else [])
    max_attempts = ctx.limits.max_plot_attempts
    prompt = _first_prompt(ctx, script)
    good: list[FigureCheck] = []
    last_reasons: list[str] = []
    for attempt in range(1, max_attempts + 1):
        outcome = conv.ask(STAGE, prompt, files=files, attempt=attempt, step="edit" if attempt == 1 else "fix")
        if attempt > 1 and not outcome.changed:
            last_reasons = ["the reply changed nothing"]
            prompt = prompts.render("plots_edit_not_applied", attempt=attempt, max_attempts=max_attempts,
                                    failed=outcome.edit.failed, refused=outcome.edit.refused, files=files, script=script)
            continue
        fin, checks = execute_plot(ctx, attempt)
        if fin.status == "ok":
            good = checks
            break
        last_reasons = fin.reasons
        fb = fin.feedback
        what = {"failed": "failed", "timeout": "ran out of time", "tampered": "changed files it must only read",
                "interrupted": "was interrupted"}.get(fin.status, fin.status)
        prompt = prompts.render(
            "plots_feedback", attempt=attempt, max_attempts=max_attempts, command=m.plot_command, what=what,
            reasons=fin.reasons, traceback=fb.traceback, stderr_tail=fb.stderr_tail,
            stdout_tail=fb.stdout_tail, script=script,
        )
    if not good:
        ctx.journal.append(Message(stage=STAGE, level="warning",
                                   text=f"no usable figure after {max_attempts} attempt(s): {'; '.join(last_reasons)[:300]}"))
        return f"no usable figure after {max_attempts} attempt(s)"
    if "notes.txt" in files:
        notes = conv.ask(STAGE, prompts.render("plots_notes", figures=good), files=files, step="notes")
        notes_file = readable(ctx.ws.root, "notes.txt")
        text = notes_file.read_text() if notes_file is not None and notes_file.is_file() else ""
        undescribed = [c.path for c in good if Path(c.path).name not in text]
        if undescribed or not notes.changed:
            ctx.journal.append(Message(stage=STAGE, level="warning",
                                       text=f"notes.txt does not describe {', '.join(undescribed) or 'the figures'}"))
    good, seen = vision_rounds(ctx, conv, files=files, script=script, good=good, attempt=attempt, run_plot=execute_plot)
    return f"{len(good)} figure(s): {', '.join(c.path for c in good)}; {seen}"
