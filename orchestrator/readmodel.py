"""The read model of a workspace: its runs, attempts, phases and stages, folded once from the journal's
events. Every reader builds on it: the timeline (`show`, `report`), the paper's results, the progress
and fleet views, replay and resume. `WorkspaceModel.apply` takes one event at a time, so a view that
tails a journal keeps one up to date as events arrive; `live(journal)` does that for the orchestrator's
own journal (one fold per appended event, not a rebuild per question)."""

from __future__ import annotations

import math
import re
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WorkspaceError
from .events import (
    Artifact,
    BaselineRecorded,
    EditApplied,
    Event,
    Exchange,
    ExchangeFailed,
    Message,
    NodeCreated,
    RunFinished,
    RunRecorded,
    RunStarted,
    StageFinished,
    StageStarted,
    WorkspaceCreated,
)

if TYPE_CHECKING:
    from .journal import Journal

EXPERIMENT_PHASES = ("smoke", "full")  # the phases of a numbered run; plot, latex and chktex belong to stages
STAGE_OF_PHASE = {"plot": "plots", "latex": "compile", "chktex": "compile"}
NOT_APPLICABLE = "not applicable"  # how every view shows an ablation whose change no longer comes out
NOT_APPLICABLE_REASON = "not applicable:"  # how the ablations stage starts such a run's reason


def not_applicable(rec: RunRecorded | None) -> bool:
    """An ablation whose change no longer reverse-applies to the best node's code: the ablations stage records it
    as RunRecorded(status="failed", attempts=0) with a reason starting "not applicable:" and runs nothing. It is
    not a failure: views show it as NOT_APPLICABLE and no failure count includes it (the journal keeps "failed",
    so journals written before this rule read the same)."""
    return (rec is not None and rec.status == "failed" and rec.attempts == 0 and bool(rec.reasons)
            and rec.reasons[0].startswith(NOT_APPLICABLE_REASON))


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
    seed: int | None = None  # which seed of the run (None: a run from before seeds)
    evaluation: str = "self-reported"
    started_ts: float | None = None  # when it started (its RunStarted; a node in flight is journaled when it lands)

    @property
    def finished(self) -> bool:
        return self.status != "unfinished"


def union_seconds(spans) -> float:
    """How long at least one of the (start, end) spans lasts: spans that overlap count once (an empty one, end
    not past its start, adds nothing)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        lo = max(start, reach)
        if end > lo:
            total += end - lo
        reach = max(reach, end)
    return total


def busy_seconds(phases: list[PhaseView]) -> float:
    """The clock time in which at least one of `phases` ran: the union of their spans, so seeds (or nodes) that
    ran side by side count once; a phase with no known start adds its own wall time."""
    return (union_seconds((p.started_ts, p.started_ts + p.wall_s) for p in phases if p.started_ts is not None)
            + sum(p.wall_s for p in phases if p.started_ts is None))


@dataclass
class AttemptView:
    """One agent reply for a run and what running it gave."""

    run: int
    attempt: int
    exchanges: list[Exchange] = field(default_factory=list)
    edits: list[EditApplied] = field(default_factory=list)
    phases: list[PhaseView] = field(default_factory=list)  # smoke, then each seed's full run
    aggregated: Any = None  # the RunAggregated verdict over the full run's seeds, when the journal has one

    @property
    def added(self) -> int:
        return sum(e.added for e in self.edits)

    @property
    def fulls(self) -> list[PhaseView]:
        """The full run's phases, one per seed."""
        return [p for p in self.phases if p.phase == "full"]

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
        """ok / failed / degenerate / ... of its last phase (over seeds: the aggregate verdict, else the first
        seed that is not ok); "no edit", "done" or "unfinished" otherwise."""
        if self.aggregated is not None:
            return str(self.aggregated.status)
        fulls = self.fulls
        if len(fulls) > 1:
            return next((p.status for p in fulls if p.status != "ok"), "ok")
        if self.phases:
            return self.phases[-1].status
        if any(e.done for e in self.edits):
            return "done"
        if self.edits and not any(e.files for e in self.edits):
            return "no edit"
        return "unfinished"

    @property
    def reason(self) -> str:
        if self.aggregated is not None and self.aggregated.reasons:
            return str(self.aggregated.reasons[0])
        bad = [p for p in self.fulls if p.status != "ok" and p.reasons]
        if len(self.fulls) > 1 and bad:
            return f"seed {bad[0].seed}: {bad[0].reasons[0]}"
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
        return busy_seconds(self.phases)

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
            return NOT_APPLICABLE if not_applicable(self.recorded) else self.recorded.status
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
        return busy_seconds([p for a in self.attempts for p in a.phases])

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


def _phase_order(p: PhaseView) -> tuple[int, int]:
    return (0 if p.phase == "smoke" else 1, -1 if p.seed is None else p.seed)


