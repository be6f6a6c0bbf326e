"""Many ideas at once: each in its own workspace, `--parallel N` at a time, GPUs handed out so that no two
experiments share one, on this machine or as Slurm jobs.

Every workspace is made up front (bad input stops everything before anything runs), then each idea is
driven by its own orchestrator process — aider works in-process and changes directory, so ideas cannot
share one — started through the runner and watched here through its journal. Ctrl-C reaches every
idea's process, each records the interruption, and each workspace is resumable on its own
(`orchestrate resume WS`), exactly like a single run.

GPUs are leased per experiment, not per idea: an idea spends much of its time waiting for the model,
so an experiment takes a free GPU slot (a lock file under the orchestrator's home, shared by every
orchestrator of this user) only while it runs, and sees it as `CUDA_VISIBLE_DEVICES`.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from . import runner
from .errors import InputError
from .events import EVENT_ADAPTER, Message, RunFinished, RunRecorded, RunStarted, StageFinished, StageStarted
from .executors import Executor, LocalExecutor

WAIT_AFTER_INTERRUPT_S = 30.0  # for each idea's process to record its interruption after Ctrl-C


# -- executors -------------------------------------------------------------------------------------------
class GpuSlotExecutor:
    """A local subprocess on a leased GPU: waits for a free slot, runs with CUDA_VISIBLE_DEVICES set to it.

    `gpus` lists one entry per slot: "0,1" is two slots; "0,0" deliberately puts two experiments on GPU 0."""

    name = "local"

    def __init__(self, gpus: list[str], lock_dir: Path, poll_s: float = 0.2) -> None:
        self.gpus = list(gpus)
        self.lock_dir = Path(lock_dir)
        self.poll_s = poll_s

    def spec(self) -> dict[str, Any]:
        return {"name": "local", "gpus": self.gpus, "lock_dir": str(self.lock_dir)}

    def _slots(self) -> list[tuple[str, Path]]:
        seen: dict[str, int] = {}
        out = []
        for gpu in self.gpus:
            k = seen.get(gpu, 0)
            seen[gpu] = k + 1
            out.append((gpu, self.lock_dir / f"gpu{gpu}.{k}.lock"))
        return out

    def lease(self, stop: threading.Event | None = None):
        """(gpu, open lock file) of a free slot, waiting for one; None when stopped while waiting."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            for gpu, path in self._slots():
                fh = open(path, "a+")  # held open for the lease: closing it releases the slot
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.close()
                    continue
                fh.seek(0)
                fh.truncate()
                fh.write(f"{os.getpid()}\n")
                fh.flush()
                return gpu, fh
            if stop is not None and stop.is_set():
                return None
            time.sleep(self.poll_s)

    def run(self, argv, *, cwd, log_dir, timeout_s, env, limits, isolation, writable, watch_dir, stop, key):
        leased = self.lease(stop)
        if leased is None:  # stopped while waiting for a GPU: the runner records it as interrupted
            return LocalExecutor(gpus="").run(argv, cwd=cwd, log_dir=log_dir, timeout_s=timeout_s, env=env, limits=limits,
                                              isolation=isolation, writable=writable, watch_dir=watch_dir, stop=stop, key=key)
        gpu, fh = leased
        try:
            return LocalExecutor(gpus=gpu).run(argv, cwd=cwd, log_dir=log_dir, timeout_s=timeout_s, env=env, limits=limits,
                                               isolation=isolation, writable=writable, watch_dir=watch_dir, stop=stop, key=key)
        finally:
            fh.close()  # closing releases the lock; a killed process releases it too


def build_executor(spec: Mapping[str, Any] | None) -> Executor:
    """The executor a journal's `WorkspaceCreated.executor` names; {} or None: a local subprocess."""
    spec = dict(spec or {})
    name = spec.get("name", "local")
    if name == "slurm":
        from .executors.slurm import SlurmConfig, SlurmExecutor

        return SlurmExecutor(SlurmConfig.model_validate(spec.get("config", {})))
    if name == "local" and spec.get("gpus"):
        from .agents.hermetic import cache_home

        return GpuSlotExecutor([str(g) for g in spec["gpus"]], Path(spec.get("lock_dir") or cache_home() / "gpu-slots"))
    if name == "local":
        return LocalExecutor()
    raise InputError(None, f"unknown executor {name!r} in the workspace's journal")


def pending_job_dirs(journal) -> list[str]:
    """Out folders of runs submitted as jobs that have no verdict yet: a resume waits for those jobs."""
    return [e.out_dir for e in journal.of(RunStarted)
            if e.job_id and journal.last(RunFinished, run=e.run, attempt=e.attempt, phase=e.phase) is None]


