"""Where a run executes. Stages never know which executor ran them: every executor takes a
`runner.RunSpec` and returns a `runner.RunRecord`, through one protocol:

    handle = executor.submit(spec, stop=event)    # started (a local process, a Slurm job)
    record = executor.wait(handle)                # its end, judged by the caller

`attach(spec, job_id)` re-attaches a resumed orchestrator to a run it had submitted before it stopped
(a Slurm job still running); executors whose runs die with the orchestrator return None. `local` runs a
subprocess here; `gpus` leases a GPU slot for it; `slurm` submits a job (executors/slurm.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from .. import runner
from ..runner import RunRecord, RunSpec


@dataclass
class Handle:
    """A submitted run: its spec, its job id where the executor has one (journaled as RunStarted.job_id),
    and what the executor needs to wait for it."""

    spec: RunSpec
    job_id: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None  # local runs: the thread that runs it
    ended: Callable[[], bool] | None = None  # runs without a thread here (a Slurm job): whether its end is known

    def done(self) -> bool:
        """Whether the run has ended, so that waiting for it returns at once (a tree node in flight lands then)."""
        if self.future is not None:
            return self.future.done()
        return self.ended() if self.ended is not None else False


class Executor(Protocol):
    """Starts runs and follows them to their end."""

    name: str

    def submit(self, spec: RunSpec, *, stop: threading.Event | None = None) -> Handle:
        """Start the run; `stop`, when set, ends it (recorded as interrupted)."""
        ...

    def wait(self, handle: Handle) -> RunRecord:
        """The record of the run's end (never raises for the run's failures)."""
        ...

    def attach(self, spec: RunSpec, job_id: str, *, stop: threading.Event | None = None) -> Handle | None:
        """The handle of a run submitted by an earlier orchestrator, or None when such runs died with it."""
        ...


def run(executor: Executor, spec: RunSpec, *, stop: threading.Event | None = None) -> RunRecord:
    """Submit and wait: one run, to its end."""
    return executor.wait(executor.submit(spec, stop=stop))


def _linked(stop: threading.Event | None) -> threading.Event:
    """A handle's own event, set when the caller's is (checked by the waiting loop)."""
    own = threading.Event()
    if stop is not None and stop.is_set():
        own.set()
    return own


class LocalExecutor:
    """A subprocess on this machine, run by `runner.run` in a thread of its own (so that several seeds run
    at once, at most `slots` together: the others wait for a slot); `gpus` (e.g. "0,1") becomes
    CUDA_VISIBLE_DEVICES."""

    name = "local"

    def __init__(self, gpus: str | None = None, slots: int = 1) -> None:
        self.gpus = gpus
        self.slots = max(1, slots)
        self._free = threading.Semaphore(self.slots)

    def prepared(self, spec: RunSpec) -> RunSpec:
        if self.gpus is None:
            return spec
        return spec.model_copy(update={"env": {**(spec.env or {}), "CUDA_VISIBLE_DEVICES": self.gpus}})

    def submit(self, spec: RunSpec, *, stop: threading.Event | None = None) -> Handle:
        handle = Handle(spec=spec, stop=_linked(stop))

        def body() -> RunRecord:
            while not self._free.acquire(timeout=0.1):  # a free CPU slot, or the stop
                if handle.stop.is_set():
                    break
            else:
                try:
                    return runner.run(self.prepared(spec), stop=handle.stop)
                finally:
                    self._free.release()
            return runner.run(self.prepared(spec), stop=handle.stop)  # stopped while waiting: recorded as interrupted

        handle.future = _start(body, outer=stop, own=handle.stop)
        return handle

    def wait(self, handle: Handle) -> RunRecord:
        return wait_local(handle)

    def attach(self, spec: RunSpec, job_id: str, *, stop: threading.Event | None = None) -> Handle | None:
        return None  # a local run dies with its orchestrator (pipeline.reopen ends leftovers)


def _start(fn, *, outer: threading.Event | None, own: threading.Event) -> Future:
    fut: Future = Future()

    def body() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:  # handed to the waiter
            fut.set_exception(exc)

    def relay() -> None:  # the caller's stop reaches the run
        while not fut.done():
            if outer is not None and outer.wait(0.1):
                own.set()
                return
            if outer is None:
                return

    threading.Thread(target=body, daemon=True).start()
    if outer is not None:
        threading.Thread(target=relay, daemon=True).start()
    return fut


def wait_local(handle: Handle) -> RunRecord:
    """Wait for a local run's thread; an interruption here (Ctrl-C, SIGTERM) ends the run's tree first."""
    assert handle.future is not None
    try:
        while True:
            try:
                return handle.future.result(timeout=0.2)
            except TimeoutError:
                continue
    except BaseException:
        handle.stop.set()  # the runner kills the tree within a poll
        try:
            handle.future.result(timeout=30)
        except BaseException:  # the interruption is what propagates
            pass
        raise
