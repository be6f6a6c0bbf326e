"""The timeline: what happened in a workspace, as one read model built from its journal.

`show` (terminal) and `report` (HTML) render this and nothing else. Events are the only source of
what happened; the workspace's own files add what the journal points at (the manifest's key metrics,
the baseline's results, logs named by `RunFinished.log_dir`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .events import (
    STAGES,
    Artifact,
    EditApplied,
    Exchange,
    Message,
    RunFinished,
    RunRecorded,
    RunStarted,
    StageFinished,
    StageStarted,
    WorkspaceCreated,
)
from .results import flatten
from .workspace import Workspace

IMPORT_MANIFEST = "import_manifest.json"  # what `import` writes in .orchestrate/ for logs without a template


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


@dataclass
class MetricRow:
    key: str
    baseline: float | None
    values: dict[int, float | None]  # run -> value (results only)


@dataclass
class Timeline:
    root: Path
    created: WorkspaceCreated
    runs: list[RunView]
    stages: list[StageView]
    messages: list[Message]
    artifacts: list[Artifact]
    key_metrics: list[str]
    baseline: dict[str, Any]  # flattened baseline results ({} when unknown)
    results_file: str
    figures: list[str]
    state: str  # finished / interrupted / imported
    state_detail: str
    first_ts: float
    last_ts: float

    # -- what the views need ------------------------------------------------------------------
    @property
    def idea(self) -> dict[str, Any]:
        return self.created.idea

    @property
    def title(self) -> str:
        return str(self.idea.get("title") or self.idea.get("name") or self.root.name)

    @property
    def imported(self) -> bool:
        return bool(self.created.imported_from)

    def run(self, n: int) -> RunView | None:
        return next((r for r in self.runs if r.run == n), None)

    @property
    def results(self) -> list[RunView]:
        return [r for r in self.runs if r.is_result]

    @property
    def tried(self) -> list[RunView]:
        """Runs that were attempted: not the run number the agent ended the stage at."""
        return [r for r in self.runs if r.status != "not run"]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.runs:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def attempts(self) -> int:
        return sum(len(r.attempts) for r in self.runs)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.stages)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.stages)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.stages)

    @property
    def wall_s(self) -> float | None:
        """Clock time from the workspace's creation to its last event (None for an import: not measured)."""
        return None if self.imported else max(0.0, self.last_ts - self.first_ts)

    @property
    def run_wall_s(self) -> float | None:
        """Time spent running experiments (all phases, all attempts); None for an import."""
        return None if self.imported else sum(r.wall_s for r in self.runs)

    def metric_rows(self) -> list[MetricRow]:
        """Key metrics: the baseline's and each result's (runs that are not results have none)."""
        keys = list(self.key_metrics)
        if not keys:
            seen: list[str] = []
            for r in self.results:
                seen += [k for k in r.metrics if k not in seen]
            keys = seen[:8]
        rows = []
        for k in keys:
            base = self.baseline.get(k)
            values = {r.run: _num(r.metrics.get(k)) for r in self.results}
            rows.append(MetricRow(key=k, baseline=_num(base), values=values))
        return rows

    def previous_code_commit(self, run: int) -> str | None:
        """The code the run started from: the previous run's code, else the baseline commit."""
        for r in reversed(self.runs):
            if r.run < run and r.code_commit:
                return r.code_commit
        return None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _feedback(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {"stderr_tail": str(data)}
    except json.JSONDecodeError:
        return {"stderr_tail": text}


def _manifest_bits(ws: Workspace) -> tuple[list[str], str, list[str]]:
    """key_metrics, results_file, figure globs: from the workspace's manifest, or an import's."""
    if ws.template is not None:
        m = ws.template.manifest
        return list(m.key_metrics), m.results_file, list(m.figures)
    path = ws.state / IMPORT_MANIFEST
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            return list(data.get("key_metrics", [])), data.get("results_file", "final_info.json"), list(data.get("figures", []))
        except (OSError, json.JSONDecodeError):
            pass
    return [], "final_info.json", ["*.png"]


def _baseline(root: Path, results_file: str) -> dict[str, Any]:
    path = root / "run_0" / results_file
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return flatten(data) if isinstance(data, dict) else {}


def build(ws: Workspace | Path) -> Timeline:
    """The timeline of one workspace. Works on finished, failed, interrupted and imported workspaces."""
    if not isinstance(ws, Workspace):
        ws = Workspace(Path(ws))
    events = ws.journal.events
    if not events or not isinstance(events[0], WorkspaceCreated):
        from .errors import WorkspaceError

        raise WorkspaceError(ws.root, "the journal does not start with workspace_created")
    created = events[0]
    runs: dict[int, RunView] = {}
    stages: dict[str, StageView] = {}
    messages: list[Message] = []
    artifacts: list[Artifact] = []
    current_stage: str | None = None

    def run_view(n: int) -> RunView:
        if n not in runs:
            runs[n] = RunView(run=n)
        return runs[n]

    def attempt_view(n: int, a: int) -> AttemptView:
        rv = run_view(n)
        for av in rv.attempts:
            if av.attempt == a:
                return av
        av = AttemptView(run=n, attempt=a)
        rv.attempts.append(av)
        rv.attempts.sort(key=lambda x: x.attempt)
        return av

    def stage_view(name: str) -> StageView:
        if name not in stages:
            stages[name] = StageView(name=name, status="not started")
        return stages[name]

    for e in events:
        if current_stage and e.ts:
            stage_view(current_stage).last_ts = e.ts
        if isinstance(e, StageStarted):
            sv = stage_view(e.stage)
            sv.status = "running"
            if sv.started_ts is None:
                sv.started_ts = e.ts
            current_stage = e.stage
        elif isinstance(e, StageFinished):
            sv = stage_view(e.stage)
            sv.status, sv.summary, sv.finished_ts = e.status, e.summary, e.ts
            if sv.started_ts is None:
                sv.started_ts = e.ts
            current_stage = None
        elif isinstance(e, Exchange):
            sv = stage_view(e.stage)
            sv.exchanges += 1
            sv.prompt_tokens += e.prompt_tokens
            sv.completion_tokens += e.completion_tokens
            sv.cost_usd += e.cost_usd
            if e.run is not None and e.stage == "experiments":
                attempt_view(e.run, e.attempt or 1).exchanges.append(e)
        elif isinstance(e, EditApplied):
            if e.run is not None and e.stage == "experiments":
                attempt_view(e.run, e.attempt or 1).edits.append(e)
        elif isinstance(e, RunStarted):
            if e.phase in ("smoke", "full"):
                av = attempt_view(e.run, e.attempt)
                av.phases = [p for p in av.phases if p.phase != e.phase]  # a redo after a crash replaces it
                av.phases.append(PhaseView(phase=e.phase, out_dir=e.out_dir, status="unfinished", commit=None))
        elif isinstance(e, RunFinished):
            if e.phase not in ("smoke", "full"):
                stage_view({"plot": "plots", "latex": "compile", "chktex": "compile"}.get(e.phase, current_stage or e.phase)
                           ).executions.append(e)
            if e.phase in ("smoke", "full"):
                av = attempt_view(e.run, e.attempt)
                av.phases = [p for p in av.phases if p.phase != e.phase]
                av.phases.append(PhaseView(
                    phase=e.phase, out_dir=e.out_dir, status=e.status, reasons=list(e.reasons), exit_code=e.exit_code,
                    wall_s=e.wall_s, peak_rss_mb=e.peak_rss_mb, metrics=dict(e.metrics), feedback=_feedback(e.feedback),
                    log_dir=e.log_dir, commit=e.commit,
                ))
                av.phases.sort(key=lambda p: 0 if p.phase == "smoke" else 1)
        elif isinstance(e, RunRecorded):
            run_view(e.run).recorded = e
        elif isinstance(e, Message):
            messages.append(e)
            if e.stage:
                stage_view(e.stage).messages.append(e)
        elif isinstance(e, Artifact):
            artifacts.append(e)
            stage_view(e.stage).artifacts.append(e)

    key_metrics, results_file, figures = _manifest_bits(ws)
    first_ts = created.ts
    last_ts = max((e.ts for e in events), default=first_ts)
    state, detail = _state(created, events, stages, runs)
    ordered = [stages[s] for s in STAGES if s in stages] + [v for k, v in stages.items() if k not in STAGES]
    return Timeline(
        root=ws.root, created=created, runs=[runs[k] for k in sorted(runs)], stages=ordered, messages=messages,
        artifacts=artifacts, key_metrics=key_metrics, baseline=_baseline(ws.root, results_file),
        results_file=results_file, figures=figures, state=state, state_detail=detail, first_ts=first_ts, last_ts=last_ts,
    )


def _state(created: WorkspaceCreated, events: list, stages: dict[str, StageView], runs: dict[int, RunView]) -> tuple[str, str]:
    if created.imported_from:
        for s in stages.values():
            if s.status == "running":
                s.status = "log ends"
            s.started_ts = s.finished_ts = s.last_ts = None  # import time, not the log's: not a duration
        return "imported", f"read-only, imported from {created.imported_from}"
    open_stages = [s.name for s in stages.values() if s.status == "running"]
    open_runs = [(a.run, a.attempt, p.phase) for r in runs.values() for a in r.attempts for p in a.phases if not p.finished]
    last_msg = next((e for e in reversed(events) if isinstance(e, Message)), None)
    if open_runs:
        r, a, ph = open_runs[-1]
        return "interrupted", f"stopped during run {r} attempt {a} ({ph} run); continue with `orchestrate resume`"
    if open_stages:
        why = f": {last_msg.text}" if last_msg is not None and last_msg.level != "info" else ""
        return "interrupted", f"stopped in stage {open_stages[-1]}{why}; continue with `orchestrate resume`"
    if not stages:
        return "not started", "the workspace was made but no stage started; continue with `orchestrate resume`"
    failed = [s.name for s in stages.values() if s.status == "failed"]
    if failed:
        return "failed", f"stage {failed[0]} failed"
    return "finished", ", ".join(f"{s.name} {s.status}" for s in stages.values()) or "no stage ran"


def fmt_num(v: Any) -> str:
    """Numbers for people: 4 significant digits, n/a for missing."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def fmt_wall(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def fmt_tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else f"{n:,}"


def delta(value: float | None, base: float | None) -> str:
    """Relative change against the baseline, for a table cell."""
    if value is None or base is None:
        return ""
    if base == 0:
        return "" if value == 0 else f"{value - base:+.3g}"
    return f"{(value - base) / abs(base) * 100:+.1f}%"


def log_tail(root: Path, log_dir: str, name: str, lines: int = 20) -> str | None:
    """The last lines of a run's stdout.txt / stderr.txt (None when the file is not there)."""
    if not log_dir:
        return None
    path = root / log_dir / name
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64_000))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def run_diff(tl: Timeline, run: RunView, ws: Workspace | None = None, path: str = "experiment.py") -> str:
    """The run's change to `path` against the previous run's code: from git when the workspace has its
    repository, else the run's recorded edit diffs."""
    if ws is not None and (ws.root / ".git").exists():
        new = run.code_commit
        old = tl.previous_code_commit(run.run)
        if new:
            if old is None:
                root_commit = ws.git("rev-list", "--max-parents=0", "HEAD", check=False).split()
                old = root_commit[0] if root_commit else None
            if old:
                d = ws.diff(old, new, path)
                if d.strip() or old != new:
                    return d
    parts = [e.diff for e in run.edits if e.diff and (path in e.files or not e.files or path in e.diff)]
    return "\n".join(p.rstrip("\n") for p in parts)
