"""Validated runs, and `results.tex`: a `\\setresult` for every numeric metric of every run that is a
result (mean ± the half-width of its 95% t interval over the run's seeds, tex.stat_macros), a
`\\setdiff` for each key metric against the baseline (the difference with its 95% Welch interval), a
`\\setsource` for every self-reported number, the results table and the figures' include lines.

Every number comes from the journal (WorkspaceModel.seed_values: the RunFinished metrics of a run's ok
seeds, the baseline's BaselineRecorded events), never from run_0/ or run_i/ on disk, which a later run
could have rewritten. Only runs recorded `ok` enter; `run0` is the template's baseline. Failed and
degenerate runs are kept apart (`RunData.status`) so the integrity check can tell when the prose
presents one of them as a result; an ablation whose change no longer comes out of the best node's code
(readmodel.not_applicable) is kept apart as "not applicable", never as a failed run. Ablations are
never search results: the results table and the counts leave them out, \ablationtable holds them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .. import stats
from ..objective import Objective
from ..paths import readable, writable
from ..readmodel import NOT_APPLICABLE, WorkspaceModel, not_applicable
from ..results import flatten
from ..search.tree import build_tree
from . import tex as texmod

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")
_SAFE_FIGURE = re.compile(r"^[A-Za-z0-9_.\-/]+$")


class RunData(BaseModel):
    """One run's numbers as the paper may use them (or, for a run that is not a result, as the integrity
    check compares the prose against)."""

    run: int
    status: str  # ok, failed, degenerate, ..., "not applicable" (an ablation with nothing run; "ok" for the baseline)
    values: dict[str, float | int] = Field(default_factory=dict)  # flattened numeric results (the mean over seeds)
    baseline: bool = False
    seeds: dict[str, list[float]] = Field(default_factory=dict)  # metric -> one value per ok seed ({}: values is one seed)
    self_reported: list[str] = Field(default_factory=list)  # metrics the sealed evaluator did not compute
    kind: str = ""  # its search node's kind: draft, improve, debug or ablation ("" for the baseline)
    parent: int | None = None  # the node it was made from (0: the template; an ablation's: the best node)
    ablates: int | None = None  # an ablation: the node whose change it takes out of the best node
    reference: int | None = None  # what its \\stepdiff compares it with: its nearest ancestor that is a result (0: the
    #                               baseline, when none is: a draft, or a debug of a failed draft); an ablation's best node

    @property
    def is_ablation(self) -> bool:
        return self.kind == "ablation"

    @property
    def label(self) -> str:
        return f"run{self.run}"

    @property
    def title(self) -> str:
        return "Baseline" if self.baseline else f"Run {self.run}"

    @property
    def n_seeds(self) -> int:
        return max((len(v) for v in self.seeds.values()), default=1)


def _numeric(flat: dict[str, Any]) -> dict[str, float | int]:
    return {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _load(root: Path, rel: str) -> dict[str, Any] | None:
    path = readable(root, rel)
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _results_file(ws) -> str:
    from ..errors import WorkspaceError

    try:
        return ws.manifest.results_file
    except WorkspaceError:  # an imported workspace has no manifest; AI Scientist's name is the default
        return "final_info.json"


def has_evaluator(ws) -> bool:
    from ..errors import WorkspaceError

    try:
        return ws.manifest.evaluate is not None
    except WorkspaceError:
        return False


def _from_model(model: WorkspaceModel, run: int, status: str, *, baseline: bool = False) -> RunData:
    seeds = model.seed_values(run)
    return RunData(run=run, status=status, baseline=baseline, seeds=seeds,
                   values={k: float(stats.summarize(v).mean) for k, v in seeds.items() if stats.summarize(v).mean is not None},
                   self_reported=sorted(k for k in seeds if model.key_evaluation(run, k) != "evaluated"))


def collect_runs(ws) -> tuple[list[RunData], list[RunData]]:
    """(results, not results): the baseline and the ok runs, over their seeds, from the journal; the
    failed and degenerate runs with whatever numbers their last full attempt produced (for the integrity
    check only: the journal's metrics, else the attempt's kept output folder, read without links)."""
    results_file = _results_file(ws)
    model = WorkspaceModel.build(ws.journal.events)
    ok: list[RunData] = []
    if model.baseline is not None:
        ok.append(_from_model(model, 0, "ok", baseline=True))
    else:  # a journal from before BaselineRecorded: run_0's file is all there is
        base = _load(ws.root, f"run_0/{results_file}")
        if base is not None:
            ok.append(RunData(run=0, status="ok", values=_numeric(flatten(base)), baseline=True,
                              self_reported=sorted(_numeric(flatten(base)))))
    bad: list[RunData] = []
    for run, rec in model.recorded().items():
        if rec.status == "ok":
            data = _from_model(model, run, "ok")
            if not data.values and rec.metrics:  # a journal from before seeds: the recorded metrics
                flat = _numeric(rec.metrics)
                data = RunData(run=run, status="ok", values=flat, seeds={k: [float(v)] for k, v in flat.items()},
                               self_reported=sorted(flat) if rec.evaluation != "evaluated" else [])
            ok.append(data)
            continue
        values: dict[str, float | int] = {}
        fulls = [(a.attempt, p) for a in model.runs[run].attempts for p in a.phases if p.phase == "full" and p.finished]
        for attempt, fin in fulls:
            if fin.metrics:
                values = _numeric(fin.metrics)
            moved = ws.attempt_dir(run, attempt) / "out" / results_file
            data_ = _load(ws.root, str(moved)) if moved.is_relative_to(ws.root) else None
            if data_ is not None:
                values = _numeric(flatten(data_))
        bad.append(RunData(run=run, status=NOT_APPLICABLE if not_applicable(rec) else rec.status, values=values))
    tree = build_tree(model, None)  # structure only: each run's node kind, parent and what an ablation takes out
    results = {r.run for r in ok}
    for r in [*ok, *bad]:
        node = tree.nodes.get(r.run)
        if node is not None and not r.baseline:
            r.kind, r.parent, r.ablates = node.kind, node.parent, node.ablates
            r.reference = node.parent if node.kind == "ablation" else _result_ancestor(tree, r.run, results)
    return ok, bad


def search_results(runs: list[RunData]) -> list[RunData]:
    """The search's results among `runs` (collect_runs' first list): neither the baseline nor an ablation."""
    return [r for r in runs if not r.baseline and not r.is_ablation]


def _result_ancestor(tree, run: int, results: set[int]) -> int:
    """The nearest ancestor of node `run` that is a result; 0 (the baseline) when none is."""
    node, seen = tree.nodes[run].parent, {run}
    while node in tree.nodes and node not in seen:
        if node in results:
            return node
        seen.add(node)
        node = tree.nodes[node].parent
    return 0


def references_of(runs: list[RunData]) -> dict[str, str]:
    """Run label -> the label of the run its \\stepdiff is taken against: an ablation's best node, a search
    node's nearest ancestor that is a result (run0, the baseline, for a draft or when no ancestor is one)."""
    have = {r.run for r in runs}
    return {r.label: f"run{r.reference}" for r in runs
            if not r.baseline and r.reference is not None and r.reference in have}


