"""One run of the experiment (smoke or full), recorded, evaluated and judged.

Memoised like exchanges: a run whose verdict is in the journal is not run again; a run that was
started but never finished (a crash, kill -9) is redone from its code snapshot.

Sealed evaluation: a template's `[prepare]` step builds the data cache once (the cache's only writer);
after every run that exited 0 its `[evaluate]` step recomputes the metrics from what the run saved, in
its own sandboxed process (cwd: copies of the protected files only; the run's folder and the cache
read-only; its output under `.orchestrate/`; the workspace's secret seed in ORCHESTRATE_EVAL_SEED).
The evaluated metrics overlay the run's results file; what the run claimed is kept as `reported.*`."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import env as names
from . import executors, runner, sandbox
from . import seeds as seeds_mod
from .context import Context
from .errors import PrepareFailed, UnsafePath
from .events import BaselineRecorded, Feedback, NodeCreated, Prepared, RunAggregated, RunFinished, RunStarted
from .feedback import failure_summary
from .feedback import for_run as feedback_for
from .paths import changed_files, tree_hashes
from .results import Verdict, code_files, code_unchanged, flatten, load_results, misreports, overlay, validate
from .runner import RunSpec
from .seeds import SeedPlan
from .template import BASELINE_RUN

SMOKE_DIR = ".smoke"
EVAL_OUT = "evaluated.json"
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1"}


def data_dir(ctx: Context) -> Path:
    """The data cache a run reads (read-only): per [prepare] key when the template has that step."""
    m = ctx.manifest
    return ctx.cache_dir / _prepare_key(ctx) if m.prepare else ctx.cache_dir


def _prepare_key(ctx: Context) -> str:
    """What the cache is built from: the prepare command and the pristine protected files."""
    h = hashlib.sha256(ctx.manifest.prepare.command.encode() if ctx.manifest.prepare else b"")
    pristine = ctx.ws.state / "pristine"
    for rel in sorted(ctx.ws.protected_hashes()):
        h.update(rel.encode() + b"\0" + (pristine / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def experiment_env(ctx: Context, *, smoke: bool, home: Path | None = None) -> dict[str, str]:
    """The child's environment: ours without secrets, plus the run's switches and its own home (the workspace's,
    or `home`: a tree node's, beside its folder)."""
    env = runner.scrub_env(os.environ)
    home = home or ctx.ws.root / sandbox.HOME_DIR
    home.mkdir(parents=True, exist_ok=True)
    env.update({
        names.CACHE_DIR: str(data_dir(ctx)), names.WORKSPACE: str(ctx.ws.root),
        "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "MPLCONFIGDIR": str(home / ".mpl"), **_OFFLINE,
    })
    for key in (names.SMOKE, names.EVAL_SEED, names.SEED):
        env.pop(key, None)
    if smoke:
        env[names.SMOKE] = "1"
    return env


def sandbox_read_only(ctx: Context, *, writing: str | None) -> list[Path]:
    """Read-only under bwrap for a run in the workspace (an experiment, plot.py, LaTeX): the workspace's
    record (`.orchestrate/`, `.git/`) and yardstick (its protected files), every run folder already there
    (but `writing`, the one this run writes) and the data cache."""
    ws = ctx.ws
    record = [ws.state, *([ws.root / ".git"] if (ws.root / ".git").exists() else [])]
    protected = [ws.root / rel for rel in ws.protected_hashes() if (ws.root / rel).exists()]
    return [*record, *protected, *sandbox.earlier_runs(ws.root, except_=writing), data_dir(ctx)]


def workspace_spec(ctx: Context, argv: list[str], *, log_dir: Path, timeout_s: float, key: str,
                   writing: str | None, env: dict[str, str] | None = None, out_dir: str | None = None) -> RunSpec:
    """A run whose cwd is the workspace: its record and yardstick read-only, the orchestrator's state
    hidden (but the run's own home), written bytes watched over the whole workspace."""
    ws = ctx.ws
    return RunSpec(argv=argv, cwd=ws.root, log_dir=log_dir, timeout_s=timeout_s, env=env, limits=ctx.limits,
                   isolation=ctx.isolation, read_only=sandbox_read_only(ctx, writing=writing), hidden=[ws.state],
                   rebind=[ws.root / sandbox.HOME_DIR], watch_dir=ws.root, key=key, out_dir=out_dir)


NODES = "nodes"  # under .orchestrate/: each tree node's own folder while its full run is in flight
_RUN_FOLDER = re.compile(r"run_\d+")


def node_folder(ctx: Context, run: int) -> Path:
    """Where a tree node's full run works while the tree moves on: `.orchestrate/nodes/run_<n>/<workspace>`
    (named after the workspace, as executors name jobs after their cwd), its home beside it."""
    return ctx.ws.state / NODES / f"run_{run}" / ctx.ws.root.name


def make_node_folder(ctx: Context, run: int, commit: str) -> Path:
    """A fresh folder holding the files of `commit` (the node's code: no run folder) and the protected files
    from the pristine copy, read-only (bwrap binds them read-only as well)."""
    ws = ctx.ws
    cwd = node_folder(ctx, run)
    remove_node_folder(ctx, run)
    cwd.parent.mkdir(parents=True)
    ws.export(commit, cwd, skip=_run_output)
    protected = list(ws.protected_hashes())
    ws.restore_protected(protected, cwd)
    for rel in protected:
        (cwd / rel).chmod(0o444)
    node_home(cwd).mkdir()
    return cwd


def node_home(cwd: Path) -> Path:
    """A tree node's run's home: beside its folder, inside the node's own `.orchestrate/nodes/run_<n>/`."""
    return cwd.parent / "home"


def _run_output(rel: str) -> bool:
    """A path under a run folder (`run_3/...`, `.smoke/...`): what a node's own folder never starts with."""
    top = rel.split("/", 1)[0]
    return top == SMOKE_DIR or bool(_RUN_FOLDER.fullmatch(top))


def remove_node_folder(ctx: Context, run: int) -> None:
    base = node_folder(ctx, run).parent
    if base.exists() or base.is_symlink():
        if base.is_dir() and not base.is_symlink():
            _set_writable(base, True)
        _remove(base)


def node_spec(ctx: Context, argv: list[str], *, cwd: Path, log_dir: Path, timeout_s: float, key: str,
              env: dict[str, str], out_dir: str) -> RunSpec:
    """A run in a tree node's own folder: that folder and its home are all it may write; its protected files
    and the data cache are read-only, and nothing of the workspace (its record, its yardstick, earlier runs,
    the orchestrator's state) is bound under bwrap."""
    protected = [cwd / rel for rel in ctx.ws.protected_hashes() if (cwd / rel).exists()]
    return RunSpec(argv=argv, cwd=cwd, log_dir=log_dir, timeout_s=timeout_s, env=env, limits=ctx.limits,
                   isolation=ctx.isolation, writable=[node_home(cwd)], read_only=[*protected, data_dir(ctx)],
                   watch_dir=cwd.parent, key=key, out_dir=out_dir)


def _sealed_cwd(ctx: Context, name: str) -> tuple[Path, Path]:
    """(base, cwd): a fresh folder `cwd` holding copies of the protected files only (from the pristine
    copy, never the workspace's): nothing the experiment wrote can be imported from there. It is named
    after the workspace, as executors name jobs after their cwd (`orch:<workspace>:run_1:evaluate`)."""
    base = ctx.ws.state / "sealed" / name
    if base.exists():
        shutil.rmtree(base)
    cwd = base / ctx.ws.root.name
    shutil.copytree(ctx.ws.state / "pristine", cwd)
    return base, cwd


def _protected_argv(ctx: Context, command: str, **fmt: str) -> list[str]:
    argv = runner.command_argv(command, ctx.python, **fmt)
    if shlex.split(command)[:1] in (["python"], ["python3"]):
        argv.insert(1, "-s")  # no user site-packages
    return argv


def _sealed_env(ctx: Context, cwd: Path) -> dict[str, str]:
    env = runner.scrub_env(os.environ)
    for key in (names.SMOKE, names.EVAL_SEED, names.SEED, "PYTHONPATH"):
        env.pop(key, None)
    env.update(HOME=str(cwd), XDG_CACHE_HOME=str(cwd / ".cache"), MPLCONFIGDIR=str(cwd / ".mpl"), **_OFFLINE)
    env[names.WORKSPACE] = str(ctx.ws.root)  # only a marker: a resume ends a killed orchestrator's leftovers by it
    return env


def _exception_line(record: runner.RunRecord, workdir: Path) -> str:
    tb, err_tail, _ = failure_summary(Path(record.stdout_path), Path(record.stderr_path), workdir=str(workdir))
    if record.timed_out:
        return "it ran past its time limit"
    if record.killed:
        return f"stopped: {record.limit_detail or record.killed}"
    lines = [ln.strip() for ln in (tb or err_tail or "").splitlines() if ln.strip()]
    return (lines[-1][:300] if lines else f"exited with code {record.exit_code}")


def prepare(ctx: Context) -> Prepared | None:
    """The template's [prepare] step, once per cache key (memoised in the journal and, across workspaces,
    by the cache's own marker): the only process that may write the data cache."""
    m, j = ctx.manifest, ctx.journal
    if m.prepare is None:
        return None
    done = j.last(Prepared, status="ok")
    cache = data_dir(ctx)
    if done is not None and done.cache_dir == str(cache) and _cache_intact(cache):
        return done
    key = cache.name
    ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    with open(ctx.cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another workspace may be building the same cache
        if _cache_intact(cache):
            return j.append(Prepared(command=m.prepare.command, cache_dir=str(cache), key=key, status="ok", reused=True))
        if cache.exists():
            _set_writable(cache, True)
            shutil.rmtree(cache)
        cache.mkdir(parents=True)
        base, cwd = _sealed_cwd(ctx, "prepare")
        argv = _protected_argv(ctx, m.prepare.command, cache_dir=str(cache))
        env = {**_sealed_env(ctx, cwd), names.CACHE_DIR: str(cache)}
        record = executors.run(ctx.executor, RunSpec(
            argv=argv, cwd=cwd, log_dir=base / "log", timeout_s=m.prepare.timeout_s, env=env, limits=ctx.limits,
            isolation=ctx.isolation, writable=[cache], key="prepare"))
        log_dir = str((base / "log").relative_to(ctx.ws.root))
        if not record.ok:
            why = _exception_line(record, cwd)
            j.append(Prepared(command=m.prepare.command, cache_dir=str(cache), key=key, status="failed",
                              reasons=[why], wall_s=record.wall_s, log_dir=log_dir))
            raise PrepareFailed(f"the template's prepare step `{m.prepare.command}` failed: {why} (log: {log_dir})")
        (cache / CACHE_MARKER).write_text(json.dumps(tree_hashes(cache), indent=1))
        _set_writable(cache, False)  # for isolation none (an ordinary user's runs); bwrap binds it read-only
        return j.append(Prepared(command=m.prepare.command, cache_dir=str(cache), key=key, status="ok",
                                 wall_s=record.wall_s, log_dir=log_dir))


CACHE_MARKER = ".prepared.json"


def _set_writable(top: Path, on: bool) -> None:
    for d, _dirs, files in os.walk(top):
        for p in [Path(d), *(Path(d) / n for n in files)]:
            if not p.is_symlink():
                mode = stat.S_IMODE(p.lstat().st_mode)
                p.chmod(mode | 0o200 if on else mode & ~0o222)


def _cache_intact(cache: Path) -> bool:
    """The cache holds exactly what its prepare step wrote (hashes in its marker)."""
    try:
        recorded = json.loads((cache / CACHE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    now = tree_hashes(cache)
    now.pop(CACHE_MARKER, None)
    return now == recorded


def evaluate(ctx: Context, out_rel: str, *, key: str, smoke: bool) -> tuple[dict[str, Any] | None, str | None, float]:
    """The template's evaluator on one run's folder, in its own sandbox through the run's executor:
    (evaluated metrics, None, wall seconds) or (None, why it failed, wall seconds)."""
    ev = ctx.manifest.evaluate
    assert ev is not None
    base, cwd = _sealed_cwd(ctx, key.replace("/", "_"))
    out_dir = base / "out"
    out_dir.mkdir()
    out = out_dir / EVAL_OUT
    run_dir = ctx.ws.path(out_rel)
    cache = data_dir(ctx)
    argv = _protected_argv(ctx, ev.command, run_dir=str(run_dir), out=str(out), cache_dir=str(cache))
    env = {**_sealed_env(ctx, cwd), names.CACHE_DIR: str(cache), names.EVAL_SEED: ctx.ws.eval_seed()}
    if smoke:
        env[names.SMOKE] = "1"
    record = executors.run(ctx.executor, RunSpec(
        argv=argv, cwd=cwd, log_dir=base / "log", timeout_s=ev.timeout_s, env=env, limits=ctx.limits,
        isolation=ctx.isolation, writable=[out_dir], key=f"{key}/evaluate",
        read_only=[run_dir, cache] if cache.exists() else [run_dir]))
    if not record.ok:
        return None, f"the evaluator failed: {_exception_line(record, cwd)}", record.wall_s
    data, err = load_results(out)
    if data is None:
        return None, f"the evaluator failed: it wrote no JSON object to its output ({err})", record.wall_s
    return data, None, record.wall_s


def baseline(ctx: Context) -> BaselineRecorded:
    """The baseline's metrics, once per workspace (after prepare): evaluated when the template has an
    evaluator and run_0 has what it needs, else run_0's own results. Every comparison reads this.

    A template with seeds ships run_0/seed_<s>/ per seed: each is evaluated and journaled
    (`BaselineRecorded.seed`); what is returned is then their mean (not journaled again)."""
    j = ctx.journal
    seeds = [s for s in seed_plan(ctx).values if (ctx.ws.root / BASELINE_RUN / f"seed_{s}").is_dir()]
    if not seeds:
        done = j.last(BaselineRecorded, seed=None)
        return done if done is not None else j.append(_baseline_seed(ctx, BASELINE_RUN, None))
    per_seed = []
    for s in seeds:
        done = j.last(BaselineRecorded, seed=s)
        per_seed.append(done if done is not None else j.append(_baseline_seed(ctx, f"{BASELINE_RUN}/seed_{s}", s)))
    evaluation = "evaluated" if all(b.evaluation == "evaluated" for b in per_seed) else "self-reported"
    return BaselineRecorded(metrics=seeds_mod.mean_metrics([b.metrics for b in per_seed]), evaluation=evaluation,
                            reasons=[r for b in per_seed for r in b.reasons], outputs=per_seed[-1].outputs)


def _baseline_seed(ctx: Context, rel: str, seed: int | None) -> BaselineRecorded:
    m = ctx.manifest
    info, err = load_results(ctx.ws.path(f"{rel}/{m.results_file}"))
    info = info or {}
    reasons = [err] if err else []
    evaluation = "self-reported"
    if m.evaluate is not None:
        prepare(ctx)
        evaluated, why, _wall = evaluate(ctx, rel, key=rel.replace("/", "_"), smoke=False)
        if evaluated is not None:
            info, evaluation = overlay(info, evaluated), "evaluated"
        else:
            reasons.append(f"the baseline{f' seed {seed}' if seed is not None else ''} is self-reported: {why}")
    return BaselineRecorded(metrics=flatten(info), evaluation=evaluation, reasons=reasons,
                            outputs=keep_record(ctx, BASELINE_RUN), seed=seed)


RECORDED = "recorded"  # under .orchestrate/: a copy of every recorded run's folder, to undo a later run's changes


def keep_record(ctx: Context, rel: str) -> dict[str, str]:
    """Copy a recorded run's folder (run_0, an ok run_i) under .orchestrate/; returns its files' hashes."""
    src = ctx.ws.root / rel
    dst = ctx.ws.state / RECORDED / rel
    if dst.exists():
        shutil.rmtree(dst)
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True)
    return tree_hashes(src)


def restore_record(ctx: Context, rel: str) -> bool:
    """Put a recorded run's folder back from its copy (False: there is none)."""
    src = ctx.ws.state / RECORDED / rel
    if not src.is_dir():
        return False
    dst = ctx.ws.root / rel
    if dst.is_dir() and not dst.is_symlink():
        _set_writable(dst, True)
    if dst.exists() or dst.is_symlink():
        _remove(dst)
    shutil.copytree(src, dst, symlinks=True)
    return True


def out_dir_for(run: int, attempt: int, phase: str) -> str:
    return f"run_{run}" if phase == "full" else f"{SMOKE_DIR}/run_{run}_attempt_{attempt}"


def compared_run(ctx: Context, run: int) -> int | None:
    """The run whose results `run`'s must differ from ("the previous run's"): for a tree node, its nearest
    ancestor that is a result (its parent, when that is one; a draft has none); else the last result before it."""
    j = ctx.journal
    results = {a.run for a in j.of(RunAggregated, status="ok")}
    results |= {f.run for f in j.of(RunFinished, phase="full", status="ok") if f.seed is None}  # from before seeds
    made = {n.run: n for n in j.of(NodeCreated) if n.kind != "ablation"}
    if run in made:
        node, seen = made[run].parent, {run}
        while node in made and node not in seen:
            if node in results:
                return node
            seen.add(node)
            node = made[node].parent
        return None
    earlier = [r for r in results if r < run]
    return max(earlier) if earlier else None


def previous_ok(ctx: Context, run: int) -> dict[str, Any] | None:
    """The validated metrics (from the journal: over its seeds) of the run `run` is compared with (compared_run)."""
    prev = compared_run(ctx, run)
    if prev is None:
        return None
    agg = ctx.journal.last(RunAggregated, run=prev, status="ok")
    if agg is not None:
        return agg.metrics
    fin = next((f for f in reversed(ctx.journal.of(RunFinished, run=prev, phase="full", status="ok")) if f.seed is None), None)
    return fin.metrics if fin is not None else None


def recorded_outputs(journal) -> dict[str, dict[str, str]]:
    """Each recorded run folder (`run_0`, every ok full run) -> the hashes of its files when recorded."""
    out: dict[str, dict[str, str]] = {}
    base = journal.last(BaselineRecorded)
    if base is not None:
        out[BASELINE_RUN] = base.outputs
    for fin in journal.of(RunFinished, phase="full", status="ok"):
        if fin.outputs:  # a journal from before seeds: the run's own verdict recorded its folder
            out[fin.out_dir] = fin.outputs
    for agg in journal.of(RunAggregated, status="ok"):
        out[agg.out_dir] = agg.outputs
    return out


def seed_plan(ctx: Context) -> SeedPlan:
    """The workspace's seeds (the template's [seeds] with the idea's and the command line's over it)."""
    return seeds_mod.plan(ctx.manifest, ctx.limits)


@dataclass
class _Pending:
    """One seed's execution, submitted and not yet judged."""

    run: int
    attempt: int
    phase: str
    seed: int | None
    rel: str
    log_dir: Path
    spec: RunSpec
    root: Path | None = None  # the folder `rel` is in (None: the workspace; else a tree node's own folder)
    commit: str | None = None  # the code it runs, when not the workspace's HEAD (a tree node's)
    handle: Any = None
    record: runner.RunRecord | None = None
    fresh: bool = False  # its folder was made empty before any seed started (siblings bind it read-only)


def _prepare_seed(ctx: Context, run: int, attempt: int, phase: str, seed: int | None, rel: str, *,
                  writing: str | None, siblings: list[str], folder: Path | None = None) -> _Pending:
    ws, m = ctx.ws, ctx.manifest
    smoke = phase == "smoke"
    log_dir = ws.attempt_dir(run, attempt) / (phase if seed is None or len(siblings) == 0 else f"{phase}_seed_{seed}")
    env = experiment_env(ctx, smoke=smoke, home=node_home(folder) if folder is not None else None)
    plan = seed_plan(ctx)
    if plan.env and seed is not None:
        env[plan.env] = str(seed)
    argv = runner.command_argv(m.command, ctx.python, out_dir=rel, seed=str(seed if seed is not None else 0))
    if smoke and m.smoke.args:  # [smoke] mode = "args": the script's own short setting
        argv += shlex.split(m.smoke.args)
    key = f"run_{run}/attempt_{attempt}/{phase}" + (f"/seed_{seed}" if siblings else "")
    timeout = ctx.limits.smoke_timeout_s if smoke else ctx.limits.full_timeout_s
    if folder is None:
        spec = workspace_spec(ctx, argv, log_dir=log_dir, timeout_s=timeout, key=key, writing=writing, env=env, out_dir=rel)
    else:
        spec = node_spec(ctx, argv, cwd=folder, log_dir=log_dir, timeout_s=timeout, key=key, env=env, out_dir=rel)
    # a seed reads its siblings' folders, never writes them (under bwrap; they exist before the binds)
    spec.read_only += [(folder or ws.root) / other for other in siblings]
    return _Pending(run, attempt, phase, seed, rel, log_dir, spec, root=folder)


def _submit(ctx: Context, p: _Pending) -> None:
    """Re-attach to the seed's job when a resumed orchestrator finds one, else start it afresh."""
    ws, j = ctx.ws, ctx.journal
    started = j.last(RunStarted, run=p.run, attempt=p.attempt, phase=p.phase, seed=p.seed)
    p.handle = ctx.executor.attach(p.spec, started.job_id) if started is not None and started.job_id else None
    if p.handle is not None:
        return  # resumed: its job may still run; never submit twice
    out = (p.root or ws.root) / p.rel
    if (out.exists() or out.is_symlink()) and not p.fresh:
        _remove(out)
    if p.log_dir.exists():
        shutil.rmtree(p.log_dir)
    p.handle = ctx.executor.submit(p.spec)
    j.append(RunStarted(run=p.run, attempt=p.attempt, phase=p.phase, out_dir=p.rel, commit=p.commit or ws.head(),
                        job_id=p.handle.job_id, seed=p.seed))


def _run_all(ctx: Context, pending: list[_Pending], *, run_dir: str | None) -> None:
    """Submit every seed, then wait for each: the seeds run at once where the executor has slots."""
    ws = ctx.ws
    if not pending:
        return
    inside = ws.root / run_dir if run_dir else None
    keep = [p for p in pending[0].spec.read_only if p.is_relative_to(ws.root) and not p.is_relative_to(ws.state)
            and not p.is_relative_to(ws.root / ".git") and not (inside is not None and p.is_relative_to(inside))]
    # the orchestrator writes its state during the run; under bwrap the binds make them read-only
    with read_only_files(keep if ctx.isolation != "bwrap" else []):
        _submit_all(ctx, pending)
        _wait_all(ctx, pending)


def _submit_all(ctx: Context, pending: list[_Pending]) -> None:
    try:
        for p in pending:
            _submit(ctx, p)
    except BaseException:
        _stop_all(pending)
        raise


def _wait_all(ctx: Context, pending: list[_Pending]) -> None:
    try:
        for p in pending:
            p.record = ctx.executor.wait(p.handle)
    except BaseException:  # Ctrl-C, SIGTERM: every seed's local run ends with us (a Slurm job is re-attached)
        _stop_all(pending)
        raise


def _stop_all(pending: list[_Pending]) -> None:
    for p in pending:
        if p.handle is not None:
            p.handle.stop.set()
    for p in pending:
        if p.handle is not None and p.handle.future is not None:
            with contextlib.suppress(BaseException):
                p.handle.future.result(timeout=30)


def _judged(ctx: Context, p: _Pending, git_before, folder: Path | None = None) -> RunFinished:
    ws, j = ctx.ws, ctx.journal
    record = p.record
    assert record is not None
    out = ws.root / p.rel
    verdict, status, evaluation = judge(ctx, record, out, run=p.run, smoke=p.phase == "smoke", git_before=git_before,
                                        folder=folder)
    feedback = feedback_for(record.stdout_path, record.stderr_path, workdir=folder or ws.root)
    named_exception(verdict, feedback)
    if status == "ok":
        feedback = Feedback()
    return j.append(RunFinished(
        run=p.run, attempt=p.attempt, phase=p.phase, out_dir=p.rel, status=status, reasons=verdict.reasons,
        exit_code=record.exit_code, wall_s=record.wall_s, peak_rss_mb=record.peak_rss_mb,
        timed_out=record.timed_out, metrics=verdict.metrics, feedback=feedback,
        log_dir=str(p.log_dir.relative_to(ws.root)), containment=record.containment, job=record.job,
        evaluation=evaluation, eval_wall_s=verdict.eval_wall_s, seed=p.seed,
    ))


def execute(ctx: Context, run: int, attempt: int, phase: str) -> RunFinished:
    """The smoke run (the first seed only); returns its recorded verdict (from the journal if already judged).
    A full run goes through execute_full; what is returned is then the run's verdict over its seeds, as
    one RunFinished (not journaled again: the journal has each seed's and the RunAggregated)."""
    if phase == "full":
        agg, fins = execute_full(ctx, run, attempt)
        base = next((f for f in fins if f.status != "ok"), None) if agg.status != "ok" else None
        base = base or (fins[0] if fins else RunFinished(run=run, attempt=attempt, phase="full", out_dir=agg.out_dir,
                                                         status=agg.status))
        return base.model_copy(update={"status": agg.status, "reasons": agg.reasons or base.reasons,
                                       "metrics": agg.metrics or base.metrics, "out_dir": agg.out_dir,
                                       "outputs": agg.outputs, "commit": agg.commit})
    j = ctx.journal
    done = j.last(RunFinished, run=run, attempt=attempt, phase=phase)
    if done is not None:
        return done
    seed = seed_plan(ctx).smoke_seed
    p = _prepare_seed(ctx, run, attempt, phase, seed, out_dir_for(run, attempt, phase), writing=None, siblings=[])
    git_before = ctx.ws.git_snapshot()
    _run_all(ctx, [p], run_dir=None)
    return _judged(ctx, p, git_before)


def _seed_done(ctx: Context, run: int, attempt: int, seed: int, single: bool) -> RunFinished | None:
    j = ctx.journal
    done = j.last(RunFinished, run=run, attempt=attempt, phase="full", seed=seed)
    if done is None and single:  # a journal from before seeds
        done = j.last(RunFinished, run=run, attempt=attempt, phase="full", seed=None)
    return done


@dataclass
class FullRun:
    """A full run's seeds, submitted or about to be, and not yet judged (execute_full lands it at once; a tree
    node's lands while the tree has moved on: land_full)."""

    run: int
    attempt: int
    run_dir: str
    pending: list[_Pending]
    git_before: dict[str, bytes | None] | None
    folder: Path | None = None  # the tree node's own folder (None: the workspace)

    def finished(self) -> bool:
        """Every seed's run has ended (a local run's thread; a Slurm job's result is there)."""
        return all(p.handle is not None and p.handle.done() for p in self.pending)

    def stop(self) -> None:
        _stop_all(self.pending)


def execute_full(ctx: Context, run: int, attempt: int) -> tuple[RunAggregated, list[RunFinished]]:
    """Every seed of a full run (submitted together, then judged one by one), and the run's verdict over
    them: ok when at least min_ok seeds are ok and none tampered. A resumed orchestrator runs only the
    seeds whose verdict is not in the journal. Returns (the aggregate, each seed's verdict)."""
    return land_full(ctx, submit_full(ctx, run, attempt))


def submit_full(ctx: Context, run: int, attempt: int, *, code: str | None = None) -> FullRun:
    """The full run's seeds whose verdict is not in the journal, made ready in the workspace (`code` None:
    land_full submits and waits for them), or, for a tree node whose run goes on while the agent drafts the
    next, submitted now in the node's own folder, made from commit `code` (a Slurm job still running is
    re-attached, in the folder it has)."""
    j, ws = ctx.journal, ctx.ws
    plan = seed_plan(ctx)
    run_dir = out_dir_for(run, attempt, "full")
    single = plan.count == 1
    if j.last(RunAggregated, run=run, attempt=attempt) is not None:
        return FullRun(run, attempt, run_dir, [], None)
    rels = {s: plan.out_dir(run_dir, s) for s in plan.values}
    missing = [s for s in plan.values if _seed_done(ctx, run, attempt, s, single) is None]
    folder = node_folder(ctx, run) if code is not None else None
    if missing and folder is not None:
        started = [j.last(RunStarted, run=run, attempt=attempt, phase="full", seed=s) for s in missing]
        live = [st for st in started if st is not None and st.job_id]
        if not live or not folder.is_dir():  # nothing to re-attach to: the node's code afresh
            make_node_folder(ctx, run, code)
    root = folder or ws.root
    if missing and not single:
        if (root / run_dir).is_symlink() or ((root / run_dir).exists() and not (root / run_dir).is_dir()):
            _remove(root / run_dir)
        for s in plan.values:
            if s in missing:
                d = root / rels[s]
                if d.exists() or d.is_symlink():
                    _remove(d)
            (root / rels[s]).mkdir(parents=True, exist_ok=True)
    pending = [_prepare_seed(ctx, run, attempt, "full", s, rels[s], writing=run_dir,
                             siblings=[rels[t] for t in plan.values if t != s] if not single else [], folder=folder)
               for s in missing]
    for p in pending:
        p.fresh = not single
        p.commit = code
    full = FullRun(run, attempt, run_dir, pending, ws.git_snapshot(refs=folder is None) if pending else None, folder)
    if folder is not None:
        _submit_all(ctx, pending)
    return full


def land_full(ctx: Context, full: FullRun) -> tuple[RunAggregated, list[RunFinished]]:
    """Wait for a full run's seeds, bring a tree node's run folder back into the workspace, judge every seed
    and the run over them (a journal that has the verdict returns it)."""
    j = ctx.journal
    plan = seed_plan(ctx)
    run, attempt, run_dir = full.run, full.attempt, full.run_dir
    single = plan.count == 1
    done = j.last(RunAggregated, run=run, attempt=attempt)
    if done is not None:
        return done, [f for s in plan.values if (f := _seed_done(ctx, run, attempt, s, single)) is not None]
    if full.pending:
        if full.folder is None:
            _run_all(ctx, full.pending, run_dir=run_dir)
        else:
            _wait_all(ctx, full.pending)
            _bring_back(ctx, full)
        for p in full.pending:
            _judged(ctx, p, full.git_before, folder=full.folder)
    fins = [f for s in plan.values if (f := _seed_done(ctx, run, attempt, s, single)) is not None]
    agg = _aggregate(ctx, run, attempt, plan, fins, run_dir, only=full.folder is not None)
    if full.folder is not None:
        remove_node_folder(ctx, run)
    return agg, fins


def _bring_back(ctx: Context, full: FullRun) -> None:
    """A tree node's run folder, from its own folder into the workspace (a link or a file in its place brings
    nothing back: each seed's verdict then says its results are missing)."""
    assert full.folder is not None
    src, dst = full.folder / full.run_dir, ctx.ws.root / full.run_dir
    if dst.exists() or dst.is_symlink():
        _remove(dst)
    if src.is_dir() and not src.is_symlink():
        os.replace(src, dst)  # one file system: the node's folder is under the workspace's .orchestrate/


def _aggregate(ctx: Context, run: int, attempt: int, plan: SeedPlan, fins: list[RunFinished],
               run_dir: str, *, only: bool = False) -> RunAggregated:
    ws, m = ctx.ws, ctx.manifest
    ok = [f for f in fins if f.status == "ok"]
    bad = [f for f in fins if f.status != "ok"]
    tampered = [f for f in bad if f.status == "tampered"]
    seed_of = {id(f): (f.seed if f.seed is not None else plan.values[0]) for f in fins}
    if plan.count == 1:
        reasons = list(bad[0].reasons) if bad else []
    else:
        reasons = [f"seed {seed_of[id(f)]}: {f.reasons[0] if f.reasons else f.status}" for f in bad]
    if tampered:
        status = "tampered"
    elif len(ok) >= plan.min_ok:
        status = "ok"
    elif plan.count == 1:
        status = bad[0].status if bad else "failed"
    else:
        statuses = {f.status for f in bad}
        status = statuses.pop() if len(statuses) == 1 else "failed"
        reasons.insert(0, f"{len(ok)} of {plan.count} seeds are ok; a result needs {plan.min_ok}")
    out = ws.root / run_dir
    metrics: dict[str, Any] = {}
    commit, outputs = None, {}
    evaluation = ok[0].evaluation if ok and all(f.evaluation == ok[0].evaluation for f in ok) else "self-reported"
    if status == "ok":
        metrics = seeds_mod.mean_metrics([f.metrics for f in ok]) if plan.count > 1 else dict(ok[0].metrics)
        if plan.count > 1:
            try:
                base, _err = load_results(ws.path(f"{ok[0].out_dir}/{m.results_file}"))
            except UnsafePath:
                base = None
            seeds_mod.write_aggregate(out, m.results_file, [f.metrics for f in ok], base or seeds_mod.nested(ok[0].metrics))
        else:
            (out / seeds_mod.SEEDS_FILE).write_text(json.dumps(seeds_mod.seeds_table([ok[0].metrics]), indent=1) + "\n")
        outputs = keep_record(ctx, run_dir)
        commit = ws.commit(f"run {run} attempt {attempt}: full run is a result"
                           + (f" ({len(ok)} of {plan.count} seeds)" if plan.count > 1 else ""),
                           paths=[run_dir] if only else None)
    elif out.exists() or out.is_symlink():  # keep what it wrote, out of the next attempt's way
        dest = ws.attempt_dir(run, attempt) / "out"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(out), str(dest))
    return ctx.journal.append(RunAggregated(
        run=run, attempt=attempt, status=status, seeds_ok=[seed_of[id(f)] for f in ok],
        seeds_failed=[seed_of[id(f)] for f in bad], min_ok=plan.min_ok, reasons=reasons, metrics=metrics,
        evaluation=evaluation, out_dir=run_dir, commit=commit, outputs=outputs,
    ))


def named_exception(verdict: Verdict, feedback: Feedback) -> None:
    """Name the exception where the verdict is read (notes, show, report), not only in the feedback."""
    tb = feedback.traceback
    if tb and verdict.reasons and verdict.reasons[0].startswith("exited with code"):
        verdict.reasons[0] += f": {tb.strip().splitlines()[-1].strip()[:200]}"


@contextlib.contextmanager
def read_only_files(paths: list[Path]):
    """Under isolation `none`: the files (and folders) under `paths` without write permission for the
    run's duration, their modes put back afterwards. It stops a run of an ordinary user, not one of root
    (root ignores modes): what a run changed anyway is caught afterwards (`tampering`)."""
    modes: dict[Path, int] = {}
    try:
        for top in paths:
            if not top.exists() or top.is_symlink():
                continue
            items = [top] + ([Path(d) / n for d, ds, fs in os.walk(top) for n in ds + fs] if top.is_dir() else [])
            for p in items:
                try:
                    st = p.lstat()
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    continue
                modes[p] = stat.S_IMODE(st.st_mode)
                os.chmod(p, modes[p] & ~0o222)
        yield
    finally:
        for p, mode in reversed(modes.items()):
            try:
                os.chmod(p, mode)
            except OSError:
                pass


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def tampering(ctx: Context, git_before: dict[str, bytes | None] | None, folder: Path | None = None) -> list[str]:
    """What a run changed that no run may change, each put back where it can be: protected files (the
    workspace's, and those in a tree node's own folder), the workspace's git configuration and hooks,
    recorded runs' files, the data cache."""
    ws = ctx.ws
    found = []
    changed = ws.changed_protected()
    if changed:
        ws.restore_protected(changed)
        found.append(f"protected file {', '.join(changed)} was changed during the run; it has been restored")
    if folder is not None and (inside := ws.changed_protected(folder)):
        found.append(f"protected file {', '.join(inside)} was changed in the node's own folder during the run")
    if git_before is not None:
        git = ws.restore_git(git_before, refs=folder is None)
        if git:
            found.append(f".git/{', .git/'.join(git[:3])} {'was' if len(git) == 1 else 'were'} changed during the run "
                         f"(git configuration, hooks or history are the orchestrator's); restored")
    for rel, recorded in recorded_outputs(ctx.journal).items():
        try:
            folder = ws.path(rel)
        except UnsafePath:
            folder = None
        bad = changed_files(folder, recorded) if folder is not None else ["(replaced by a link)"]
        if bad:
            restored = restore_record(ctx, rel)
            found.append(f"{rel}/{bad[0]} of a recorded run was changed during this run"
                         f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}; "
                         f"{'it has been restored' if restored else 'it could not be restored'}")
    # checked at every isolation level: under bwrap the cache is read-only, but a Slurm node without bubblewrap
    # runs the job at isolation none while this process still believes it is bwrap
    if ctx.manifest.prepare is not None:
        cache = data_dir(ctx)
        if cache.exists() and not _cache_intact(cache):
            _set_writable(cache, True)
            shutil.rmtree(cache)  # rebuilt by the next prepare
            found.append("the data cache was changed during the run; it has been discarded and is rebuilt")
            prepare(ctx)
    return found


def process_verdict(record: runner.RunRecord, *, timeout_s: float) -> Verdict | None:
    """The verdict on the process alone, the same for experiments, plot scripts and LaTeX: interrupted,
    its time limit, another limit it was stopped at, its exit code; None when it exited 0 by itself.
    The Verdict's status is the run's (RunFinished.status): interrupted, timeout or failed."""
    if record.killed == "interrupted":
        return Verdict(status="interrupted", reasons=["interrupted"])
    if record.timed_out:
        return Verdict(status="timeout", reasons=[f"killed after its time limit of {timeout_s:g} s"])
    if record.killed:  # the executor words every limit it enforced (runner._limit_detail, Slurm's states)
        detail = record.limit_detail or record.killed
        return Verdict(status="failed", reasons=[f"stopped: {detail}"], kinds=[f"limit-{record.killed}"])
    if record.exit_code != 0:
        return Verdict(status="failed", reasons=[f"exited with code {record.exit_code}"])
    return None


def judge(ctx: Context, record: runner.RunRecord, out: Path, *, run: int, smoke: bool,
          git_before: dict[str, bytes | None] | None = None, folder: Path | None = None) -> tuple[Verdict, str, str]:
    """Tampering first (a changed yardstick voids everything), then the process, then the evaluator and
    the results. Returns (verdict, status, evaluation)."""
    ws, m = ctx.ws, ctx.manifest
    tampered = tampering(ctx, git_before, folder)
    if tampered:
        return Verdict(status="tampered", reasons=[f"{r} and the run rejected" for r in tampered]), "tampered", "self-reported"
    if smoke and m.smoke.mode == "time" and record.timed_out:
        return Verdict(status="ok", reasons=[
            f"smoke: ran its set {ctx.limits.smoke_timeout_s:g} s without crashing and was stopped ([smoke] mode = "
            "\"time\": the script ignores ORCHESTRATE_SMOKE); its results are checked in the full run"],
            kinds=["smoke-stopped"]), "ok", "self-reported"
    ended = process_verdict(record, timeout_s=ctx.limits.smoke_timeout_s if smoke else ctx.limits.full_timeout_s)
    if ended is not None:
        return ended, ended.status, "self-reported"
    try:
        info, err = load_results(ws.path(out.relative_to(ws.root) / m.results_file))
    except UnsafePath as exc:
        info, err = None, f"{exc.problem}: the results file must be a plain file the run wrote"
    evaluation, lies, eval_wall = "self-reported", [], 0.0
    if info is not None and m.evaluate is not None:
        key = str(out.relative_to(ws.root)).replace("/", "_").lstrip(".")
        evaluated, why, eval_wall = evaluate(ctx, str(out.relative_to(ws.root)), key=key, smoke=smoke)
        if evaluated is None:
            return Verdict(status="failed", reasons=[why], metrics=flatten(info), kinds=["evaluator-failed"],
                           eval_wall_s=eval_wall), "failed", evaluation
        lies = misreports(info, evaluated, m.evaluate)
        info, evaluation = overlay(info, evaluated), "evaluated"
        # every reader of the run's folder (plots, tables, the paper) sees the evaluated metrics
        ws.path(out.relative_to(ws.root) / m.results_file).write_text(json.dumps(info, indent=2) + "\n")
    base = baseline(ctx)
    # an ablation (the best node less one change, made by the orchestrator) that equals the baseline or the run
    # before is a finding, not a run that did nothing: it is judged on everything else
    ablation = any(n.kind == "ablation" for n in ctx.journal.of(NodeCreated, run=run))
    verdict = validate(info, m, baseline=None if ablation else base.metrics,
                       previous=None if ablation else previous_ok(ctx, run), smoke=smoke, load_error=err)
    verdict.eval_wall_s = eval_wall
    if lies:
        verdict.reasons[:0] = lies
        verdict.kinds[:0] = ["misreported"] * len(lies)
        verdict.status = "misreported"
    prev = None if smoke or info is None or ablation else _previous_result(ctx, run)
    files = code_files(m)
    if prev is not None and files and not ws.diff(prev.commit, _code_commit(ctx, run), *files).strip():
        verdict.reasons.append(code_unchanged(files, prev.run))
        verdict.kinds.append("code-unchanged")
        if verdict.status == "ok":
            verdict.status = "degenerate"
    return verdict, verdict.status, evaluation


def _previous_result(ctx: Context, run: int) -> RunStarted | None:
    """The start (with its code commit) of the full run that was a result of the run `run` is compared with."""
    j = ctx.journal
    prev = compared_run(ctx, run)
    if prev is None:
        return None
    results = [a.attempt for a in j.of(RunAggregated, run=prev, status="ok")]
    results += [f.attempt for f in j.of(RunFinished, run=prev, phase="full", status="ok") if f.seed is None]
    started = j.last(RunStarted, run=prev, attempt=max(results), phase="full") if results else None
    return started if started is not None and started.commit else None


def _code_commit(ctx: Context, run: int) -> str:
    """The code `run`'s full run ran: its start's commit (a tree node's, while HEAD may have moved on)."""
    started = ctx.journal.last(RunStarted, run=run, phase="full")
    return started.commit if started is not None and started.commit else ctx.ws.head()
