"""The read model of a workspace: its runs, attempts, phases and stages, folded once from the journal's
events. Every reader builds on it: the timeline (`show`, `report`), the paper's results, the progress
and fleet views, replay and resume. `WorkspaceModel.apply` takes one event at a time, so a view that
tails a journal keeps one up to date as events arrive."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WorkspaceError
from .events import (
    Artifact,
    EditApplied,
    Event,
    Exchange,
    ExchangeFailed,
    Message,
    RunFinished,
    RunRecorded,
    RunStarted,
    StageFinished,
    StageStarted,
    WorkspaceCreated,
)

EXPERIMENT_PHASES = ("smoke", "full")  # the phases of a numbered run; plot, latex and chktex belong to stages
STAGE_OF_PHASE = {"plot": "plots", "latex": "compile", "chktex": "compile"}


def workspace_created(events: list[Event], where: Path | str) -> WorkspaceCreated:
    """The journal's first event, which must be `WorkspaceCreated`; WorkspaceError (exit 2) otherwise."""
    head = events[0] if events else None
    if not isinstance(head, WorkspaceCreated):
        raise WorkspaceError(where, "the journal does not start with workspace_created")
    return head


@dataclass
class PhaseView:
    """One execution of the experiment (smoke or full run) within an attempt."""

    phase: str
    out_dir: str
    status: str  # a RunFinished status, or "unfinished" when the journal has only its start
    reasons: list[str] = field(default_factory=list)
    exit_code: int | None = None
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    feedback: dict[str, Any] = field(default_factory=dict)
    log_dir: str = ""
    commit: str | None = None
    job_id: str | None = None  # the Slurm job it was submitted as

    @property
    def finished(self) -> bool:
        return self.status != "unfinished"


@dataclass
class AttemptView:
    """One agent reply for a run and what running it gave."""

    run: int
    attempt: int
    exchanges: list[Exchange] = field(default_factory=list)
    edits: list[EditApplied] = field(default_factory=list)
    phases: list[PhaseView] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(e.added for e in self.edits)

    @property
    def removed(self) -> int:
        return sum(e.removed for e in self.edits)

    @property
    def files(self) -> list[str]:
        out: list[str] = []
        for e in self.edits:
            out += [f for f in e.files if f not in out]
        return out

    @property
    def verdict(self) -> str:
        """ok / failed / degenerate / ... of its last phase; "no edit", "done" or "unfinished" otherwise."""
        if self.phases:
            return self.phases[-1].status
        if any(e.done for e in self.edits):
            return "done"
        if self.edits and not any(e.files for e in self.edits):
            return "no edit"
        return "unfinished"

    @property
    def reason(self) -> str:
        if self.phases and self.phases[-1].reasons:
            p = self.phases[-1]
            return f"{p.phase}: {p.reasons[0]}" if p.phase == "smoke" else p.reasons[0]
        for e in self.edits:
            if e.failed:
                return "edit blocks did not apply"
            if e.refused:
                return f"refused edits to {', '.join(e.refused)}"
        if self.verdict == "no edit":
            return "the reply changed no file"
        return ""

    @property
    def wall_s(self) -> float:
        return sum(p.wall_s for p in self.phases)

    @property
    def exit_code(self) -> int | None:
        return self.phases[-1].exit_code if self.phases else None

    @property
    def tokens(self) -> int:
        return sum(x.prompt_tokens + x.completion_tokens for x in self.exchanges)

    @property
    def cost_usd(self) -> float:
        return sum(x.cost_usd for x in self.exchanges)