def format_value(v: float) -> str:
    """A number as the paper prints it: integers whole, floats to 4 significant digits, tiny or huge ones
    as m x 10^e; negative numbers in math mode so the minus is a minus."""
    if isinstance(v, int):
        s = str(v)
        return f"\\ensuremath{{{s}}}" if v < 0 else s
    if not math.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        mant, exp = f"{v:.3e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        return f"\\ensuremath{{{mant}\\times 10^{{{int(exp)}}}}}"
    s = f"{v:.4g}"
    if "e" in s:  # .4g of e.g. 12345.6 -> 1.235e+04
        s = f"{v:.0f}"
    return f"\\ensuremath{{{s}}}" if v < 0 else s


def escape_tt(key: str) -> str:
    """A metric name made safe for \texttt."""
    return key.replace("\\", "").replace("_", "\\_").replace("&", "\\&").replace("%", "\\%").replace("#", "\\#")


def figure_name(rel: str) -> str:
    """The label name of a figure file: its stem."""
    return Path(rel).stem


def _seeds(r: RunData) -> dict[str, list[float]]:
    return r.seeds or {k: [float(v)] for k, v in r.values.items()}


def provenance(runs: list[RunData], evaluator: bool) -> str:
    """The sentence the table's caption (and \\resultsprovenance) gives on where the numbers come from."""
    if not evaluator:
        return ("Every number here is self-reported: the template has no sealed evaluator, so the experiment "
                "wrote its own results and nothing recomputed them.")
    if any(r.self_reported for r in runs):
        return ("Numbers were computed by the template's sealed evaluator from each run's saved artifacts, "
                "except those marked \\textsuperscript{\\dag}, which the experiment reported itself.")
    return "Every number was computed by the template's sealed evaluator from each run's saved artifacts."


