"""The timeline: what happened in a workspace, the read model (`readmodel.WorkspaceModel`) with what the
workspace's own files add to it (the manifest's key metrics, the baseline's results) and its state
(finished, interrupted, failed, imported).

`show` (terminal) and `report` (HTML) render this and nothing else; their text comes from `formatting`,
and a run's logs and diff from `run_files`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stats
from .events import STAGES, Artifact, ExchangeFailed, Message, NodeCreated, WorkspaceCreated
from .formatting import delta, fmt_num
from .objective import Objective
from .paths import readable
from .readmodel import NOT_APPLICABLE, RunView, StageView, WorkspaceModel, busy_seconds
from .results import flatten
from .search.tree import build_tree
from .template import BASELINE_RUN
from .workspace import Workspace

IMPORT_MANIFEST = "import_manifest.json"  # what `import` writes in .orchestrate/ for logs without a template


@dataclass
class MetricRow:
    """One key metric: the baseline's value and each result's (the mean over ok seeds), the per-seed
    values they come from and whether the sealed evaluator computed them."""

    key: str
    baseline: float | None
    values: dict[int, float | None]  # run -> mean (results only)
    seeds: dict[int, list[float]] = field(default_factory=dict)  # run (0: baseline) -> one value per ok seed
    evaluation: dict[int, str] = field(default_factory=dict)  # run (0: baseline) -> evaluated / self-reported
    reference: int = 0  # the run each difference is taken against (0: the baseline; an ablation's: the best node)

    def summary(self, run: int) -> stats.Summary:
        return stats.summarize(self.seeds.get(run, []))

    def text(self, run: int) -> str:
        """"0.913 ± 0.012" over the run's seeds (the plain number for one seed), "n/a" when missing."""
        return stats.format_summary(self.summary(run))

    def diff(self, run: int) -> stats.Difference | None:
        """The run against the reference run (the baseline unless set; Welch), or None when either lacks the metric."""
        a, b = self.seeds.get(run), self.seeds.get(self.reference)
        return stats.compare(a, b) if a and b else None

    def diff_text(self, run: int) -> str:
        """"+0.006 [-0.002, 0.014]" against the reference, "" when there is no reference value."""
        d = self.diff(run)
        return stats.format_difference(d) if d is not None else ""

    def reference_value(self) -> float | None:
        return self.baseline if self.reference == 0 else self.values.get(self.reference)


@dataclass
class RunMetric:
    """One metric of one run, as text: the baseline's, the run's (None: missing or not a number), the
    difference from the baseline ("+0.006 [-0.002, 0.014]" over seeds, a relative change otherwise) and
    its source (evaluated / self-reported; "" for a number the journal has no seeds of)."""

    key: str
    baseline: str
    value: str | None
    diff: str
    source: str


@dataclass
class AblationView:
    """One ablation run: the best node `of` less the change of node `ablates` (the `step`-th on the path to `of`,
    as the paper's \\ablationtable numbers it), made by the orchestrator, never a search result."""

    run: RunView
    of: int
    ablates: int
    step: int | None  # None: `ablates` is not on the path to `of` (a journal the views cannot place)
    kind: str  # the kind of step that made node `ablates` (draft, improve, debug; "" when unknown)

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def applicable(self) -> bool:
        return self.status != NOT_APPLICABLE

    @property
    def change(self) -> str:
        """The change taken out, as the paper's table names it: "step 1 (draft, run 1)"."""
        step = f"step {self.step}" if self.step is not None else "the change"
        return f"{step} ({self.kind + ', ' if self.kind else ''}run {self.ablates})"

    @property
    def label(self) -> str:
        """"ablation of run 5: without the change of step 1 (draft, run 1)"."""
        return f"ablation of run {self.of}: without the change of {self.change}"


