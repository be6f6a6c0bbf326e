"""`orchestrate export WS --to mlflow`: a workspace as MLflow runs, read through the read model.

The idea is an MLflow experiment (named after the idea). The workspace is one MLflow run (kind
`workspace`: the paper, the figures, the notes, the review, cost and tokens); under it each numbered run
is a nested run (`run_0` the baseline, `run_N`): its metrics, its verdict and reasons, evaluated or
self-reported, its code commit and diff, its results file and figures. A run with seeds has one nested
run per seed under it, and its own metrics are the mean over its ok seeds (with `std/<metric>` and
`n_seeds`). A search tree's node's diff is against the code it started from (its parent's, the template's
for a draft), not the run before it by number. A run's MLflow status is FINISHED when it is a result,
FAILED otherwise (KILLED: it never got a verdict, or nothing was run for it).

An ablation (the best node less one change of its path, made by the ablations stage) is a nested run of kind
`ablation`, tagged with the node it ablates (`orchestrate.ablation_of`) and the change it takes out
(`orchestrate.ablates`), its diff taken against that node's code; one whose change no longer comes out is
KILLED with the verdict `not applicable` (nothing was run: not a failure). The workspace's `results` and `runs`
count the search's runs only; `ablations` and `ablation_results` count the ablations apart.

Idempotent: every MLflow run is tagged with the workspace's id and the run (and seed) it stands for, and
found again by those tags; exporting again updates tags, changed metrics and artifacts in place.

Where: `--tracking-uri`, else `MLFLOW_TRACKING_URI`, else MLflow's own default, `sqlite:///mlflow.db` in
the current folder (artifacts under `./mlruns`): `mlflow ui` started there shows it."""

from __future__ import annotations

import json
import logging
import os
import stat
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, OrchestratorError
from ..events import RunFinished, RunStarted, _Event
from ..readmodel import NOT_APPLICABLE, RunView, WorkspaceModel, workspace_created
from ..results import code_files
from ..search.tree import build_tree
from ..values import finite
from ..workspace import Workspace

MISSING = "MLflow is not installed: pip install 'orchestrator[mlflow]' (or: pip install 'mlflow>=3.1,<4')"
TAG = "orchestrate."
WS_TAG, RUN_TAG, SEED_TAG, KIND_TAG = TAG + "workspace", TAG + "run", TAG + "seed", TAG + "kind"
FIGURES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
TAG_MAX = 5000  # MLflow tag values are bounded (8000 characters); reasons are cut to this
FILE_MAX = 64 * 1024 * 1024  # an artifact larger than this is left out (the agent's code wrote it: it may be a hog)


def default_uri(cwd: Path | None = None) -> str:
    """MLflow's own default store, in the current folder (absolute, so that the artifacts land beside it)."""
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


@dataclass
class Record:
    """One MLflow run to write: what it stands for and what it holds."""

    key: tuple[str, str]  # (run tag, seed tag): ("workspace", ""), ("3", ""), ("3", "1")
    name: str
    tags: dict[str, str]
    metrics: dict[str, float]
    status: str  # FINISHED, FAILED, KILLED
    start_ms: int | None = None
    end_ms: int | None = None
    files: dict[str, Path] = field(default_factory=dict)  # artifact path -> file
    texts: dict[str, str] = field(default_factory=dict)  # artifact path -> text
    parent: tuple[str, str] | None = None


@dataclass
class Exported:
    experiment: str
    experiment_id: str
    tracking_uri: str
    created: int = 0
    updated: int = 0
    runs: dict[tuple[str, str], str] = field(default_factory=dict)  # key -> MLflow run id


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics MLflow can hold: finite numbers, under names it accepts."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        x = finite(v)
        if x is None:
            continue
        name = "".join(c if c.isalnum() or c in "_-. /" else "_" for c in str(k))[:250]
        out[name] = x
    return out


def _ms(ts: float | None) -> int | None:
    return int(ts * 1000) if ts else None


def _cut(text: str) -> str:
    return text if len(text) <= TAG_MAX else text[: TAG_MAX - 1] + "…"


def _seed_phases(rv: RunView) -> tuple[int, list[Any]]:
    """(attempt, the full-run phases of the run's last attempt that ran one: one per seed once runs have seeds)."""
    for a in reversed(rv.attempts):
        fulls = [p for p in a.phases if p.phase == "full" and p.finished]
        if fulls:
            return a.attempt, fulls
    return 0, []


def _over_seeds(values: dict[str, list[float]], n_ok: int, seeded: bool) -> dict[str, float]:
    """A run's metrics over its ok seeds: the mean, with `std/<metric>` and `n_seeds` when it has seeds."""
    out = _numbers({k: statistics.fmean(v) for k, v in values.items() if v})
    if seeded:
        out |= _numbers({f"std/{k}": statistics.stdev(v) for k, v in values.items() if len(v) > 1})
        out["n_seeds"] = float(n_ok)
    return out