def results_tex(runs: list[RunData], key_metrics: list[str], figures: list[str], *, source: str = "",
                aspects: dict[str, float] | None = None, evaluator: bool = False,
                search: SearchPaper | None = None) -> str:
    """The generated file the paper inputs. Deterministic: the same runs give the same bytes."""
    example = key_metrics[0] if key_metrics else "metric"
    n_seeds = sorted({r.n_seeds for r in runs})
    out = [
        "% Generated by orchestrate from validated runs only. Do not edit: it is regenerated.",
        f"% Source: {source}" if source else "% Source: the journal's validated metrics of runs recorded ok",
        "% In the prose write \\result{<run>}{<metric>}, e.g. \\result{run1}{" + example + "}: mean \\pm the half-width",
        "% of its 95% t interval over the run's seeds; \\diff{<run>}{<metric>}: the difference from the baseline",
        "% with its 95% Welch interval. Claim a difference only when that interval excludes 0.",
        "% run0 is the template's baseline. Never type a number that is here.",
        "% Runs: " + (", ".join(f"{r.label} ({r.title}{', ablation' if r.is_ablation else ''}, "
                                f"{r.n_seeds} seed{'s' if r.n_seeds != 1 else ''})" for r in runs)
                      or "none"),
        "% Self-reported (not computed by the sealed evaluator): "
        + ("every number (the template has no evaluator)" if not evaluator else
           "; ".join(f"{r.label}: {', '.join(r.self_reported)}" for r in runs if r.self_reported) or "none"),
        "",
    ]
    seeds = {r.label: _seeds(r) for r in runs}
    keys = [k for k in key_metrics if any(k in r.values for r in runs) and _SAFE_KEY.match(k)]
    out += texmod.stat_macros(seeds, baseline="run0", keys=keys if any(r.baseline for r in runs) else ())
    if evaluator:  # \result prints a dagger after a self-reported number
        out += [f"\\setsource{{{r.label}}}{{{k}}}{{self-reported}}" for r in runs for k in r.self_reported if _SAFE_KEY.match(k)]
    out.append("")
    deltas = changes(runs, keys)
    if deltas:
        out.append("% Relative change of the means against the baseline, in percent: \\change{<run>}{<metric>}")
        out += [f"\\setchange{{{label}}}{{{key}}}{{{format_value(round(v, 1))}}}" for (label, key), v in deltas.items()]
        out.append("")
    note = provenance(runs, evaluator)
    out += [f"\\newcommand{{\\resultsprovenance}}{{{note}}}", ""]
    over = (f"{n_seeds[0]} seeds per run" if len(n_seeds) == 1 else  # a run with fewer ok seeds (min_ok) says so
            ", ".join(f"{r.n_seeds} seed{'s' if r.n_seeds != 1 else ''} for {r.title.lower()}" for r in runs))
    seeds_note = "one seed per run" if n_seeds == [1] else f"mean \\(\\pm\\) the half-width of its 95\\% t interval over {over}"
    out += _table([r for r in runs if not r.is_ablation], keys, seeds_note)
    out += search_tables(runs, keys, seeds, search)
    out += _figures(figures, aspects or {})
    return "\n".join(out) + "\n"


