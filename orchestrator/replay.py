"""Replay: re-execute a workspace (or a transcript) with its recorded replies in a fresh
workspace, through the same aider edit path, and compare every run's metrics with the recording."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from .agents.replay import export_transcript, load_transcript
from .drive import drive
from .errors import InputError, TranscriptError
from .events import EditApplied, Exchange, NodeCreated, RunFinished, RunRecorded
from .formatting import fmt_num
from .pipeline import RunOptions, start
from .readmodel import WorkspaceModel, workspace_created
from .search.options import recorded_search
from .spec import load_idea
from .workspace import Workspace

# Metrics that measure the machine, not the experiment: never a divergence.
VOLATILE = ("wall_time", "wall_s", "time_s", "seconds", "throughput", "per_sec", "env.", "datetime", "timestamp")


class Delta(BaseModel):
    """One metric of one run: the recorded value, the replayed one, and whether they agree."""

    run: int
    seed: int | None = None  # None: the run's aggregate (the mean over its seeds)
    metric: str
    recorded: float | None
    replayed: float | None
    abs_diff: float | None
    rel_diff: float | None
    ok: bool


class ReplayReport(BaseModel):
    """What replay.json holds: every metric's delta and every divergence, in words."""

    workspace: str
    deltas: list[Delta]
    divergences: list[str]


def _runs(ws: Workspace) -> dict[int, RunRecorded]:
    return WorkspaceModel.build(ws.journal.events).recorded()


def _seed_runs(ws: Workspace) -> dict[tuple[int, int], RunRecorded]:
    """(run, seed) -> that seed's verdict and metrics in the run's last full attempt (seeded runs only)."""
    last: dict[int, int] = {}
    fins = [f for f in ws.journal.of(RunFinished, phase="full") if f.seed is not None and f.run is not None]
    for f in fins:
        last[f.run] = max(last.get(f.run, 0), f.attempt)
    return {(f.run, f.seed): RunRecorded(run=f.run, status=f.status, attempts=f.attempt, reasons=f.reasons,
                                         metrics=f.metrics)
            for f in fins if f.attempt == last[f.run]}


def compare_seeds(recorded: dict[tuple[int, int], RunRecorded], replayed: dict[tuple[int, int], RunRecorded],
                  rtol: float) -> ReplayReport:
    """Every seed of every run, recorded against replayed (as `compare` does for the aggregates)."""
    deltas: list[Delta] = []
    div: list[str] = []
    for (run, seed) in sorted(set(recorded) | set(replayed)):
        rep = compare({run: recorded[(run, seed)]} if (run, seed) in recorded else {},
                      {run: replayed[(run, seed)]} if (run, seed) in replayed else {}, None, rtol)
        deltas += [d.model_copy(update={"seed": seed}) for d in rep.deltas]
        div += [d.replace(f"run {run}:", f"run {run} seed {seed}:", 1) for d in rep.divergences]
    return ReplayReport(workspace="", deltas=deltas, divergences=div)


def compare(recorded: dict[int, RunRecorded], replayed: dict[int, RunRecorded], keys: list[str] | None,
            rtol: float) -> ReplayReport:
    """Each run's status and metrics, recorded against replayed, within relative tolerance `rtol`."""
    deltas: list[Delta] = []
    div: list[str] = []
    for run in sorted(set(recorded) | set(replayed)):
        a, b = recorded.get(run), replayed.get(run)
        if a is None or b is None:
            div.append(f"run {run}: {'not in the recording' if a is None else 'not reached by the replay'}")
            continue
        if a.status != b.status:
            div.append(f"run {run}: recorded {a.status}, now {b.status}" + (f" ({b.reasons[0]})" if b.reasons else ""))
        names = keys or sorted(set(a.metrics) | set(b.metrics))
        for k in names:
            if any(v in k for v in VOLATILE):
                continue
            x, y = a.metrics.get(k), b.metrics.get(k)
            if x is None and y is None:
                continue
            if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
                deltas.append(Delta(run=run, metric=k, recorded=x, replayed=y, abs_diff=None, rel_diff=None, ok=False))
                div.append(f"run {run}: {k} is {'missing' if y is None else 'new'} in the replay")
                continue
            d = abs(float(y) - float(x))
            rel = d / abs(x) if x else (0.0 if d == 0 else math.inf)
            ok = d <= rtol * max(abs(x), abs(y)) or d < 1e-12
            deltas.append(Delta(run=run, metric=k, recorded=x, replayed=y, abs_diff=d, rel_diff=rel, ok=ok))
            if not ok:
                div.append(f"run {run}: {k} moved from {x:.6g} to {y:.6g} (relative {rel:.2%} > {rtol:.2%})")
    return ReplayReport(workspace="", deltas=deltas, divergences=div)