# -- GPUs ------------------------------------------------------------------------------------------------
def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """GPU indices this machine shows: `nvidia-smi -L`, else CUDA_VISIBLE_DEVICES, else none."""
    env = os.environ if env is None else env
    res = runner.tool(["nvidia-smi", "-L"], timeout_s=20)
    if res.exit_code == 0:
        found = [line.split(":", 1)[0].split()[1] for line in res.stdout.splitlines() if line.startswith("GPU ")]
        cvd = env.get("CUDA_VISIBLE_DEVICES")
        if found and cvd is not None:  # a restricted view: keep what the user was given
            return [g for g in _split(cvd) if g not in ("-1", "NoDevFiles")]
        if found:
            return found
    return [g for g in _split(env.get("CUDA_VISIBLE_DEVICES", "")) if g not in ("-1", "NoDevFiles")]


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def gpu_slots(arg: str | None) -> list[str]:
    """--gpus: "0,1" (a slot each), "0,0" (two experiments on GPU 0, as asked), "none"; default: all visible."""
    if arg is None:
        return visible_gpus()
    if arg.strip().lower() in ("", "none", "cpu"):
        return []
    return _split(arg)


# -- ideas -----------------------------------------------------------------------------------------------
def expand_ideas(paths: list[Path], *, all_: bool, idea_name: str | None) -> list[tuple[Path, str | None]]:
    """(file, idea name) for every idea to run: each file's one idea, its named one, or with --all every entry."""
    out: list[tuple[Path, str | None]] = []
    for path in paths:
        if not all_:
            out.append((path, idea_name))
            continue
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(path, f"cannot read: {exc}") from None
        if isinstance(raw, list):
            for entry in raw:
                name = entry.get("Name", entry.get("name")) if isinstance(entry, dict) else None
                out.append((path, str(name) if name is not None else None))
        else:
            out.append((path, None))
    return out