PER_SEED = "final_info_dict"  # AI Scientist's per-seed lists, {ds: {"final_info_dict": {k: [per seed]}}}
_LISTED = re.compile(r"^(?P<ds>.+)\." + PER_SEED + r"\.(?P<key>.+)\.(?P<i>\d+)$")


def fold_listed_seeds(values: dict[str, list[float]]) -> dict[str, list[float]]:
    """A single run whose results list its own seeds (results.flatten keeps `ds.final_info_dict.k.<i>`): the
    mean `ds.means.k` (or `ds.means.k_mean`) takes those values, so stats see the template's seeds; the
    indexed keys are folded away. A list whose mean is not the reported mean is not used (the mean stays
    one value, which supports no comparison)."""
    groups: dict[tuple[str, str], dict[int, float]] = {}
    out = {}
    for k, v in values.items():
        m = _LISTED.match(k)
        if m is None:
            out[k] = v
        elif len(v) == 1:
            groups.setdefault((m["ds"], m["key"]), {})[int(m["i"])] = v[0]
    for (ds, key), by_index in groups.items():
        listed = [by_index[i] for i in sorted(by_index)]
        mean_key = next((c for c in (f"{ds}.means.{key}", f"{ds}.means.{key}_mean") if c in out), None)
        if mean_key is None or len(out[mean_key]) != 1 or len(listed) < 2:
            continue
        reported = out[mean_key][0]
        if math.isclose(sum(listed) / len(listed), reported, rel_tol=1e-6, abs_tol=1e-9):
            out[mean_key] = listed
    return out


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


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
        self._jobs: dict[tuple[int, int, str, int | None], str] = {}  # submitted as jobs, no verdict yet: key -> out_dir
        self.baselines: dict[int | None, BaselineRecorded] = {}  # the baseline's verdict per seed (the last one of each)
        self.nodes: dict[int, NodeCreated] = {}  # the search tree's nodes by run number (search/tree.py reads them)

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

    def ablation(self, run: int) -> NodeCreated | None:
        """Run `run`'s NodeCreated when it is an ablation (the ablations stage's: the best node less one change,
        never a search result nor a search failure), else None."""
        node = self.nodes.get(run)
        return node if node is not None and node.kind == "ablation" else None

    def search_runs(self) -> list[RunView]:
        """The search's runs (the experiments stage's), by number: every run but the ablations."""
        return [r for r in self.run_list() if self.ablation(r.run) is None]

    # -- seeds (the seeds contract): every view computes its uncertainty from these, with stats.py ---
    @property
    def baseline(self) -> BaselineRecorded | None:
        """The baseline's verdict (of its last seed): its evaluation and reasons; metrics via seed_values(0)."""
        return self.baselines[list(self.baselines)[-1]] if self.baselines else None

    def _seed_phases(self, run: int) -> list[PhaseView]:
        """The ok full-run phases of the run's last attempt that ran one, restricted to the aggregate's ok seeds."""
        rv = self.runs.get(run)
        for a in reversed(rv.attempts if rv else []):
            fulls = [p for p in a.fulls if p.finished]
            if not fulls:
                continue
            if a.aggregated is not None:
                ok = set(a.aggregated.seeds_ok)
                return [p for p in fulls if p.seed in ok and p.status == "ok"]
            return [p for p in fulls if p.status == "ok"]
        return []

    def seed_values(self, run: int) -> dict[str, list[float]]:
        """metric -> its values over the run's ok seeds, by seed (run 0: the baseline's seeds), numbers only,
        from the journal's RunFinished / BaselineRecorded metrics (never from the run's folder)."""
        if run == 0:
            sources = [self.baselines[s].metrics for s in sorted(self.baselines, key=lambda s: -1 if s is None else s)]
        else:
            sources = [p.metrics for p in self._seed_phases(run)]
        out: dict[str, list[float]] = {}
        for m in sources:
            for k, v in _numeric(m).items():
                out.setdefault(k, []).append(v)
        return fold_listed_seeds(out) if len(sources) == 1 else out

    def seeds_ok(self, run: int) -> list[int | None]:
        """The seeds of the run whose full run is ok (None: a run from before seeds)."""
        if run == 0:
            return sorted(self.baselines, key=lambda s: -1 if s is None else s)
        return [p.seed for p in self._seed_phases(run)]

    def seeds_planned(self, run: int) -> int:
        """How many seeds the run's full run was to have (its aggregate's count, else the seeds it started)."""
        if run == 0:
            return len(self.baselines)
        rv = self.runs.get(run)
        for a in reversed(rv.attempts if rv else []):
            if a.aggregated is not None:
                return len(a.aggregated.seeds_ok) + len(a.aggregated.seeds_failed)
            if a.fulls:
                return len(a.fulls)
        return 0

    def min_ok(self, run: int) -> int | None:
        """The seeds that had to be ok for the run to be a result, when fewer than all (the aggregate's min_ok)."""
        rv = self.runs.get(run)
        for a in reversed(rv.attempts if rv else []):
            if a.aggregated is not None:
                return getattr(a.aggregated, "min_ok", None)
        return None

    def evaluation(self, run: int) -> str:
        """Whether the run's metrics were evaluated (by the template's sealed evaluator) or self-reported."""
        if run == 0:
            return self.baseline.evaluation if self.baseline is not None else "self-reported"
        rv = self.runs.get(run)
        if rv is not None and rv.recorded is not None:
            return rv.recorded.evaluation
        phases = self._seed_phases(run)
        return phases[-1].evaluation if phases else "self-reported"

    def key_evaluation(self, run: int, key: str) -> str:
        """key_evaluation (below) for one metric of a run, over its ok seeds (run 0: the baseline's)."""
        sources = [b.metrics for b in self.baselines.values()] if run == 0 else [p.metrics for p in self._seed_phases(run)]
        ev = self.evaluation(run)
        return "evaluated" if sources and all(key_evaluation(key, m, ev) == "evaluated" for m in sources) else "self-reported"

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
                self._jobs[(e.run, e.attempt, e.phase, e.seed)] = e.out_dir
            if e.phase in EXPERIMENT_PHASES:
                av = self._attempt(e.run, e.attempt)
                # a redo after a crash replaces it
                av.phases = [p for p in av.phases if (p.phase, p.seed) != (e.phase, e.seed)]
                av.phases.append(PhaseView(phase=e.phase, out_dir=e.out_dir, status="unfinished", commit=None,
                                           job_id=e.job_id, seed=e.seed, started_ts=e.ts or None))
                av.phases.sort(key=_phase_order)
        elif isinstance(e, RunFinished):
            self._jobs.pop((e.run, e.attempt, e.phase, e.seed), None)
            if e.phase not in EXPERIMENT_PHASES:
                self.stage(STAGE_OF_PHASE.get(e.phase, self.current_stage or e.phase)).executions.append(e)
            else:
                av = self._attempt(e.run, e.attempt)
                began = next((p.started_ts for p in av.phases if (p.phase, p.seed) == (e.phase, e.seed)), None)
                av.phases = [p for p in av.phases if (p.phase, p.seed) != (e.phase, e.seed)]
                av.phases.append(PhaseView(
                    phase=e.phase, out_dir=e.out_dir, status=e.status, reasons=list(e.reasons), exit_code=e.exit_code,
                    wall_s=e.wall_s, peak_rss_mb=e.peak_rss_mb, metrics=dict(e.metrics),
                    feedback=e.feedback.model_dump(exclude_defaults=True),
                    log_dir=e.log_dir, commit=e.commit, seed=e.seed, evaluation=e.evaluation, started_ts=began,
                ))
                av.phases.sort(key=_phase_order)
        elif getattr(e, "type", None) == "run_aggregated":  # the seeds contract's verdict over a full run's seeds
            self._attempt(e.run, e.attempt).aggregated = e  # type: ignore[attr-defined]
        elif isinstance(e, BaselineRecorded):
            self.baselines[e.seed] = e
        elif isinstance(e, RunRecorded):
            self._run(e.run).recorded = e
        elif isinstance(e, NodeCreated):
            self.nodes[e.run] = e
            self._run(e.run)
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


