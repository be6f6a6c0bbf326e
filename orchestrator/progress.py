"""The progress view: rendered from journal events as they are appended — a rich live panel on a
terminal, plain log lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .events import Event, Exchange, RunFinished, RunRecorded, RunStarted, StageFinished, StageStarted
from .formatting import describe


class Progress:
    """The live view of one workspace's run: a panel of where it is (its clock ticking on its own, four times
    a second), and a line per event worth one. verbosity < 0: nothing; > 0: a line for every event."""

    def __init__(self, *, max_runs: int, max_attempts: int, isolation: str, stream: TextIO | None = None,
                 live: bool | None = None, verbosity: int = 0) -> None:
        self.stream = stream or sys.stderr
        self.verbosity = verbosity
        self.live_mode = (self.stream.isatty() if live is None else live) and verbosity >= 0
        self.console = Console(file=self.stream, highlight=False, force_terminal=True if live else None)
        self.max_runs, self.max_attempts, self.isolation = max_runs, max_attempts, isolation
        self.stage = "-"
        self.run: int | None = None
        self.attempt: int | None = None
        self.phase = ""
        self.last_verdict = "-"
        self.recorded = 0  # the last run recorded
        self.ended: str | None = None  # how the experiments ended, once they did
        self.tokens = 0
        self.cost = 0.0
        self.t0 = time.monotonic()
        self._live: Live | None = None

    def seed(self, events: list[Event]) -> None:
        """Totals from an existing journal (resume)."""
        for e in events:
            if isinstance(e, Exchange):
                self.tokens += e.prompt_tokens + e.completion_tokens
                self.cost += e.cost_usd
            elif isinstance(e, RunRecorded):
                self.recorded = e.run

    def __enter__(self) -> Progress:
        if self.live_mode:
            # get_renderable: every refresh renders the panel anew, so the clock moves between events too
            self._live = Live(get_renderable=self._panel, console=self.console, refresh_per_second=4,
                              auto_refresh=True, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if self.ended is None and exc_type is not None:
            where = f"during run {self.run} attempt {self.attempt} ({self.phase})" if self.phase else f"in stage {self.stage}"
            self.ended = f"stopped {where}"
            self.phase = ""
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(exc_type, *rest)

    def _panel(self) -> Table | Group:
        t = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - self.t0
        run = f"{self.run}/{self.max_runs}" if self.run else "-"
        att = f"{self.attempt}/{self.max_attempts}" if self.attempt else "-"
        if self.ended:
            t.add_row("stage", self.stage, "runs", f"{self.recorded}/{self.max_runs}", "", "", "", "")
        else:
            t.add_row("stage", self.stage, "run", run, "attempt", att, "phase", self.phase or "-")
        t.add_row("elapsed", f"{elapsed:.0f}s", "last verdict", self.last_verdict, "tokens", f"{self.tokens:,}",
                  "cost", f"${self.cost:.4f}")
        t.add_row("isolation", self.isolation, "", "", "", "", "", "")
        return Group(t, Text(self.ended)) if self.ended else t

    def line(self, text: str) -> None:
        """Print one line above the live panel (or plainly)."""
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def __call__(self, e: Event) -> None:
        """Journal listener: update the panel, print the event's line (`formatting.describe`)."""
        if isinstance(e, StageStarted):
            self.stage = e.stage
            if self.ended and e.stage != "experiments":
                self.ended = self.ended.split("; now ")[0] + f"; now {e.stage}"
        elif isinstance(e, Exchange):
            self.run, self.attempt = e.run, e.attempt
            self.tokens += e.prompt_tokens + e.completion_tokens
            self.cost += e.cost_usd
        elif isinstance(e, RunStarted):
            if e.run is not None:
                self.run, self.attempt = e.run, e.attempt
            self.phase = e.phase
        elif isinstance(e, RunFinished):
            self.last_verdict = f"{f'run {e.run}' if e.run is not None else e.stage} {e.phase}: {e.status}"
            self.phase = ""
        elif isinstance(e, RunRecorded):
            self.recorded = e.run
        elif isinstance(e, StageFinished) and e.stage == "experiments":
            self.run = self.attempt = None
            if self.recorded < self.max_runs:
                self.ended = f"experiments {e.status}: the agent ended before run {self.recorded + 1}"
            else:
                self.ended = f"experiments {e.status}: all {self.max_runs} runs"
        if self.verbosity < 0:
            return
        text = describe(e)
        if text is None and self.verbosity > 0:
            text = f"  ({e.type}: " + ", ".join(f"{k}={v}" for k, v in e.model_dump(exclude={"seq", "ts", "type"}).items()
                                             if isinstance(v, (int, float, str)) and len(str(v)) < 60) + ")"
        if text:
            self.line(text)