def _times(events: list[_Event], run: int) -> tuple[int | None, int | None]:
    starts = [e.ts for e in events if isinstance(e, RunStarted) and e.run == run and e.ts]
    ends = [e.ts for e in events if isinstance(e, RunFinished) and e.run == run and e.ts]
    return _ms(min(starts) if starts else None), _ms(max(ends) if ends else None)


def _diff(ws: Workspace, old: str | None, new: str | None, rv: RunView) -> str:
    """The run's change to the code (the manifest's code files: not the notes, nor the run folders landed
    between) against the code it started from: from git, else the journal's edit diffs."""
    if new and (ws.root / ".git").exists():
        try:
            if old is None:
                roots = ws.git("rev-list", "--max-parents=0", new, check=False).split()
                old = roots[0] if roots else None
            if old:
                return ws.diff(old, new, *code_files(ws.manifest))
        except Exception:  # a workspace whose repository is broken: the recorded edits still say it
            pass
    return "\n".join(e.diff.rstrip("\n") for e in rv.edits if e.diff)


def _plain_file(ws: Workspace, p: Path) -> bool:
    """A regular file of the workspace's own, safe to copy out: inside it with no symbolic link on the way,
    not hard-linked to a file elsewhere, not a hog."""
    try:
        st = p.lstat()
        root = os.path.realpath(ws.root)
        if os.path.realpath(p) != os.path.normpath(os.path.join(root, os.path.relpath(p, ws.root))):
            return False
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size <= FILE_MAX


def _phase_files(ws: Workspace, run: int, attempt: int, phase: Any, results_file: str) -> dict[str, Path]:
    """A full run's results file, figures and logs: from its run folder, or, for a run that is not a result,
    from where its attempt's outputs were kept."""
    out = _run_files(ws, phase.out_dir, results_file) or _run_files(ws, str(ws.attempt_dir(run, attempt).relative_to(ws.root)
                                                                             / "out"), results_file)
    for name in ("stdout.txt", "stderr.txt"):
        p = ws.root / phase.log_dir / name
        if phase.log_dir and _plain_file(ws, p):
            out[f"logs/{name}"] = p
    return out


def _run_files(ws: Workspace, out_dir: str, results_file: str) -> dict[str, Path]:
    """A run folder's results file and figures (regular files inside the workspace only: no link is followed)."""
    folder = ws.root / out_dir
    out: dict[str, Path] = {}
    if not out_dir or not folder.is_dir() or os.path.realpath(folder) != os.path.normpath(
            os.path.join(os.path.realpath(ws.root), out_dir)):
        return out
    for p in sorted(folder.iterdir()):
        if not _plain_file(ws, p):
            continue
        if p.name == results_file:
            out[f"results/{p.name}"] = p
        elif p.suffix.lower() in FIGURES:
            out[f"figures/{p.name}"] = p
    return out