def _source(source: Path, idea_file: Path | None,
            idea_name: str | None = None) -> tuple[Path, Path, dict[int, RunRecorded], list[EditApplied], Path,
                                                            dict[tuple[int, int], RunRecorded]]:
    """(idea file, transcript file, recorded runs, recorded edits, a scratch dir) for a workspace, a transcript, or
    an idea file whose (`idea_name`'s) entry names its transcript."""
    scratch = Path(tempfile.mkdtemp(prefix="replay_"))
    src = Path(source)
    if src.is_dir():
        ws = Workspace(src)
        head = workspace_created(ws.journal.events, src)
        idea = dict(head.idea)
        idea["template"] = head.template_root
        idea.pop("transcript", None)
        idea.pop("tree_transcript", None)
        idea_file = scratch / f"{idea['name']}.json"
        idea_file.write_text(json.dumps(idea))
        transcript = scratch / "recorded.transcript.jsonl"
        transcript.write_text(export_transcript(ws.journal.of(Exchange), idea=idea["name"], template=head.template,
                                                note=f"recorded from {head.agent}" + (" (scripted)" if head.scripted else "")))
        return idea_file, transcript, _runs(ws), ws.journal.of(EditApplied), scratch, _seed_runs(ws)
    if not src.is_file():
        raise InputError(src, "neither a workspace folder nor a transcript file")
    if src.suffix == ".json":  # an idea file (an AI Scientist ideas.json): its entry names the transcript
        loaded = load_idea(src, idea_name=idea_name)
        if loaded.transcript_path is None:
            raise InputError(src, f"the idea {loaded.idea.name!r} names no transcript: add \"transcript\": FILE to "
                                  "its entry, or replay the transcript file itself")
        return src, loaded.transcript_path, {}, [], scratch, {}
    t = load_transcript(src)
    if idea_file is None and t.header.idea:
        beside = src.parent / f"{t.header.idea}.json"
        ais = src.parent / "ideas.json"  # AI Scientist keeps every idea of a template in one ideas.json
        idea_file = beside if beside.is_file() or not ais.is_file() else ais
    if idea_file is None or not Path(idea_file).is_file():
        raise InputError(src, "cannot find the idea spec for this transcript: pass --idea-file")
    return Path(idea_file), src, {}, [], scratch, {}


def replay(source: Path, *, idea_file: Path | None = None, sandbox: Path = Path("sandbox"), rtol: float = 1e-3,
           python: str | None = None, stages: list[str] | None = None, idea_name: str | None = None) -> int:
    """Re-run a workspace or a transcript with its recorded replies in a new workspace under `sandbox`, print the
    metric deltas and write them to .orchestrate/replay.json; returns 1 on any divergence."""
    idea_file, transcript, recorded, recorded_edits, _scratch, recorded_seeds = _source(source, idea_file, idea_name)
    if idea_name is None and not Path(source).is_dir() and Path(idea_file).name == "ideas.json":
        idea_name = load_transcript(transcript).header.idea  # the transcript names its idea in the list
    recorded_nodes: dict[int, NodeCreated] = {}
    if Path(source).is_dir():
        recorded_nodes = WorkspaceModel.build(Workspace(Path(source)).journal.events).nodes
    ablations = {n for n, made in recorded_nodes.items() if made.kind == "ablation"}
    if stages is None:  # the stages that make runs: the experiments, and the ablations when the recording has them
        stages = ["experiments", *(["ablations"] if ablations else [])]
    if "ablations" not in stages:  # ablation runs not asked for are not missed
        recorded = {r: v for r, v in recorded.items() if r not in ablations}
        recorded_seeds = {k: v for k, v in recorded_seeds.items() if k[0] not in ablations}
        recorded_nodes = {n: v for n, v in recorded_nodes.items() if n not in ablations}
    opts = RunOptions(transcript=transcript, sandbox=sandbox, python=python, stages=stages,
                      idea_name=None if Path(source).is_dir() else idea_name)
    if Path(source).is_dir():  # the same strategy, objective and search seed: the same tree
        search = recorded_search(workspace_created(Workspace(Path(source)).journal.events, source).options)
        opts.strategy, opts.search = search.strategy, search.settings if search.strategy == "tree" else None
    elif _is_tree_transcript(Path(idea_file), Path(source)):  # the idea's tree_transcript: a tree search
        opts.strategy = "tree"
    ctx, stages = start(idea_file, opts, log=lambda s: print(s, flush=True))
    if Path(source).is_dir():  # the same held-out evaluation data as the recorded runs had
        Workspace(Path(source)).copy_eval_seed_to(ctx.ws)
    divergence = None
    try:
        rc = drive(ctx, stages)
    except TranscriptError as exc:
        divergence = str(exc)
        rc = 1
    replayed = _runs(ctx.ws)
    report = compare(recorded, replayed, None, rtol) if recorded else ReplayReport(workspace="", deltas=[], divergences=[])
    if recorded_seeds:  # every seed too, not only the mean
        per_seed = compare_seeds(recorded_seeds, _seed_runs(ctx.ws), rtol)
        report.deltas += per_seed.deltas
        report.divergences += per_seed.divergences
    report.workspace = str(ctx.ws.root)
    if Path(source).is_dir():
        report.divergences += tree_divergences(recorded_nodes, WorkspaceModel.build(ctx.journal.events).nodes)
    if divergence:
        report.divergences.insert(0, f"a response no longer applies: {divergence}")
    # an edit that applied when recorded and fails now is a divergence even if the run recovers
    now_edits = {(e.stage, e.run, e.attempt, e.step): e for e in ctx.journal.of(EditApplied)}
    for e in recorded_edits:
        n = now_edits.get((e.stage, e.run, e.attempt, e.step))
        if n is not None and (n.files != e.files or bool(n.failed) != bool(e.failed)):
            report.divergences.append(f"{e.stage} run {e.run} attempt {e.attempt}: the edit now touches {n.files or 'nothing'} "
                                      f"(recorded: {e.files or 'nothing'})")
    keys = list(dict.fromkeys([*(ctx.objective.read_keys() if ctx.objective is not None else []),
                               *ctx.manifest.key_metrics]))
    _print(report, replayed, bool(recorded), keys)
    (ctx.ws.state / "replay.json").write_text(report.model_dump_json(indent=2))
    if report.divergences:
        return 1
    return rc


