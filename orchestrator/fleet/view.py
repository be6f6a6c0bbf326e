"""The fleet's live view: one row per idea, kept up to date by tailing each idea's journal."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Self

from ..events import EVENT_ADAPTER, Message, RunFinished, RunRecorded, RunStarted, StageFinished, StageStarted
from ..formatting import describe
from ..readmodel import WorkspaceModel


@dataclasses.dataclass
class IdeaState:
    """One row of the live view, kept up to date from the idea's journal."""

    name: str
    ws: Path
    state: str = "queued"  # queued, running, done, failed, interrupted, stopping
    stage: str = "-"
    run: str = "-"
    verdict: str = "-"
    job: str = ""
    rc: int | None = None
    started: float | None = None
    ended: float | None = None
    proc: Any = None
    stages: list[str] = dataclasses.field(default_factory=list)
    model: WorkspaceModel = dataclasses.field(default_factory=WorkspaceModel)  # what the journal said so far
    _offset: int = 0

    @property
    def runs(self) -> int:
        """The search's runs with a final verdict (ablations apart)."""
        return sum(r.recorded is not None for r in self.model.search_runs())

    @property
    def results(self) -> int:
        """The search's results: runs whose final verdict is ok (an ok ablation is no search result)."""
        return sum(r.is_result for r in self.model.search_runs())

    @property
    def ablations(self) -> int:
        """Ablation runs with a final verdict (ok, failed or not applicable alike)."""
        return sum(r.recorded is not None and self.model.ablation(r.run) is not None for r in self.model.run_list())

    @property
    def tally(self) -> str:
        """The table's results cell: "2/3", "2/3 +2 ablation(s)"."""
        return f"{self.results}/{self.runs}" + (f" +{self.ablations} ablation(s)" if self.ablations else "")

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
        self.model.apply(e)
        if isinstance(e, StageStarted):
            self.stage = e.stage
        elif isinstance(e, StageFinished):
            self.stage = f"{e.stage} {e.status}"
        elif isinstance(e, RunStarted):
            self.run = f"{e.run if e.run is not None else e.stage}.{e.attempt} {e.phase}"
            self.job = e.job_id or ""
        elif isinstance(e, RunFinished):
            self.verdict = f"{f'run {e.run}' if e.run is not None else e.stage} {e.phase}: {e.status}"
        shown = isinstance(e, (StageFinished, RunRecorded)) or (isinstance(e, Message) and e.level != "info")
        return describe(e) if shown else None

    def elapsed(self) -> str:
        """How long the idea's process has run (or ran), for the table."""
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
        """The table of every idea, as rich renders it."""
        from rich.table import Table

        t = Table(title=f"{len(self.ideas)} idea(s) · {self.slots} · {time.monotonic() - self.t0:.0f}s", title_justify="left")
        for col in ("idea", "workspace", "state", "stage", "run", "last verdict", "results", "time"):
            t.add_column(col)
        for i in self.ideas:
            run = f"{i.run} (job {i.job})" if i.job and i.state == "running" else i.run
            t.add_row(i.name, i.ws.name, i.state, i.stage, run, i.verdict, i.tally, i.elapsed())
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
        """Print one line above the live table (or plainly)."""
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def refresh(self) -> None:
        """Read every idea's new journal events, print their lines, redraw the table."""
        for i in self.ideas:
            for text in i.poll_journal():
                self.line(text)
        if self._live is not None:
            self._live.update(self.table())