def records(ws: Workspace) -> tuple[str, str, list[Record]]:
    """(experiment name, workspace id, the MLflow runs to write), from the journal through the read model."""
    events = ws.journal.events
    head = workspace_created(events, ws.root)
    model = WorkspaceModel.build(events, ws.root)
    ws_id = ws.root.name
    idea = head.idea.get("name") or ws_id
    try:
        results_file = ws.manifest.results_file
    except Exception:  # an imported workspace has no template copy
        results_file = "final_info.json"
    common = {WS_TAG: ws_id, TAG + "workspace_path": str(ws.root), TAG + "template": head.template,
              TAG + "agent": head.agent, TAG + "idea": idea}
    cost = sum(s.cost_usd for s in model.stages.values())
    tokens = sum(s.tokens for s in model.stages.values())
    top = Record(key=("workspace", ""), name=ws_id, status="FINISHED", start_ms=_ms(head.ts), end_ms=_ms(model.last_ts),
                 tags={**common, KIND_TAG: "workspace", RUN_TAG: "workspace",
                       TAG + "title": _cut(str(head.idea.get("title", ""))),
                       TAG + "stages": ", ".join(f"{s.name} {s.status}" for s in model.stages.values()),
                       "mlflow.note.content": _cut(f"{head.idea.get('title', idea)}\n\n{head.idea.get('experiment', '')}")},
                 metrics={"cost_usd": round(cost, 6), "tokens": float(tokens), **_counts(model)},
                 texts={"idea.json": json.dumps(head.idea, indent=2, default=str)})
    for a in model.artifacts:
        p = ws.root / a.path
        if a.ok and _plain_file(ws, p):
            where = "paper" if a.kind in ("paper", "pdf", "tex", "review") or p.suffix in (".pdf", ".tex") else "figures"
            top.files[f"{where}/{p.name}"] = p
    for rel in ("notes.txt", "latex/template.tex", "latex/template.pdf", "review.txt", "review.json"):
        p = ws.root / rel
        if _plain_file(ws, p) and not any(f == p for f in top.files.values()):
            top.files[f"paper/{p.name}" if rel.startswith("latex") else p.name] = p
    out = [top]

    if model.baselines:
        b = model.baseline
        bseeds = [seed for seed in model.seeds_ok(0) if seed is not None]
        base = Record(key=("0", ""), name="run_0 (baseline)", parent=top.key, status="FINISHED", start_ms=_ms(b.ts),
                      end_ms=_ms(b.ts), metrics=_over_seeds(model.seed_values(0), len(model.seeds_ok(0)), bool(bseeds)),
                      files=_run_files(ws, "run_0", results_file),
                      tags={**common, KIND_TAG: "baseline", RUN_TAG: "0", TAG + "verdict": "baseline",
                            TAG + "evaluation": model.evaluation(0), TAG + "reasons": _cut("; ".join(b.reasons))})
        out.append(base)
        for seed in bseeds:
            e = model.baselines[seed]
            out.append(Record(key=("0", str(seed)), name=f"run_0 seed {seed}", parent=base.key, status="FINISHED",
                              start_ms=_ms(e.ts), end_ms=_ms(e.ts), metrics=_numbers(e.metrics),
                              tags={**common, KIND_TAG: "seed", RUN_TAG: "0", TAG + "verdict": "baseline",
                                    TAG + "evaluation": e.evaluation}))

    previous: str | None = None
    tree = build_tree(model, None) if model.nodes else None  # structure only: each node's code
    for rv in model.run_list():
        node, ablation = model.nodes.get(rv.run), model.ablation(rv.run)
        commit = tree.nodes[rv.run].commit if tree is not None and node is not None else rv.code_commit  # a node's own code
        evaluation = model.evaluation(rv.run)
        attempt, phases = _seed_phases(rv)
        seeded = [p for p in phases if p.seed is not None and "/seed_" in p.out_dir]  # one seed: run_i itself
        if seeded:
            values = model.seed_values(rv.run)
            if not values:  # no seed is ok: what the seeds reported, for a run that is not a result
                for p in seeded:
                    for k, v in _numbers(p.metrics).items():
                        values.setdefault(k, []).append(v)
            metrics = _over_seeds(values, len(model.seeds_ok(rv.run)), True)
        else:
            metrics = _numbers(rv.metrics)
        start, end = _times(events, rv.run)
        reasons = "; ".join(rv.reasons)
        status = "FINISHED" if rv.is_result else ("KILLED" if rv.status in ("unfinished", "not run", NOT_APPLICABLE)
                                                  else "FAILED")
        what = f"run {rv.run}" + (f" (ablation of run {ablation.parent} without the change of run {ablation.ablates})"
                                  if ablation is not None else "")
        tags = {**common, KIND_TAG: "ablation" if ablation is not None else "run", RUN_TAG: str(rv.run),
                TAG + "verdict": rv.status, TAG + "reasons": _cut(reasons), TAG + "evaluation": evaluation,
                TAG + "attempts": str(len(rv.attempts)),
                "mlflow.note.content": _cut(f"{what}: {rv.status} ({evaluation})" + (f" — {reasons}" if reasons else ""))}
        if node is not None:  # a node of the search tree (or an ablation of its best node)
            tags |= {TAG + "node_kind": node.kind, TAG + "parent": str(node.parent)}
        if ablation is not None:
            tags |= {TAG + "ablation_of": str(ablation.parent), TAG + "ablates": str(ablation.ablates)}
        if commit:
            tags["mlflow.source.git.commit"] = commit
            tags[TAG + "commit"] = commit
        name = f"run_{rv.run}" + (f" (ablation of run_{ablation.parent})" if ablation is not None else "")
        # a tree node against the code it started from (its parent's, the template's for a draft; an ablation's: its
        # best node's), a linear run against the run before it
        against = (node.base_commit or previous) if node is not None else previous
        rec = Record(key=(str(rv.run), ""), name=name, parent=top.key, status=status, start_ms=start,
                     end_ms=end, metrics=metrics, tags=tags,
                     files=_phase_files(ws, rv.run, attempt, phases[-1], results_file) if phases else {},
                     texts={"code/diff.patch": _diff(ws, against, commit, rv)})
        out.append(rec)
        for p in seeded:
            seed = str(p.seed)
            out.append(Record(
                key=(str(rv.run), seed), name=f"run_{rv.run} seed {seed}", parent=rec.key,
                status="FINISHED" if p.status == "ok" else "FAILED", start_ms=start, end_ms=end, metrics=_numbers(p.metrics),
                files=_phase_files(ws, rv.run, attempt, p, results_file),
                tags={**common, KIND_TAG: "seed", RUN_TAG: str(rv.run), SEED_TAG: seed, TAG + "verdict": p.status,
                      TAG + "reasons": _cut("; ".join(p.reasons)),
                      TAG + "evaluation": p.evaluation}))
        if commit and ablation is None:  # the next run starts from the search's code, never an ablation's
            previous = commit
    return idea, ws_id, out