@dataclass
class Timeline:
    """One workspace's story for the views: its runs, stages, messages, key metrics and state."""

    root: Path
    created: WorkspaceCreated
    runs: list[RunView]
    stages: list[StageView]
    messages: list[Message]
    artifacts: list[Artifact]
    key_metrics: list[str]
    baseline: dict[str, Any]  # the baseline's metrics, from the journal (mean over its seeds; {} when unknown)
    results_file: str
    figures: list[str]
    state: str  # finished / interrupted / imported
    state_detail: str
    first_ts: float
    last_ts: float
    model: WorkspaceModel = field(default_factory=WorkspaceModel)
    evaluator: bool = False  # the template has a sealed [evaluate] step; False: every result is self-reported
    objective: Objective | None = None  # what the search scores runs by (the idea's, else the template's)

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
        """Run number n, or None."""
        return next((r for r in self.runs if r.run == n), None)

    def ablation_node(self, run: int) -> NodeCreated | None:
        """The run's NodeCreated when it is an ablation (the best node less one change), else None."""
        return self.model.ablation(run)

    @property
    def search_runs(self) -> list[RunView]:
        """The runs of the search (the experiments stage's), ablations aside."""
        return [r for r in self.runs if self.ablation_node(r.run) is None]

    @property
    def results(self) -> list[RunView]:
        """The search's results: ablation runs are never search results, whatever their verdict."""
        return [r for r in self.search_runs if r.is_result]

    @property
    def tried(self) -> list[RunView]:
        """Search runs that were attempted: not the run number the agent ended the stage at."""
        return [r for r in self.search_runs if r.status != "not run"]

    @property
    def counts(self) -> dict[str, int]:
        """The search's runs by status (ablations are counted apart: ablation_counts)."""
        return _count(self.search_runs)

    @property
    def ablations(self) -> list[AblationView]:
        """Every ablation run, by number, with the step of the path it takes out."""
        if not any(self.ablation_node(r.run) for r in self.runs):
            return []
        tree = build_tree(self.model, None)  # structure only: each node's parent and kind
        out = []
        for r in self.runs:
            node = self.ablation_node(r.run)
            if node is None or node.ablates is None:
                continue
            path = [n.node for n in tree.path_to(node.parent)]
            made = tree.nodes.get(node.ablates)
            out.append(AblationView(run=r, of=node.parent, ablates=node.ablates,
                                    step=path.index(node.ablates) + 1 if node.ablates in path else None,
                                    kind=made.kind if made is not None else ""))
        return out

    @property
    def ablation_counts(self) -> dict[str, int]:
        """The ablation runs by status (ok, not applicable, failed ...)."""
        return _count([a.run for a in self.ablations])

    def ablation_groups(self) -> list[tuple[int, list[AblationView]]]:
        """(the best node, its ablations) for each node that was ablated, by node."""
        groups: dict[int, list[AblationView]] = {}
        for a in self.ablations:
            groups.setdefault(a.of, []).append(a)
        return sorted(groups.items())

    @property
    def attempts(self) -> int:
        """The search's attempts (an ablation's one execution, or none, is not an attempt of the agent's)."""
        return sum(len(r.attempts) for r in self.search_runs)

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
        """Clock time in which an experiment ran (all phases, all attempts; seeds and nodes in flight that ran side
        by side count once, readmodel.busy_seconds); None for an import."""
        return None if self.imported else busy_seconds([p for r in self.runs for a in r.attempts for p in a.phases])

    def metric_rows(self, runs: list[RunView] | None = None, reference: int = 0) -> list[MetricRow]:
        """Key metrics: the baseline's and each of `runs`' (default: the search's results; runs that are not
        results have none), each difference taken against run `reference` (0: the baseline)."""
        runs = [r for r in (self.results if runs is None else runs) if r.is_result]
        keys = list(self.key_metrics)
        if not keys:
            seen: list[str] = []
            for r in self.results or runs:
                seen += [k for k in r.metrics if k not in seen]
            keys = seen[:8]
        rows = []
        for k in keys:
            seeds = {n: self.seed_values(n).get(k, []) for n in [0, *(r.run for r in runs)]}
            seeds = {n: v for n, v in seeds.items() if v}
            if 0 not in seeds and _num(self.baseline.get(k)) is not None:  # a journal from before BaselineRecorded
                seeds[0] = [float(self.baseline[k])]
            values = {r.run: stats.summarize(seeds[r.run]).mean if r.run in seeds else _num(r.metrics.get(k))
                      for r in runs}
            rows.append(MetricRow(key=k, baseline=_num(self.baseline.get(k)), values=values, seeds=seeds,
                                  evaluation={n: self.model.key_evaluation(n, k) for n in seeds}, reference=reference))
        return rows

    def ablation_rows(self, of: int) -> list[MetricRow]:
        """Key metrics of node `of` and of its ablations that are results, each ablation against node `of`."""
        best = self.run(of)
        runs = [best] if best is not None else []
        runs += [a.run for a in self.ablations if a.of == of]
        return self.metric_rows(runs, reference=of)

    def run_metrics(self, run: RunView) -> list[RunMetric]:
        """Every metric of one run (key metrics first) against the baseline, over seeds where the journal has them."""
        metrics, seeds, base_seeds = run.metrics, self.seed_values(run.run), self.seed_values(0)
        out = []
        for k in list(self.key_metrics) + [k for k in metrics if k not in self.key_metrics]:
            base = self.baseline.get(k)
            base_text = stats.format_summary(stats.summarize(base_seeds[k])) if k in base_seeds else fmt_num(base)
            if k not in metrics:
                out.append(RunMetric(k, base_text, None, "", ""))
            elif k in seeds:
                d = stats.format_difference(stats.compare(seeds[k], base_seeds[k])) if k in base_seeds else ""
                out.append(RunMetric(k, base_text, stats.format_summary(stats.summarize(seeds[k])), d,
                                     self.model.key_evaluation(run.run, k)))
            else:
                v = metrics[k]
                out.append(RunMetric(k, base_text, fmt_num(v), delta(_num(v), _num(base)), ""))
        return out

    def seed_values(self, run: int) -> dict[str, list[float]]:
        """metric -> values over the run's ok seeds (run 0: the baseline), from the journal."""
        return self.model.seed_values(run)

    def seeds_line(self, run: int) -> str:
        """"3 seeds", "2 of 3 seeds (at least 2 required)", "1 seed": how many seeds a run's numbers are over."""
        ok, planned = len(self.model.seeds_ok(run)), self.model.seeds_planned(run)
        head = f"{ok} seed{'s' if ok != 1 else ''}" if ok == planned or not planned else f"{ok} of {planned} seeds"
        need = self.model.min_ok(run)
        return head + (f" (at least {need} required)" if need is not None and planned and need < planned else "")

    @property
    def self_reported_only(self) -> bool:
        """No evaluator: every number was written by the experiment itself."""
        return not self.evaluator

    @property
    def evaluation_note(self) -> str:
        """What every view says about where the numbers come from."""
        if self.self_reported_only:
            return ("Every result is self-reported: the template has no sealed evaluator, so these numbers were "
                    "written by the experiment itself and were not recomputed.")
        return ("Numbers marked evaluated were computed by the template's sealed evaluator from the run's saved "
                "artifacts; numbers marked self-reported (reported.* and keys the evaluator does not compute) "
                "were written by the experiment itself.")

    def previous_code_commit(self, run: int) -> str | None:
        """The code the run started from: the previous run's code, else the baseline commit."""
        for r in reversed(self.runs):
            if r.run < run and r.code_commit:
                return r.code_commit
        return None