def changes(runs: list[RunData], keys: list[str]) -> dict[tuple[str, str], float]:
    """(run label, metric) -> percent change of each run's key metric against the baseline's."""
    base = next((r for r in runs if r.baseline), None)
    out: dict[tuple[str, str], float] = {}
    if base is None:
        return out
    for r in runs:
        if r.baseline:
            continue
        for k in keys:
            b, v = base.values.get(k), r.values.get(k)
            if isinstance(b, (int, float)) and isinstance(v, (int, float)) and b != 0 and math.isfinite(b) and math.isfinite(v):
                out[(r.label, k)] = (v - b) / abs(b) * 100.0
    return out


def _table(runs: list[RunData], keys: list[str], seeds_note: str = "") -> list[str]:
    if not runs or not keys:
        return ["\\newcommand{\\resultstable}{}", ""]
    cols = "l" + "r" * len(runs)
    head = " & ".join(["Metric", *(r.title for r in runs)]) + " \\\\"
    rows = []
    for k in keys:
        cells = [f"\\texttt{{{escape_tt(k)}}}"]
        cells += [f"\\result{{{r.label}}}{{{k}}}" if k in r.values else "--" for r in runs]
        rows.append(" & ".join(cells) + " \\\\")
    n_ok = sum(1 for r in runs if not r.baseline)
    return [
        "\\newcommand{\\resultstable}{%",
        "\\begin{table}[t]",
        "\\centering\\small",
        f"\\caption{{Key metrics of the baseline and the {n_ok} validated run(s), {seeds_note}; failed or degenerate "
        "runs are not results and are not shown. \\resultsprovenance}",
        "\\label{tab:results}",
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%",
        f"\\begin{{tabular}}{{{cols}}}",
        "\\toprule",
        head,
        "\\midrule",
        *rows,
        "\\bottomrule",
        "\\end{tabular}}",
        "\\end{table}}",
        "",
    ]


class PathStep(BaseModel):
    """One node on the path that led to the best node: what kind of step made it, from which node, its verdict."""

    run: int
    kind: str
    parent: int
    status: str
    plan: str = ""  # the agent's plan (for the writeup prompt: never typeset, it is the agent's words)


class AblationRow(BaseModel):
    """One ablation of the best node: the run that takes node `ablates`'s change out, and its verdict."""

    run: int
    ablates: int
    status: str
    applicable: bool = True
    reason: str = ""


class SearchPaper(BaseModel):
    """What the paper gets from the tree: the best node, the path that led there and its ablations, all
    scored by one metric (the objective's; without an objective, the first key metric)."""

    best: int
    metric: str
    goal: str | None = None
    objective: str = ""  # Objective.describe(), "" when none is declared
    path: list[PathStep] = Field(default_factory=list)
    ablations: list[AblationRow] = Field(default_factory=list)