@dataclass
class RunView:
    """One numbered run (`run_N`) with its attempts and its recorded verdict, if it got one."""

    run: int
    attempts: list[AttemptView] = field(default_factory=list)
    recorded: RunRecorded | None = None

    @property
    def status(self) -> str:
        if self.recorded is not None:
            return self.recorded.status
        if self.attempts and self.attempts[-1].verdict == "done":
            return "not run"  # the agent ended the stage before this run
        return "unfinished"

    @property
    def is_result(self) -> bool:
        return self.status == "ok"

    @property
    def reasons(self) -> list[str]:
        if self.recorded is not None:
            return self.recorded.reasons
        last = self.attempts[-1] if self.attempts else None
        return [last.reason] if last and last.reason else []

    @property
    def metrics(self) -> dict[str, Any]:
        """Validated metrics for results; the last full run's reported metrics otherwise (not a result)."""
        if self.recorded is not None and self.recorded.metrics:
            return self.recorded.metrics
        for a in reversed(self.attempts):
            for p in reversed(a.phases):
                if p.phase == "full" and p.metrics:
                    return p.metrics
        return {}

    @property
    def code_commit(self) -> str | None:
        """The commit holding this run's code: its result's commit, else its last edit's."""
        for a in reversed(self.attempts):
            for p in reversed(a.phases):
                if p.commit:
                    return p.commit
            for e in reversed(a.edits):
                if e.commit:
                    return e.commit
        return None

    @property
    def edits(self) -> list[EditApplied]:
        return [e for a in self.attempts for e in a.edits]

    @property
    def wall_s(self) -> float:
        return sum(a.wall_s for a in self.attempts)

    @property
    def added(self) -> int:
        return sum(a.added for a in self.attempts)

    @property
    def removed(self) -> int:
        return sum(a.removed for a in self.attempts)


