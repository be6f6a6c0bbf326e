"""The fleet's scheduler: start each idea's process when a slot is free, reap it when it ends, and on
Ctrl-C let every running idea record its interruption before it stops."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from .. import runner
from .view import FleetView, IdeaState

WAIT_AFTER_INTERRUPT_S = 30.0  # for each idea's process to record its interruption after Ctrl-C


def worker_argv(ws: Path, stages: list[str]) -> list[str]:
    """The command that drives one idea's workspace in a process of its own (`fleet.worker`)."""
    return [sys.executable, "-m", "orchestrator.fleet.worker", str(ws), "--stages", ",".join(stages)]


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
    abl = f", {st.ablations} ablation(s)" if st.ablations else ""
    view.line(f"[{st.name}] {st.state}: {st.results} result(s) of {st.runs} run(s){abl}; workspace {st.ws}{tail}")


def drive_fleet(states: list[IdeaState], parallel: int, slots: str) -> int:
    """Run every idea's process, `parallel` at a time, until all end or Ctrl-C; returns the exit code."""
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