def search_paper(model: WorkspaceModel, objective: Objective | None, key_metrics: list[str],
                 goals: dict[str, str] | None = None) -> SearchPaper | None:
    """The search's part of the paper, or None for a workspace that has neither tree nodes nor ablations (a
    linear run's paper stays as it was) or no best node."""
    if not model.nodes:
        return None
    tree = build_tree(model, objective)
    best = tree.best()
    metric = objective.metric if objective is not None else (key_metrics[0] if key_metrics else None)
    if best is None or metric is None:
        return None
    path = [PathStep(run=n.node, kind=n.kind, parent=n.parent, status=n.status, plan=n.plan) for n in tree.path_to(best.node)]
    rows = [AblationRow(run=n.node, ablates=n.ablates, status=n.status, reason=(n.reasons or [""])[0],
                        applicable=not not_applicable(model.runs[n.node].recorded))
            for n in tree.ablations() if n.parent == best.node and n.ablates is not None]
    return SearchPaper(best=best.node, metric=metric, goal=objective.goal if objective is not None else (goals or {}).get(metric),
                       objective=objective.describe() if objective is not None else "", path=path, ablations=rows)


def step_macros(seeds: stats.Seeds, references: dict[str, str], keys: list[str]) -> list[str]:
    """A \\setstepdiff for each key of every run that has a reference (references_of): the difference of its
    mean from the reference's with the 95% Welch interval, as \\setdiff prints it against the baseline."""
    out = []
    for run in sorted(references):
        ref = references[run]
        if run not in seeds or ref not in seeds or not _SAFE_KEY.match(run):
            continue
        for key in keys:
            d = stats.against(seeds, run, ref, key) if _SAFE_KEY.match(key) else None
            if d is not None and d.diff is not None:
                out.append(f"\\setstepdiff{{{run}}}{{{key}}}{{{texmod.latex_number(stats.format_difference(d))}}}")
    return out


def search_tables(runs: list[RunData], keys: list[str], seeds: dict[str, dict[str, list[float]]],
                  search: SearchPaper | None) -> list[str]:
    """\\setstepdiff lines, \\searchpathtable (label tab:path) and \\ablationtable (label tab:ablations);
    both empty without a search (the paper template places them after the results table)."""
    if search is None:
        return ["\\newcommand{\\searchpathtable}{}", "\\newcommand{\\ablationtable}{}", ""]
    m = search.metric
    have = {r.run: r for r in runs}
    refs = references_of(runs)
    out = ["% Each search step's and ablation's difference from the run it was made from (a step: its parent node;",
           "% an ablation: the best node), with its 95% Welch interval: \\stepdiff{<run>}{<metric>}"]
    out += step_macros(seeds, refs, [*keys, *([m] if m not in keys else [])])
    out.append("")
    goal = {"max": ", higher is better", "min": ", lower is better"}.get(search.goal or "", "")
    name = f"\\texttt{{{escape_tt(m)}}}"

    def value(run: int) -> str:
        r = have.get(run)
        return f"\\result{{run{run}}}{{{m}}}" if r is not None and m in r.values else "--"

    def step(run: int) -> str:
        return f"\\stepdiff{{run{run}}}{{{m}}}" if f"run{run}" in refs and m in have[run].values else "--"

    rows = []
    step_of = {p.run: i for i, p in enumerate(search.path, 1)}
    for i, p in enumerate(search.path, 1):
        made = "the template" if p.parent == 0 else f"step {step_of.get(p.parent, '?')}"
        verdict = value(p.run) if p.run in have else f"not a result ({escape_tt(p.status)})"
        rows.append(f"{i} & Run {p.run} & {escape_tt(p.kind)} from {made} & {verdict} & {step(p.run)} \\\\")
    best_step = len(search.path)
    out += [
        "\\newcommand{\\searchpathtable}{%",
        "\\begin{table}[t]",
        "\\centering\\small",
        f"\\caption{{The path of the search to its best node, run {search.best}"
        + (f" (objective: {escape_tt(search.objective)})" if search.objective else "")
        + f": each step, the kind of step that made it, {name}{goal} over its seeds, and its difference from the "
          "nearest step before it that is a result (from the baseline when none is) with its 95\\% Welch interval. "
          "\\resultsprovenance}",
        "\\label{tab:path}",
        "\\begin{tabular}{rllrr}",
        "\\toprule",
        f"Step & Node & Kind & {name} & $\\Delta$ vs.\\ previous \\\\",
        "\\midrule",
        *rows,
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}}",
        "",
    ]
    if not search.ablations:
        return [*out, "\\newcommand{\\ablationtable}{}", ""]
    arows = [f"none (the best node) & Run {search.best} & {value(search.best)} & -- \\\\"]
    for a in search.ablations:
        what = f"step {step_of.get(a.ablates, '?')} ({escape_tt(next((p.kind for p in search.path if p.run == a.ablates), ''))})"
        if not a.applicable:
            arows.append(f"{what} & -- & not applicable & -- \\\\")
        elif a.run in have:
            arows.append(f"{what} & Run {a.run} & {value(a.run)} & {step(a.run)} \\\\")
        else:
            arows.append(f"{what} & Run {a.run} & not a result ({escape_tt(a.status)}) & -- \\\\")
    out += [
        "\\newcommand{\\ablationtable}{%",
        "\\begin{table}[t]",
        "\\centering\\small",
        f"\\caption{{Ablations of the best node, run {search.best} (step {best_step} of Table~\\ref{{tab:path}}): each "
        "change on its path taken out of its code in turn, each variant run as its own run over its seeds; "
        f"{name}{goal}, and the difference from run {search.best} with its 95\\% Welch interval. A change that no "
        "longer comes out of the best node's code (a later step rewrote its lines) is not applicable. "
        "Ablation runs are not search results. \\resultsprovenance}",
        "\\label{tab:ablations}",
        "\\begin{tabular}{llrr}",
        "\\toprule",
        f"Change taken out & Run & {name} & $\\Delta$ vs.\\ run {search.best} \\\\",
        "\\midrule",
        *arows,
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}}",
        "",
    ]
    return out


