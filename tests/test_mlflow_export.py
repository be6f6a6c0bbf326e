"""`orchestrate export WS --to mlflow`: a real 3-run workspace on the tiny template, written to MLflow and read
back through MLflow's own client: into the default local store, again without duplicates, and into a local
tracking server started here on 127.0.0.1. Without MLflow: one line, exit 2."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import DONE, ROOT, blk, exp, make_idea, only_workspace, run_cli

from orchestrator.cli import main as cli
from orchestrator.events import BaselineRecorded, RunRecorded
from orchestrator.exporters.mlflow import KIND_TAG, RUN_TAG, WS_TAG, default_uri, export
from orchestrator.readmodel import WorkspaceModel
from orchestrator.workspace import Workspace

try:
    from mlflow.tracking import MlflowClient
except ImportError:  # the optional extra: every test but the one about its absence skips, saying why
    MlflowClient = None
needs_mlflow = pytest.mark.skipif(MlflowClient is None, reason="MLflow is an optional extra: pip install 'orchestrator[mlflow]'")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Three runs: two results, one degenerate (no step trained); then plots are skipped (experiments only)."""
    tmp = tmp_path_factory.mktemp("mlf")
    os.environ.setdefault("HOME", str(tmp))
    idea = make_idea(tmp, [
        exp(1, 1, blk("LR = 0.05", "LR = 0.1")),
        exp(2, 1, blk("STEPS = 20", "STEPS = 0")),
        exp(3, 1, blk("STEPS = 0", "STEPS = 40")),
        exp(4, 1, DONE),
    ], max_runs=3, limits={"max_attempts": 1})
    assert run_cli("run", idea, "--sandbox", tmp / "sb") == 0
    ws = only_workspace(tmp / "sb")
    recs = Workspace(ws).journal.of(RunRecorded)
    assert [(r.run, r.status) for r in recs] == [(1, "ok"), (2, "degenerate"), (3, "ok")]
    return ws


def _ours(client: MlflowClient, ws: Path) -> list:
    exp_ = client.get_experiment_by_name("tiny")
    return client.search_runs([exp_.experiment_id], filter_string=f"tags.`{WS_TAG}` = '{ws.name}'", max_results=100)


