"""One idea's process in a fleet: `python -m orchestrator.fleet.worker WS --stages a,b` drives one
workspace made by `fleet.run_many`, and stops cleanly when the fleet that started it is gone."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .. import env, runner


def _watch_parent(ppid: int) -> None:
    """Stop cleanly (as on Ctrl-C) when the fleet that started us is gone, instead of running on unseen."""
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os.kill(os.getpid(), signal.SIGINT)
            return


def worker_main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.fleet.worker WS --stages a,b`: drive one workspace made by run_many."""
    from ..drive import drive
    from ..errors import OrchestratorError
    from ..pipeline import RunOptions, reopen

    p = argparse.ArgumentParser(prog="orchestrator.fleet.worker")
    p.add_argument("workspace", type=Path)
    p.add_argument("--stages", default="")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        ctx, stages = reopen(a.workspace, RunOptions(stages=[s for s in a.stages.split(",") if s] or None),
                             log=lambda s: print(s, flush=True))
        rc = drive(ctx, stages)
    except OrchestratorError as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        rc = 130
    if rc == 130:  # an experiment interrupted mid-run must not outlive us (isolation none has no die-with-parent)
        runner.kill_marked(env.WORKSPACE, str(a.workspace.resolve()))
    return rc


if __name__ == "__main__":
    code = worker_main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk by now (the journal is fsync'd per event); skip the interpreter's teardown, where a
    # thread pool the agent libraries leave behind holds the exit for about 1.5 s per idea.
    os._exit(code)