def _figures(figures: list[str], aspects: dict[str, float]) -> list[str]:
    out = ["\\newcommand{\\resultfigures}{%"]
    for rel in figures:
        if not _SAFE_FIGURE.match(rel):
            continue
        name = figure_name(rel)
        width = "\\linewidth" if aspects.get(rel, 1.4) > 1.8 else "0.75\\linewidth"  # wide panels get the full width
        out += [
            "\\begin{figure}[t]",
            "\\centering",
            f"\\includegraphics[width={width}]{{{rel}}}",
            f"\\caption{{\\figurecaption{{{name}}}{{{escape_tt(rel)}, made by plot.py from the validated runs.}}}}",
            f"\\label{{fig:{name}}}",
            "\\end{figure}",
        ]
    out += ["}", ""]
    return out


def _aspects(root: Path, figures: list[str]) -> dict[str, float]:
    from PIL import Image

    out = {}
    for rel in figures:
        try:
            with Image.open(root / rel) as im:
                out[rel] = im.width / max(im.height, 1)
        except (OSError, ValueError):
            continue
    return out


def generate(ws, figures: list[str], objective: Objective | None = None) -> tuple[str, list[RunData], list[RunData]]:
    """Write latex/results.tex in the workspace; returns (its text, result runs, non-result runs)."""
    ok, bad = collect_runs(ws)
    runs = ", ".join(r.label for r in search_results(ok)) or "none"
    ablations = ", ".join(r.label for r in ok if r.is_ablation)
    search = search_paper(WorkspaceModel.build(ws.journal.events), objective, ws.manifest.key_metrics, dict(ws.manifest.goals))
    text = results_tex(ok, ws.manifest.key_metrics, figures, aspects=_aspects(ws.root, figures), evaluator=has_evaluator(ws),
                       source=f"the journal's metrics of runs recorded ok: {runs}"
                              + (f"; ablations (not search results): {ablations}" if ablations else "") + "; run0 = baseline",
                       search=search)
    (ws.root / "latex").mkdir(parents=True, exist_ok=True)
    writable(ws.root, "latex/results.tex").write_text(text)
    return text, ok, bad