def _count(runs: list[RunView]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _manifest_bits(ws: Workspace) -> tuple[list[str], str, list[str]]:
    """key_metrics, results_file, figure globs: from the workspace's manifest, or an import's."""
    if ws.template is not None:
        m = ws.template.manifest
        return list(m.key_metrics), m.results_file, list(m.figures)
    path = readable(ws.state, IMPORT_MANIFEST)
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            return list(data.get("key_metrics", [])), data.get("results_file", "final_info.json"), list(data.get("figures", []))
        except (OSError, json.JSONDecodeError):
            pass
    return [], "final_info.json", ["*.png"]


def _objective(created: WorkspaceCreated, ws: Workspace) -> Objective | None:
    """The objective runs are scored by: the one a tree search recorded it ran under (options), else the idea's
    `objective`, else the template's `[objective]` (None for an import, which has no template)."""
    for raw in (created.options.get("objective"), created.idea.get("objective")):
        if isinstance(raw, dict):
            try:
                return Objective.model_validate(raw)
            except ValueError:
                continue
    return ws.template.manifest.objective if ws.template is not None else None


def _baseline(model: WorkspaceModel, root: Path, results_file: str) -> dict[str, Any]:
    """The baseline's metrics as the journal recorded them: the mean over its seeds for numbers. A journal
    from before BaselineRecorded (no run of it is still going) has only run_0's file, read without links."""
    base = model.baseline
    if base is None:
        path = readable(root, f"{BASELINE_RUN}/{results_file}")
        try:
            data = json.loads(path.read_text()) if path is not None and path.is_file() else None
        except (OSError, json.JSONDecodeError):
            data = None
        return flatten(data) if isinstance(data, dict) else {}
    out = dict(base.metrics)
    out.update({k: stats.summarize(v).mean for k, v in model.seed_values(0).items()})
    return out


def build(ws: Workspace | Path) -> Timeline:
    """The timeline of one workspace. Works on finished, failed, interrupted and imported workspaces."""
    if not isinstance(ws, Workspace):
        ws = Workspace(Path(ws))
    events = ws.journal.events
    model = WorkspaceModel.build(events, ws.root)
    created = model.created
    assert created is not None
    stages, runs = model.stages, model.runs
    key_metrics, results_file, figures = _manifest_bits(ws)
    first_ts = created.ts
    last_ts = max((e.ts for e in events), default=first_ts)
    state, detail = _state(created, events, stages, runs)
    if state in ("interrupted", "not started") and (pid := ws.running_pid()) is not None:
        state, detail = "running", f"running now (pid {pid})" if pid > 0 else "running now"
    if ws.template is not None and ws.template.manifest.unverified:
        detail += " — UNVERIFIED: the template checks nothing (unverified = true), so any results file counted"
    ordered = [stages[s] for s in STAGES if s in stages] + [v for k, v in stages.items() if k not in STAGES]
    return Timeline(
        root=ws.root, created=created, runs=model.run_list(), stages=ordered, messages=model.messages,
        artifacts=model.artifacts, key_metrics=key_metrics, baseline=_baseline(model, ws.root, results_file),
        results_file=results_file, figures=figures, state=state, state_detail=detail, first_ts=first_ts, last_ts=last_ts,
        model=model, evaluator=ws.template is not None and ws.template.manifest.evaluate is not None,
        objective=_objective(created, ws),
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
    last_msg = next((e for e in reversed(events) if isinstance(e, (Message, ExchangeFailed))), None)
    if isinstance(last_msg, ExchangeFailed):  # the model call that ended it, in show's words
        last_msg = Message(level="error", text=last_msg.describe(), stage=last_msg.stage)
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