def _check_read_back(client: MlflowClient, ws: Path) -> None:
    runs = _ours(client, ws)
    by = {r.data.tags[RUN_TAG]: r for r in runs}
    assert sorted(by) == ["0", "1", "2", "3", "workspace"], sorted(by)
    top = by["workspace"]
    assert top.data.tags[KIND_TAG] == "workspace"
    events = Workspace(ws).journal.events
    model = WorkspaceModel.build(events, ws)
    (baseline,) = [e for e in events if isinstance(e, BaselineRecorded)]
    assert by["0"].data.tags["orchestrate.verdict"] == "baseline"
    assert by["0"].data.metrics == {k: float(v) for k, v in baseline.metrics.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for rv in model.run_list():
        got = by[str(rv.run)]
        assert got.data.tags["mlflow.parentRunId"] == top.info.run_id
        assert got.data.tags["orchestrate.verdict"] == rv.status
        assert got.data.tags["orchestrate.evaluation"] in ("evaluated", "self-reported")
        assert got.info.status == ("FINISHED" if rv.is_result else "FAILED")
        # every metric of the run, with its value
        want = {k: float(v) for k, v in rv.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert want and got.data.metrics == want, (rv.run, got.data.metrics, want)
        assert got.data.tags["mlflow.source.git.commit"] == rv.code_commit
        arts = {a.path for a in client.list_artifacts(got.info.run_id)} | {
            a.path for d in ("code", "results") for a in client.list_artifacts(got.info.run_id, d)}
        assert "code/diff.patch" in arts and "results/final_info.json" in arts
    assert "training.steps_executed" in by["2"].data.tags["orchestrate.reasons"]
    diff = client.download_artifacts(by["3"].info.run_id, "code/diff.patch", str(ws.parent / "dl3"))
    assert "-STEPS = 0" in Path(diff).read_text() and "+STEPS = 40" in Path(diff).read_text()
    assert by["1"].data.metrics["eval.error"] > by["3"].data.metrics["eval.error"]
    assert top.data.metrics["results"] == 2 and top.data.metrics["runs"] == 3
    assert "notes.txt" in {a.path for a in client.list_artifacts(top.info.run_id)}


@needs_mlflow
def test_export_to_the_default_store_and_again_without_duplicates(workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cli(["export", str(workspace), "--to", "mlflow"]) == 0
    out = capsys.readouterr().out
    assert "5 MLflow run(s) created, 0 updated" in out and "mlflow.db" in out
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlruns").is_dir()  # MLflow's own default places
    client = MlflowClient(tracking_uri=default_uri(tmp_path))
    _check_read_back(client, workspace)
    ids = sorted(r.info.run_id for r in _ours(client, workspace))
    history = client.get_metric_history(_ours(client, workspace)[0].info.run_id, "eval.error") or [None]

    again = export(Workspace(workspace), tracking_uri=default_uri(tmp_path))
    assert (again.created, again.updated) == (0, 5)
    assert sorted(r.info.run_id for r in _ours(client, workspace)) == ids  # updated in place
    _check_read_back(client, workspace)
    after = client.get_metric_history(_ours(client, workspace)[0].info.run_id, "eval.error") or [None]
    assert len(after) == len(history)  # an unchanged metric is not logged again


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_mlflow
def test_export_to_a_local_tracking_server(workspace, tmp_path):
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    if not mlflow_bin.exists():
        pytest.skip("the mlflow command (the server) is not installed beside this Python")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination", str(store / "artifacts")],
        cwd=store, stdout=open(store / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a cold start migrates its database: tens of seconds on 2 busy cores
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (store / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the tracking server did not start: " + (store / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        assert cli(["export", str(workspace), "--to", "mlflow", "--tracking-uri", uri]) == 0
        client = MlflowClient(tracking_uri=uri)
        _check_read_back(client, workspace)
        again = export(Workspace(workspace), tracking_uri=uri)
        assert (again.created, again.updated) == (0, 5) and len(_ours(client, workspace)) == 5
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@needs_mlflow
def test_seeds_are_nested_runs_and_aggregated(tmp_path, monkeypatch):
    """A journal with per-seed events (the seeds contract; test_seed_views' workspace): one nested run per seed,
    the mean over the ok seeds on the run, read back through MLflow."""
    from test_seed_views import BASE_ERR, RUN1_ERR
    from test_seed_views import _workspace as seeded_workspace

    ws = seeded_workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    done = export(Workspace(ws), tracking_uri=default_uri(tmp_path))
    client = MlflowClient(tracking_uri=done.tracking_uri)
    got = {key: client.get_run(run_id) for key, run_id in done.runs.items()}
    assert sorted(got) == [("0", ""), ("0", "0"), ("0", "1"), ("0", "2"), ("1", ""), ("1", "0"), ("1", "1"), ("1", "2"),
                           ("2", ""), ("2", "0"), ("2", "1"), ("2", "2"), ("workspace", "")]
    run1 = got[("1", "")].data
    assert run1.metrics["eval.error"] == pytest.approx(sum(RUN1_ERR) / 3)
    assert run1.metrics["std/eval.error"] == pytest.approx(statistics.stdev(RUN1_ERR))
    assert run1.metrics["n_seeds"] == 3 and run1.tags["orchestrate.evaluation"] == "evaluated"
    for s in range(3):
        seed = got[("1", str(s))]
        assert seed.data.metrics["eval.error"] == pytest.approx(RUN1_ERR[s])
        assert seed.data.tags["mlflow.parentRunId"] == got[("1", "")].info.run_id
        assert seed.data.tags["orchestrate.seed"] == str(s)
    assert got[("0", "")].data.metrics["eval.error"] == pytest.approx(sum(BASE_ERR) / 3)
    run2 = got[("2", "")]
    assert run2.info.status == "FAILED" and run2.data.metrics["n_seeds"] == 2  # seed 1 of 3 crashed
    assert got[("2", "1")].info.status == "FAILED" and got[("2", "0")].info.status == "FINISHED"
    assert "seed 1: exited with code 1" in run2.data.tags["orchestrate.reasons"]
    again = export(Workspace(ws), tracking_uri=default_uri(tmp_path))
    assert again.created == 0 and again.runs == done.runs


def test_without_mlflow_one_line_exit_2(workspace, tmp_path):
    """The module hidden from a fresh interpreter: the command says how to install it."""
    code = ("import sys; sys.modules['mlflow'] = None; sys.modules['mlflow.tracking'] = None\n"
            "from orchestrator.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, "export", str(workspace), "--to", "mlflow"], capture_output=True,
                       text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1, p.stderr
    assert "MLflow is not installed" in err[0] and "orchestrator[mlflow]" in err[0]
    assert not (tmp_path / "mlflow.db").exists()


@needs_mlflow
def test_idea_json_and_workspace_tags(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = export(Workspace(workspace), tracking_uri=default_uri(tmp_path), experiment="other")
    client = MlflowClient(tracking_uri=done.tracking_uri)
    top = client.get_run(done.runs[("workspace", "")])
    assert top.data.tags["orchestrate.template"] == "tiny"
    path = client.download_artifacts(top.info.run_id, "idea.json", str(tmp_path / "dl"))
    assert json.loads(Path(path).read_text())["name"] == "tiny"


@needs_mlflow
def test_links_and_hogs_the_agent_left_are_not_exported(workspace, tmp_path, monkeypatch):
    """The run folders are the agent's: a symbolic link, a hard link to a file elsewhere and a linked folder
    stay out of MLflow."""
    import shutil

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("sk-not-for-mlflow")
    copy = tmp_path / "copy" / workspace.name
    shutil.copytree(workspace, copy, symlinks=True)
    (copy / "run_1" / "leak.png").symlink_to(secret / "key.txt")
    os.link(secret / "key.txt", copy / "run_3" / "hard.png")
    (copy / "latex").symlink_to(secret)
    (secret / "template.pdf").write_text("sk-not-for-mlflow")
    monkeypatch.chdir(tmp_path)
    done = export(Workspace(copy), tracking_uri=default_uri(tmp_path), experiment="links")
    client = MlflowClient(tracking_uri=done.tracking_uri)
    names = []
    for run_id in done.runs.values():
        for top in client.list_artifacts(run_id):
            names += [top.path] + ([a.path for a in client.list_artifacts(run_id, top.path)] if top.is_dir else [])
    assert names and not [n for n in names if n.endswith(("leak.png", "hard.png", "template.pdf"))], names


@needs_mlflow
def test_ablations_are_exported_apart_and_not_applicable_is_no_failure(tmp_path, monkeypatch):
    """A tree search's journal with its ablations (test_search_views' hand-built one): each ablation is a run of
    kind ablation naming the node it ablates and the change it takes out; the one whose change no longer comes out
    is not FAILED; the workspace's results and runs count the search's runs only."""
    from test_search_views import ablated_events, journal_workspace

    ws = journal_workspace(tmp_path / "ws", *ablated_events())
    monkeypatch.chdir(tmp_path)
    done = export(Workspace(ws), tracking_uri=default_uri(tmp_path))
    client = MlflowClient(tracking_uri=done.tracking_uri)
    got = {key[0]: client.get_run(run_id) for key, run_id in done.runs.items() if not key[1]}
    top = got["workspace"].data.metrics
    assert (top["results"], top["runs"]) == (3, 5)  # runs 1-5 (3 ok); 6 and 7 are ablations, 7 ok
    assert (top["ablations"], top["ablation_results"]) == (2, 1)
    kinds = {run: r.data.tags[KIND_TAG] for run, r in got.items()}
    assert kinds == {"workspace": "workspace", "0": "baseline", "1": "run", "2": "run", "3": "run", "4": "run", "5": "run",
                     "6": "ablation", "7": "ablation"}
    na, ok = got["6"], got["7"]
    assert na.info.status == "KILLED" and na.data.tags["orchestrate.verdict"] == "not applicable"
    assert (na.data.tags["orchestrate.ablation_of"], na.data.tags["orchestrate.ablates"]) == ("4", "1")
    assert "does not come out of run 4's code" in na.data.tags["orchestrate.reasons"]
    assert na.data.tags["mlflow.runName"] == "run_6 (ablation of run_4)"
    assert ok.info.status == "FINISHED" and ok.data.metrics == {"m": 2.5, "l0": 7}
    assert (ok.data.tags["orchestrate.ablation_of"], ok.data.tags["orchestrate.ablates"]) == ("4", "4")
    assert got["2"].info.status == "FAILED" and got["2"].data.tags["orchestrate.node_kind"] == "draft"
    assert got["4"].data.tags["orchestrate.parent"] == "1" and "orchestrate.ablates" not in got["4"].data.tags