def _is_tree_transcript(idea_file: Path, transcript: Path) -> bool:
    """Whether `transcript` is the one the idea names for --strategy tree."""
    try:
        name = json.loads(idea_file.read_text()).get("tree_transcript")
    except (OSError, ValueError, AttributeError):
        return False  # start() reads the idea again and names its problem
    return isinstance(name, str) and (idea_file.parent / name).resolve() == transcript.resolve()


def tree_divergences(recorded: dict[int, NodeCreated], replayed: dict[int, NodeCreated]) -> list[str]:
    """Each search node whose kind or parent differs between the recording and the replay."""
    def what(n: NodeCreated) -> str:
        return f"{n.kind} from {'the template' if n.parent == 0 else f'node {n.parent}'}"

    out = []
    for node in sorted(set(recorded) | set(replayed)):
        a, b = recorded.get(node), replayed.get(node)
        if a is None or b is None:
            out.append(f"node {node}: {'not in the recording' if a is None else 'not reached by the replay'}")
        elif (a.kind, a.parent) != (b.kind, b.parent):
            out.append(f"node {node}: recorded {what(a)}, now {what(b)}")
    return out


def _print(report: ReplayReport, replayed: dict[int, RunRecorded], have_recording: bool, keys: list[str]) -> None:
    """The key metrics' deltas (the objective's and the template's key_metrics) and every metric that moved;
    replay.json has them all. Wide enough to read when the output is a file, not a terminal."""
    console = Console() if Console().is_terminal else Console(width=140)
    table = Table(title="recorded vs replayed" if have_recording else "replayed runs", show_lines=False)
    for col in ("run", "seed", "metric", "recorded", "replayed", "abs diff", "rel diff", ""):
        table.add_column(col, justify="right" if col not in ("metric", "") else "left", no_wrap=col == "metric")

    def f(v: Any) -> str:
        return fmt_num(v, digits=6, missing="-")

    shown = [d for d in report.deltas if d.metric in keys or not d.ok] if keys else report.deltas
    if have_recording:
        for d in shown:
            table.add_row(str(d.run), "mean" if d.seed is None else str(d.seed), d.metric, f(d.recorded), f(d.replayed),
                          f(d.abs_diff),
                          "-" if d.rel_diff is None else f"{d.rel_diff:.2%}", "ok" if d.ok else "MOVED")
    else:
        for run, r in sorted(replayed.items()):
            for k, v in sorted(r.metrics.items())[:12]:
                table.add_row(str(run), "mean", k, "-", f(v), "-", "-", r.status)
    console.print(table)
    if have_recording and len(shown) < len(report.deltas):
        console.print(f"{len(report.deltas) - len(shown)} other metric value(s) compared, each within tolerance "
                      "(every one is in .orchestrate/replay.json)")
    if report.divergences:
        console.print(f"[bold red]{len(report.divergences)} divergence(s):[/]")
        for d in report.divergences:
            console.print(f"  - {d}")
    else:
        console.print("replay reproduced every run" + (" within tolerance" if have_recording else ""))
    console.print(f"replay workspace: {report.workspace}")
