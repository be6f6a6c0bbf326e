"""The progress view: rendered from journal events as they are appended — a rich live panel on a
terminal, plain log lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .events import EditApplied, Event, Exchange, Message, RunFinished, RunRecorded, RunStarted, StageFinished, StageStarted


class Progress:
    def __init__(self, *, max_runs: int, max_attempts: int, isolation: str, stream: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live_mode = self.stream.isatty() if live is None else live
        self.console = Console(file=self.stream, highlight=False)
        self.max_runs, self.max_attempts, self.isolation = max_runs, max_attempts, isolation
        self.stage = "-"
        self.run: int | None = None
        self.attempt: int | None = None
        self.phase = ""
        self.last_verdict = "-"
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

    def __enter__(self) -> Progress:
        if self.live_mode:
            self._live = Live(self._panel(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self._panel())
            self._live.__exit__(*exc)

    def _panel(self) -> Table:
        t = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - self.t0
        run = f"{self.run}/{self.max_runs}" if self.run else "-"
        att = f"{self.attempt}/{self.max_attempts}" if self.attempt else "-"
        t.add_row("stage", self.stage, "run", run, "attempt", att, "phase", self.phase or "-")
        t.add_row("elapsed", f"{elapsed:.0f}s", "last verdict", self.last_verdict, "tokens", f"{self.tokens:,}",
                  "cost", f"${self.cost:.4f}")
        t.add_row("isolation", self.isolation, "", "", "", "", "", "")
        return t

    def line(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def __call__(self, e: Event) -> None:
        """Journal listener."""
        text = None
        if isinstance(e, StageStarted):
            self.stage = e.stage
            text = f"stage {e.stage}: started"
        elif isinstance(e, StageFinished):
            text = f"stage {e.stage}: {e.status}" + (f" — {e.summary}" if e.summary else "")
        elif isinstance(e, Exchange):
            self.run, self.attempt = e.run, e.attempt
            self.tokens += e.prompt_tokens + e.completion_tokens
            self.cost += e.cost_usd
            where = f" run {e.run} attempt {e.attempt}" if e.run else ""
            text = f"  agent{where}: {e.step} reply ({e.prompt_tokens}+{e.completion_tokens} tokens, ${e.cost_usd:.4f}{', scripted' if e.scripted else ''})"
        elif isinstance(e, EditApplied):
            what = f"edited {', '.join(e.files)} (+{e.added} -{e.removed})" if e.files else "no edit"
            if e.failed:
                what += " — edit blocks did not apply"
            if e.refused:
                what += f" — refused edits to {', '.join(e.refused)}"
            if e.done:
                what = "declared the stage done"
            text = f"  agent: {what}"
        elif isinstance(e, RunStarted):
            self.run, self.attempt, self.phase = e.run, e.attempt, e.phase
        elif isinstance(e, RunFinished):
            self.last_verdict = f"run {e.run} {e.phase}: {e.status}"
            why = f" — {e.reasons[0]}" if e.reasons else ""
            text = f"  run {e.run} attempt {e.attempt} {e.phase}: {e.status} in {e.wall_s:.1f}s{why}"
        elif isinstance(e, RunRecorded):
            text = f"run {e.run}: {e.status.upper()} after {e.attempts} attempt(s)"
        elif isinstance(e, Message):
            text = f"{e.level}: {e.text}" if e.level != "info" else e.text
        if self._live is not None:
            self._live.update(self._panel())
        if text:
            self.line(text)