@dataclass
class StageView:
    """One pipeline stage: its status, its model calls and cost, what it produced and its own runs."""

    name: str
    status: str  # done, failed, skipped (journal) or running / not started
    summary: str = ""
    started_ts: float | None = None
    finished_ts: float | None = None
    last_ts: float | None = None
    exchanges: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    artifacts: list[Artifact] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    executions: list[RunFinished] = field(default_factory=list)  # plot / latex / chktex runs of this stage

    @property
    def executions_note(self) -> str:
        """`plot ×2 (last failed)`: the stage's own runs, for the stage tables."""
        if not self.executions:
            return ""
        parts = []
        for phase in dict.fromkeys(e.phase for e in self.executions):
            runs = [e for e in self.executions if e.phase == phase]
            parts.append(f"{phase} ×{len(runs)} (last {runs[-1].status})")
        return ", ".join(parts)

    @property
    def wall_s(self) -> float | None:
        if self.started_ts is None:
            return None
        end = self.finished_ts or self.last_ts
        return max(0.0, end - self.started_ts) if end else None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class WorkspaceModel:
    """Runs, attempts, phases, stages, messages and artifacts of one workspace, folded from its events."""

    def __init__(self) -> None:
        self.created: WorkspaceCreated | None = None
        self.runs: dict[int, RunView] = {}
        self.stages: dict[str, StageView] = {}
        self.messages: list[Message] = []
        self.artifacts: list[Artifact] = []
        self.current_stage: str | None = None
        self.last_ts: float | None = None
        self._jobs: dict[tuple[int, int, str], str] = {}  # submitted as jobs, no verdict yet: key -> out_dir

    @classmethod
    def build(cls, events: list[Event], where: Path | str | None = None) -> WorkspaceModel:
        """The model of a whole journal; with `where`, the journal must start with WorkspaceCreated."""
        if where is not None:
            workspace_created(events, where)
        model = cls()
        for e in events:
            model.apply(e)
        return model

    # -- queries -----------------------------------------------------------------------------------
    def run_list(self) -> list[RunView]:
        """Every run, by number."""
        return [self.runs[k] for k in sorted(self.runs)]

    def recorded(self) -> dict[int, RunRecorded]:
        """Each run's final verdict (the last one recorded), by run number."""
        return {n: r.recorded for n, r in sorted(self.runs.items()) if r.recorded is not None}

    def pending_job_dirs(self) -> list[str]:
        """Out folders of runs submitted as jobs that have no verdict yet: a resume waits for those jobs."""
        return list(self._jobs.values())

    # -- the fold ----------------------------------------------------------------------------------
    def _run(self, n: int) -> RunView:
        if n not in self.runs:
            self.runs[n] = RunView(run=n)
        return self.runs[n]

    def _attempt(self, n: int, a: int) -> AttemptView:
        rv = self._run(n)
        for av in rv.attempts:
            if av.attempt == a:
                return av
        av = AttemptView(run=n, attempt=a)
        rv.attempts.append(av)
        rv.attempts.sort(key=lambda x: x.attempt)
        return av

    def stage(self, name: str) -> StageView:
        """The stage's view, made "not started" on first mention."""
        if name not in self.stages:
            self.stages[name] = StageView(name=name, status="not started")
        return self.stages[name]

    def apply(self, e: Event) -> None:
        """Fold one more event into the model."""
        if self.current_stage and e.ts:
            self.stage(self.current_stage).last_ts = e.ts
        if e.ts:
            self.last_ts = e.ts if self.last_ts is None else max(self.last_ts, e.ts)
        if isinstance(e, WorkspaceCreated):
            if self.created is None:
                self.created = e
        elif isinstance(e, StageStarted):
            sv = self.stage(e.stage)
            sv.status = "running"
            if sv.started_ts is None:
                sv.started_ts = e.ts
            self.current_stage = e.stage
        elif isinstance(e, StageFinished):
            sv = self.stage(e.stage)
            sv.status, sv.summary, sv.finished_ts = e.status, e.summary, e.ts
            if sv.started_ts is None:
                sv.started_ts = e.ts
            self.current_stage = None
        elif isinstance(e, Exchange):
            sv = self.stage(e.stage)
            sv.exchanges += 1
            sv.prompt_tokens += e.prompt_tokens
            sv.completion_tokens += e.completion_tokens
            sv.cost_usd += e.cost_usd
            if e.run is not None and e.stage == "experiments":
                self._attempt(e.run, e.attempt or 1).exchanges.append(e)
        elif isinstance(e, EditApplied):
            if e.run is not None and e.stage == "experiments":
                self._attempt(e.run, e.attempt or 1).edits.append(e)
        elif isinstance(e, RunStarted):
            if e.job_id:
                self._jobs[(e.run, e.attempt, e.phase)] = e.out_dir
            if e.phase in EXPERIMENT_PHASES:
                av = self._attempt(e.run, e.attempt)
                av.phases = [p for p in av.phases if p.phase != e.phase]  # a redo after a crash replaces it
                av.phases.append(PhaseView(phase=e.phase, out_dir=e.out_dir, status="unfinished", commit=None,
                                           job_id=e.job_id))
        elif isinstance(e, RunFinished):
            self._jobs.pop((e.run, e.attempt, e.phase), None)
            if e.phase not in EXPERIMENT_PHASES:
                self.stage(STAGE_OF_PHASE.get(e.phase, self.current_stage or e.phase)).executions.append(e)
            else:
                av = self._attempt(e.run, e.attempt)
                av.phases = [p for p in av.phases if p.phase != e.phase]
                av.phases.append(PhaseView(
                    phase=e.phase, out_dir=e.out_dir, status=e.status, reasons=list(e.reasons), exit_code=e.exit_code,
                    wall_s=e.wall_s, peak_rss_mb=e.peak_rss_mb, metrics=dict(e.metrics),
                    feedback=e.feedback.model_dump(exclude_defaults=True),
                    log_dir=e.log_dir, commit=e.commit,
                ))
                av.phases.sort(key=lambda p: 0 if p.phase == "smoke" else 1)
        elif isinstance(e, RunRecorded):
            self._run(e.run).recorded = e
        elif isinstance(e, ExchangeFailed):  # explained as an error message: show and report list those
            failed = Message(seq=e.seq, ts=e.ts, level="error", text=e.describe(), stage=e.stage)
            self.messages.append(failed)
            self.stage(e.stage).messages.append(failed)
        elif isinstance(e, Message):
            self.messages.append(e)
            if e.stage:
                self.stage(e.stage).messages.append(e)
        elif isinstance(e, Artifact):
            self.artifacts.append(e)
            self.stage(e.stage).artifacts.append(e)