def _counts(model: WorkspaceModel) -> dict[str, float]:
    """The workspace's run counts: the search's runs and results, the ablations apart (never search results)."""
    search = model.search_runs()
    ablations = [r for r in model.run_list() if model.ablation(r.run) is not None]
    return {"results": float(sum(r.is_result for r in search)), "runs": float(len(search)),
            "ablations": float(len(ablations)), "ablation_results": float(sum(r.is_result for r in ablations))}


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InputError(None, MISSING) from None
    for name in ("mlflow", "alembic"):  # their INFO lines (creating tables, migrations) are not the user's business;
        logging.getLogger(name).setLevel(logging.WARNING)  # set after the import, which configures them
    return MlflowClient(tracking_uri=uri)


def export(ws: Workspace, *, tracking_uri: str | None = None, experiment: str | None = None) -> Exported:
    """Write (or update) the workspace's MLflow runs; returns what was made and updated."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    idea, ws_id, recs = records(ws)
    client = _client(uri)
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException

    name = experiment or idea
    try:
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(
            name, tags={TAG + "idea": idea},
            artifact_location=(Path.cwd() / "mlruns").resolve().as_uri() if uri == default_uri() else None)
        found = client.search_runs([exp_id], filter_string=f"tags.`{WS_TAG}` = '{ws_id}'", max_results=5000)
        done = Exported(experiment=name, experiment_id=exp_id, tracking_uri=uri)
        by_key = {(r.data.tags.get(RUN_TAG, ""), r.data.tags.get(SEED_TAG, "")): r for r in found}
        for rec in recs:
            tags = dict(rec.tags)
            if rec.key[1]:
                tags[SEED_TAG] = rec.key[1]
            if rec.parent is not None:
                tags["mlflow.parentRunId"] = done.runs[rec.parent]
            old = by_key.get(rec.key)
            if old is None:
                run = client.create_run(exp_id, start_time=rec.start_ms, tags=tags, run_name=rec.name)
                run_id, current = run.info.run_id, {}
                done.created += 1
            else:
                run_id, current = old.info.run_id, dict(old.data.metrics)
                client.update_run(run_id, status="RUNNING", name=rec.name)
                done.updated += 1
            done.runs[rec.key] = run_id
            now = int(time.time() * 1000)
            metrics = [Metric(k, v, now, 0) for k, v in rec.metrics.items() if current.get(k) != v]
            stale = [k for k in current if k not in rec.metrics]  # MLflow keeps a metric once logged: say it is gone
            tags[TAG + "stale_metrics"] = ", ".join(stale)
            client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
            _artifacts(client, run_id, rec)
            client.set_terminated(run_id, status=rec.status, end_time=rec.end_ms or now)
    except MlflowException as exc:
        raise OrchestratorError(f"MLflow at {uri}: {str(exc).splitlines()[0][:300]}") from None
    return done


def _artifacts(client, run_id: str, rec: Record) -> None:
    """Files and texts as artifacts at their paths (logging the same path again replaces it)."""
    for rel, path in rec.files.items():
        folder = str(Path(rel).parent) if str(Path(rel).parent) != "." else None
        client.log_artifact(run_id, str(path), folder)
    if rec.texts:
        with tempfile.TemporaryDirectory(prefix="orchestrate-mlflow-") as tmp:
            for rel, text in rec.texts.items():
                p = Path(tmp) / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
                folder = str(Path(rel).parent) if str(Path(rel).parent) != "." else None
                client.log_artifact(run_id, str(p), folder)


def summary(ws: Workspace, done: Exported) -> str:
    """One line for the user: where the runs went and how to look at them."""
    what = f"{done.created} MLflow run(s) created, {done.updated} updated"
    see = f"mlflow ui --backend-store-uri {done.tracking_uri}" if not done.tracking_uri.startswith("http") else done.tracking_uri
    return (f"exported {ws.root} to MLflow experiment {done.experiment!r} ({done.experiment_id}) at {done.tracking_uri}: "
            f"{what}; see it: {see}")