def executor_spec(args: argparse.Namespace, idea_slurm: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What each idea's runs execute on, as the journal keeps it."""
    if args.executor == "slurm":
        from .executors.slurm import SlurmExecutor, check_cluster, load_config

        ex = SlurmExecutor(load_config(getattr(args, "slurm_config", None), idea_slurm))
        check_cluster(ex.config)
        return ex.spec()
    gpus = gpu_slots(args.gpus)
    if not gpus:
        return {}
    from .agents.hermetic import cache_home

    return GpuSlotExecutor(gpus, cache_home() / "gpu-slots").spec()


# -- watching ideas through their journals ---------------------------------------------------------------
@dataclasses.dataclass
class IdeaState:
    """One row of the live view, kept up to date from the idea's journal."""

    name: str
    ws: Path
    state: str = "queued"  # queued, running, done, failed, interrupted, stopping
    stage: str = "-"
    run: str = "-"
    verdict: str = "-"
    results: int = 0
    runs: int = 0
    job: str = ""
    rc: int | None = None
    started: float | None = None
    ended: float | None = None
    proc: Any = None
    stages: list[str] = dataclasses.field(default_factory=list)
    _offset: int = 0
    _starts: dict = dataclasses.field(default_factory=dict)

    def poll_journal(self) -> list[str]:
        """Read what the idea's process appended since last time; returns lines worth printing."""
        path = self.ws / ".orchestrate" / "journal.jsonl"
        try:
            with open(path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        lines = []
        for raw in data[:end].splitlines():
            if not raw.strip():
                continue
            try:
                e = EVENT_ADAPTER.validate_json(raw)
            except ValueError:
                continue
            line = self._apply(e)
            if line:
                lines.append(f"[{self.name}] {line}")
        return lines

    def _apply(self, e) -> str | None:
        if isinstance(e, StageStarted):
            self.stage = e.stage
        elif isinstance(e, StageFinished):
            self.stage = f"{e.stage} {e.status}"
            return f"stage {e.stage}: {e.status}" + (f" — {e.summary}" if e.summary else "")
        elif isinstance(e, RunStarted):
            self.run = f"{e.run}.{e.attempt} {e.phase}"
            self.job = e.job_id or ""
        elif isinstance(e, RunFinished):
            self.verdict = f"run {e.run} {e.phase}: {e.status}"
        elif isinstance(e, RunRecorded):
            self.runs += 1
            self.results += e.status == "ok"
            return f"run {e.run}: {e.status.upper()} after {e.attempts} attempt(s)"
        elif isinstance(e, Message) and e.level != "info":
            return f"{e.level}: {e.text}"
        return None

    def elapsed(self) -> str:
        if self.started is None:
            return "-"
        return f"{(self.ended or time.monotonic()) - self.started:.0f}s"


class FleetView:
    """Every idea in one table: a rich live view on a terminal, plain lines elsewhere."""

    def __init__(self, ideas: list[IdeaState], *, slots: str, stream=None, live: bool | None = None) -> None:
        from rich.console import Console

        self.ideas = ideas
        self.slots = slots
        self.stream = stream or sys.stderr
        self.live_mode = self.stream.isatty() if live is None else live
        self.console = Console(file=self.stream, highlight=False)
        self.t0 = time.monotonic()
        self._live = None

    def table(self):
        from rich.table import Table

        t = Table(title=f"{len(self.ideas)} idea(s) · {self.slots} · {time.monotonic() - self.t0:.0f}s", title_justify="left")
        for col in ("idea", "workspace", "state", "stage", "run", "last verdict", "results", "time"):
            t.add_column(col)
        for i in self.ideas:
            run = f"{i.run} (job {i.job})" if i.job and i.state == "running" else i.run
            t.add_row(i.name, i.ws.name, i.state, i.stage, run, i.verdict, f"{i.results}/{i.runs}", i.elapsed())
        return t

    def __enter__(self) -> Self:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self.table(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self.table())
            self._live.__exit__(*exc)
            self._live = None

    def line(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def refresh(self) -> None:
        for i in self.ideas:
            for text in i.poll_journal():
                self.line(text)
        if self._live is not None:
            self._live.update(self.table())


# -- running many ideas ----------------------------------------------------------------------------------
def _release(ctx) -> None:
    """Let the idea's own process take the workspace's lock (pipeline.start took it for us)."""
    ctx.ws.unlock()


def worker_argv(ws: Path, stages: list[str]) -> list[str]:
    return [sys.executable, "-m", "orchestrator.fleet", str(ws), "--stages", ",".join(stages)]


def run_many(args: argparse.Namespace, opts) -> int:
    """`orchestrate run` with several ideas, --all, --parallel, --gpus or --executor slurm."""
    from . import pipeline
    from .cli import _drive

    if args.parallel < 1:
        raise InputError(None, "--parallel: must be at least 1")
    if args.executor != "slurm" and getattr(args, "slurm_config", None):
        raise InputError(args.slurm_config, "--slurm-config needs --executor slurm")
    ideas = expand_ideas(list(args.idea), all_=args.all, idea_name=args.idea_name)
    # Validate every idea before anything is made: a typo in the 7th idea stops all of them, not the 7th.
    prepared = []
    for path, name in ideas:
        o = dataclasses.replace(opts, idea_name=name)
        loaded, _template, _limits, _model, _t, stages = pipeline.prepare(path, o)
        prepared.append((path, o, loaded, stages))
    names = [p[2].idea.name for p in prepared]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(None, f"several ideas are named {', '.join(dup)}: each idea needs its own name")

    specs = [executor_spec(args, p[2].idea.slurm) for p in prepared]
    if len(prepared) == 1 and args.parallel == 1:  # one idea on GPUs or Slurm: the usual single-idea view
        path, o, _loaded, _stages = prepared[0]
        ctx, stages = pipeline.start(path, dataclasses.replace(o, executor=specs[0]), log=lambda s: print(s, flush=True))
        return _drive(ctx, stages)

    states: list[IdeaState] = []
    for (path, o, loaded, stages), spec in zip(prepared, specs):
        lines: list[str] = []
        ctx, stages = pipeline.start(path, dataclasses.replace(o, executor=spec), log=lines.append)
        _release(ctx)
        st = IdeaState(name=loaded.idea.name, ws=ctx.ws.root, stages=stages)
        states.append(st)
        for text in lines:
            if text.startswith(("replaying", "agent:")):
                print(f"[{st.name}] {text}", flush=True)
    gpus = specs[0].get("gpus") if specs and specs[0] else None
    where = ("Slurm jobs" if args.executor == "slurm" else f"GPU slots {','.join(gpus)}" if gpus
             else "CPU slots (no GPU)")
    slots = f"{args.parallel} at a time · {where}"
    print(f"{len(states)} workspace(s) under {Path(opts.sandbox).resolve()}; {slots}", flush=True)
    return _drive_fleet(states, args.parallel, slots)


def _start(st: IdeaState) -> None:
    st.proc = runner.spawn(worker_argv(st.ws, st.stages), log_path=st.ws / ".orchestrate" / "fleet.log")
    st.state = "running"
    st.started = time.monotonic()


def _reap(st: IdeaState, view: FleetView) -> None:
    rc = st.proc.poll()
    if rc is None:
        return
    st.rc = rc
    st.ended = time.monotonic()
    st.state = {0: "done", 130: "interrupted"}.get(rc, f"failed ({rc})")
    view.refresh()
    tail = ""
    if rc not in (0, 130):
        log = st.ws / ".orchestrate" / "fleet.log"
        tail = " — " + " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:]) if log.exists() else ""
    view.line(f"[{st.name}] {st.state}: {st.results} result(s) of {st.runs} run(s); workspace {st.ws}{tail}")


def _drive_fleet(states: list[IdeaState], parallel: int, slots: str) -> int:
    queue = list(states)
    view = FleetView(states, slots=slots)
    interrupted = False
    with view:
        try:
            while queue or any(s.state == "running" for s in states):
                while queue and sum(s.state == "running" for s in states) < parallel:
                    _start(queue.pop(0))
                for s in states:
                    if s.state == "running":
                        _reap(s, view)
                view.refresh()
                time.sleep(0.25)
        except KeyboardInterrupt:
            interrupted = True
            _stop_all(states, view)
    if interrupted:
        print("interrupted; each idea continues on its own with:", file=sys.stderr)
        for s in states:
            if s.state != "done":
                print(f"  orchestrate resume {s.ws}", file=sys.stderr)
        return 130
    ok = sum(s.results for s in states)
    runs = sum(s.runs for s in states)
    failed = [s for s in states if s.rc != 0]
    print(f"done: {len(states) - len(failed)} of {len(states)} idea(s) finished; {ok} of {runs} run(s) are results")
    return 0 if not failed else 1


def _stop_all(states: list[IdeaState], view: FleetView) -> None:
    """Ctrl-C: each running idea records its interruption and stops; queued ones stay as they are."""
    running = [s for s in states if s.state == "running"]
    for s in running:
        s.state = "stopping"
        try:
            s.proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass
    view.line(f"stopping {len(running)} running idea(s) ...")
    deadline = time.monotonic() + WAIT_AFTER_INTERRUPT_S
    escalated = False
    while any(s.proc is not None and s.proc.poll() is None for s in running):
        try:
            if time.monotonic() > deadline and not escalated:
                for s in running:
                    if s.proc.poll() is None:
                        s.proc.send_signal(signal.SIGTERM)
                escalated = True
                deadline = time.monotonic() + 10
            elif time.monotonic() > deadline:
                for s in running:
                    if s.proc.poll() is None:
                        s.proc.kill()
            time.sleep(0.1)
        except KeyboardInterrupt:  # a second Ctrl-C: do not wait any longer
            for s in running:
                if s.proc.poll() is None:
                    s.proc.kill()
    for s in running:
        _reap(s, view)
        if s.rc not in (0, None):
            s.state = "interrupted"
    for s in states:
        if s.state == "queued":
            s.state = "not started"
    view.refresh()


# -- one idea's process ----------------------------------------------------------------------------------
def _watch_parent(ppid: int) -> None:
    """Stop cleanly (as on Ctrl-C) when the fleet that started us is gone, instead of running on unseen."""
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os.kill(os.getpid(), signal.SIGINT)
            return


def worker_main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.fleet WS --stages a,b`: drive one workspace made by run_many."""
    from .cli import _drive
    from .errors import OrchestratorError
    from .pipeline import RunOptions, reopen

    p = argparse.ArgumentParser(prog="orchestrator.fleet")
    p.add_argument("workspace", type=Path)
    p.add_argument("--stages", default="")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        ctx, stages = reopen(a.workspace, RunOptions(stages=[s for s in a.stages.split(",") if s] or None),
                             log=lambda s: print(s, flush=True))
        rc = _drive(ctx, stages)
    except OrchestratorError as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        rc = 130
    if rc == 130:  # an experiment interrupted mid-run must not outlive us (isolation none has no die-with-parent)
        runner.kill_marked("ORCHESTRATE_WORKSPACE", str(a.workspace.resolve()))
    return rc


if __name__ == "__main__":
    code = worker_main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk by now (the journal is fsync'd per event); skip the interpreter's teardown, where a
    # thread pool the agent libraries leave behind holds the exit for about 1.5 s per idea.
    os._exit(code)
