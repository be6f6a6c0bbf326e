"""The run loop: drive a workspace's stages with the progress view attached, and turn an interruption or
a spent budget into a resumable stop (a message in the journal, the lock released, an exit code)."""

from __future__ import annotations

import sys

from .context import Context
from .errors import BudgetExceeded
from .events import Message, NodeCreated, RunRecorded
from .pipeline import execute
from .progress import Progress


def drive(ctx: Context, stages: list[str], *, verbosity: int = 0) -> int:
    """Run `stages` of ctx's workspace to the end or to a resumable stop; returns the exit code.
    verbosity < 0: no progress view (the end and errors only); > 0: a line for every journal event."""
    prog = Progress(max_runs=ctx.limits.max_runs, max_attempts=ctx.limits.max_attempts, isolation=ctx.isolation,
                    verbosity=verbosity)
    prog.seed(ctx.journal.events)
    ctx.journal.listeners.append(prog)
    try:
        try:
            with prog:
                execute(ctx, stages)
        finally:  # what is said below is said once, not again by the progress view
            ctx.journal.listeners.remove(prog)
    except KeyboardInterrupt:
        ctx.ws.unlock()
        ctx.journal.append(Message(level="warning", text="interrupted by the user"))
        print(f"interrupted; continue with: orchestrate resume {ctx.ws.root}", file=sys.stderr)
        return 130
    except BudgetExceeded as exc:
        ctx.journal.append(Message(level="warning", text=str(exc)))
        print(f"{exc}\nworkspace: {ctx.ws.root}", file=sys.stderr)
        ctx.ws.unlock()
        return exc.exit_code
    except BaseException:
        ctx.ws.unlock()
        raise
    ctx.ws.unlock()
    ablation = {n.run for n in ctx.journal.of(NodeCreated) if n.kind == "ablation"}  # not search results
    recs = [r for r in ctx.journal.of(RunRecorded) if r.run not in ablation]
    abl = [r for r in ctx.journal.of(RunRecorded) if r.run in ablation]
    ok = sum(1 for r in recs if r.status == "ok")
    extra = f", {sum(1 for r in abl if r.status == 'ok')} of {len(abl)} ablation(s) are results" if abl else ""
    print(f"done: {ok} of {len(recs)} run(s) are results{extra}; workspace: {ctx.ws.root}")
    return 0