_LIVE: weakref.WeakKeyDictionary[Journal, tuple[list[Event], int, Event | None, WorkspaceModel]] = \
    weakref.WeakKeyDictionary()
_LIVE_LOCK = threading.Lock()


def live(journal: Journal) -> WorkspaceModel:
    """The model of the journal's events as they are now, kept from call to call: each call folds only the events
    appended since the last one (WorkspaceModel.apply), where WorkspaceModel.build folds the whole journal again
    (what a search that asks after every step pays once per event per step). One model shared by every caller
    of the same journal: read it, never change it. Folded anew when the journal's list of events is not the one
    it folded (replaced, or cut shorter)."""
    with _LIVE_LOCK:
        events = journal.events
        kept = _LIVE.get(journal)
        if kept is None or kept[0] is not events or len(events) < kept[1] or (
                kept[1] and events[kept[1] - 1] is not kept[2]):
            kept = (events, 0, None, WorkspaceModel())
        _, seen, _, model = kept
        for e in events[seen:]:
            model.apply(e)
        _LIVE[journal] = (events, len(events), events[-1] if events else None, model)
        return model


def key_evaluation(key: str, metrics: dict[str, Any], evaluation: str) -> str:
    """Whether one metric of a run was computed by the sealed evaluator: the run was evaluated and the
    metric is one the evaluator overlaid (the run's own value kept as `reported.<key>`). `reported.*`
    keys and keys only the experiment wrote are self-reported."""
    if evaluation != "evaluated" or key.startswith("reported."):
        return "self-reported"
    return "evaluated" if f"reported.{key}" in metrics else "self-reported"

