"""`--strategy tree` with nodes in flight (`--parallel-nodes N`): a node's full run goes on in its own folder while
the agent drafts the next; what each node is chosen from is fixed by the journal, so resume and replay grow the
same tree; the node's folder shows the run nothing of the workspace under bwrap.

The tiny tree transcript (tests/fixtures/tiny_tree*) under search seed 0: node 3's full run sleeps 2 s."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, TINY, cli_subprocess, events, only_workspace, run_cli

from orchestrator.sandbox import bwrap_available

IDEA = FIXTURES / "tiny_tree_idea.json"
TRANSCRIPT = FIXTURES / "tiny_tree.transcript.jsonl"
# (node, parent, kind, status): one node in flight. Node 5 is chosen while node 4 runs, so it improves node 1
# (the best it may see), where one after another it improves node 4.
ONE = [(1, 0, "draft", "ok"), (2, 0, "draft", "failed"), (3, 2, "debug", "ok"), (4, 1, "improve", "ok"),
       (5, 1, "improve", "ok")]
# two in flight: node 4 sees neither node 1 nor node 3 (both still running), only the failed node 2 with its
# child: nothing to debug, no result, so a fresh draft
TWO = [(1, 0, "draft", "ok"), (2, 0, "draft", "failed"), (3, 2, "debug", "ok"), (4, 0, "draft", "ok"),
       (5, 1, "improve", "ok")]


def _idea(tmp_path: Path, *, transcript: Path = TRANSCRIPT, **limits) -> Path:
    idea = json.loads(IDEA.read_text())
    idea.update({"template": str(TINY), "tree_transcript": str(transcript)})
    idea["limits"] = {"isolation": "none", "parallel_runs": 2, **limits}
    path = tmp_path / "tiny_tree.json"
    path.write_text(json.dumps(idea))
    return path


def _shape(ws: Path) -> list[tuple]:
    nodes = {e["run"]: e for e in events(ws, "node_created")}
    recs = {e["run"]: e for e in events(ws, "run_recorded")}
    return [(n, nodes[n]["parent"], nodes[n]["kind"], recs[n]["status"] if n in recs else None) for n in sorted(nodes)]


def _once(ws: Path) -> None:
    """No exchange asked twice, no full run judged twice."""
    keys = [(e["run"], e["attempt"]) for e in events(ws, "exchange")]
    assert len(keys) == len(set(keys)) == 5
    fulls = [(e["run"], e["attempt"], e["seed"]) for e in events(ws, "run_finished") if e["phase"] == "full"]
    assert len(fulls) == len(set(fulls)) == 4


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout


def test_a_node_runs_while_the_agent_drafts_the_next(tmp_path):
    from orchestrator.readmodel import WorkspaceModel
    from orchestrator.search.tree import build_tree
    from orchestrator.workspace import Workspace

    assert run_cli("run", _idea(tmp_path), "--sandbox", tmp_path / "sb", "--parallel-nodes", "1") == 0
    ws = only_workspace(tmp_path / "sb")
    assert _shape(ws) == ONE
    _once(ws)
    assert events(ws, "workspace_created")[0]["options"]["search"]["parallel"] == 1
    rows = events(ws)

    def ts(kind: str, run: int, phase: str | None = None) -> float:
        return next(e["ts"] for e in rows if e["type"] == kind and e["run"] == run and (phase is None or e["phase"] == phase))

    # node 3's full run (2 s) was going on while the agent answered for node 4, and landed after node 4's smoke run
    assert ts("run_started", 3, "full") < ts("exchange", 4) < ts("run_finished", 3, "full")
    assert ts("run_finished", 4, "smoke") < ts("run_recorded", 3)
    # node 4 was chosen when node 1 had landed; node 5 without node 4's result
    assert ts("run_recorded", 1) < ts("node_created", 4) and ts("node_created", 5) < ts("run_recorded", 4)
    prompts = {e["run"]: e["prompt"] for e in events(ws, "exchange")}
    assert "improves node 1" in prompts[5] and "Best node so far: node 1" in prompts[5]
    # each node's code is its own though the tree moved on: node 5 is node 1's code with its own change
    w = Workspace(ws)
    tree = build_tree(WorkspaceModel.build(w.journal.events), w.manifest.objective)
    code5 = _git(ws, "show", f"{tree.nodes[5].commit}:experiment.py")
    assert "LR = 0.2" in code5 and "STEPS = 20" in code5
    code4 = _git(ws, "show", f"{tree.nodes[4].commit}:experiment.py")
    assert "LR = 0.1" in code4 and "STEPS = 40" in code4
    # a landing commits the run's folder and its notes alone (the working tree held the next node's code)
    for agg in events(ws, "run_aggregated"):
        if agg["status"] == "ok":
            names = _git(ws, "show", "--name-only", "--format=", agg["commit"]).split()
            assert names and all(n.startswith(f"run_{agg['run']}/") for n in names), names
    for rec in events(ws, "run_recorded"):
        names = _git(ws, "show", "--name-only", "--format=", rec["commit"]).split()
        assert names == ["notes.txt"], (rec["run"], names)
    # the full runs worked in their own folders, gone once landed; the results are in the workspace
    fulls = [e for e in events(ws, "run_started") if e["phase"] == "full"]
    assert all(e["commit"] == tree.nodes[e["run"]].commit for e in fulls)
    assert not any((ws / ".orchestrate" / "nodes").glob("run_*"))
    assert all((ws / f"run_{n}" / "final_info.json").is_file() for n in (1, 3, 4, 5))
    assert _git(ws, "status", "--porcelain") == ""


def test_two_in_flight_hide_both_from_the_next_choice(tmp_path):
    assert run_cli("run", _idea(tmp_path), "--sandbox", tmp_path / "sb", "--parallel-nodes", "2",
                   "--stages", "experiments") == 0
    ws = only_workspace(tmp_path / "sb")
    assert _shape(ws) == TWO
    _once(ws)
    prompts = {e["run"]: e["prompt"] for e in events(ws, "exchange")}
    assert "fresh draft" in prompts[4] and "Best node so far" not in prompts[4]
    why = [e["text"] for e in events(ws, "message") if e["text"].startswith("node 4:")]
    assert why == ["node 4: no result yet and nothing left to debug: a fresh draft"]


def test_the_idea_and_the_run_settle_how_many_nodes_are_in_flight(tmp_path):
    """parallel_runs above 1 puts that many nodes in flight unless the idea's search says; recorded for resume."""
    idea = _idea(tmp_path)
    data = json.loads(idea.read_text())
    data["search"]["parallel"] = 0
    idea.write_text(json.dumps(data))
    assert run_cli("run", idea, "--sandbox", tmp_path / "a", "--max-nodes", "2", "--stages", "experiments") == 0
    assert events(only_workspace(tmp_path / "a"), "workspace_created")[0]["options"]["search"]["parallel"] == 0
    assert run_cli("run", _idea(tmp_path), "--sandbox", tmp_path / "b", "--max-nodes", "2", "--stages",
                   "experiments") == 0
    assert events(only_workspace(tmp_path / "b"), "workspace_created")[0]["options"]["search"]["parallel"] == 2


def test_sigkill_with_a_node_in_flight_then_resume_loses_nothing_and_runs_nothing_twice(tmp_path):
    sandbox = tmp_path / "sb"
    # node 4's reply is recorded while node 3's full run (2 s) is in flight: killed there
    proc = cli_subprocess("run", _idea(tmp_path), "--sandbox", sandbox, "--parallel-nodes", "1", "--stages",
                          "experiments", env={"ORCHESTRATE_FAULT": "after:exchange:4"})
    assert proc.returncode == -signal.SIGKILL
    ws = only_workspace(sandbox)
    started = [e for e in events(ws, "run_started") if e["phase"] == "full" and e["run"] == 3]
    assert started and not [e for e in events(ws, "run_finished") if e["phase"] == "full" and e["run"] == 3]
    res = cli_subprocess("resume", ws)
    assert res.returncode == 0, res.stderr
    assert _shape(ws) == ONE
    _once(ws)
    assert not any((ws / ".orchestrate" / "nodes").glob("run_*"))


def test_replay_of_a_search_with_nodes_in_flight_grows_the_same_tree(tmp_path):
    assert run_cli("run", _idea(tmp_path), "--sandbox", tmp_path / "sb", "--parallel-nodes", "2",
                   "--stages", "experiments") == 0
    ws = only_workspace(tmp_path / "sb")
    assert run_cli("replay", ws, "--sandbox", tmp_path / "r") == 0
    again = only_workspace(tmp_path / "r")
    assert _shape(again) == TWO
    report = json.loads((again / ".orchestrate" / "replay.json").read_text())
    assert report["divergences"] == []


PROBE = """LR = 0.1
import json as _j, os as _o, sys as _s
if not _o.environ.get('ORCHESTRATE_SMOKE'):
    _w = _o.environ.get('ORCHESTRATE_WORKSPACE', '')
    _out = [a.split('=', 1)[1] for a in _s.argv if a.startswith('--out_dir=')][0]
    _o.makedirs(_out, exist_ok=True)
    _seen = {k: _o.path.exists(_w + p) for k, p in (('journal', '/.orchestrate/journal.jsonl'), ('git', '/.git/HEAD'),
             ('seed', '/.orchestrate/eval_seed'), ('earlier', '/run_0/final_info.json'))}
    try:
        open(_w + '/planted.txt', 'w').write('x')
        _seen['wrote'] = True
    except OSError:
        _seen['wrote'] = False
    try:
        open('harness.py', HARNESS_MODE).write('# changed')
        _seen['harness'] = True
    except OSError:
        _seen['harness'] = False
    _seen['cwd'] = _o.getcwd()
    open(_o.path.join(_out, 'probe.json'), 'w').write(_j.dumps(_seen))
"""


def _probe_transcript(tmp_path: Path, harness_mode: str = "a") -> Path:
    """The tree transcript with node 1's change also probing what its full run can reach (and opening its copy
    of the yardstick with `harness_mode`: "r" leaves it be)."""
    lines = TRANSCRIPT.read_text().splitlines()
    first = json.loads(lines[1])
    probe = PROBE.replace("HARNESS_MODE", repr(harness_mode))
    first["response"] = first["response"].replace("=======\nLR = 0.1\n", "=======\n" + probe)
    lines[1] = json.dumps(first)
    out = tmp_path / "probe.transcript.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize("isolation", ["none", "bwrap"])
def test_a_node_in_its_own_folder_reaches_nothing_of_the_workspace(tmp_path, isolation):
    if isolation == "bwrap" and not bwrap_available():
        pytest.skip("bubblewrap cannot make namespaces here")
    # root ignores modes: under isolation none the probe leaves the yardstick be (the next test writes it)
    idea = _idea(tmp_path, transcript=_probe_transcript(tmp_path, "a" if isolation == "bwrap" else "r"),
                 isolation=isolation)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb", "--parallel-nodes", "1", "--max-nodes", "1",
                   "--stages", "experiments") == 0
    ws = only_workspace(tmp_path / "sb")
    seen = json.loads((ws / "run_1" / "probe.json").read_text())
    assert seen["cwd"].endswith(f".orchestrate/nodes/run_1/{ws.name}")
    if isolation == "none":  # no namespaces: the probe does see the workspace (so the bwrap case can fail)
        assert seen["journal"] and seen["git"] and seen["seed"] and seen["wrote"]
        assert [e["status"] for e in events(ws, "run_recorded")] == ["ok"]
    else:
        assert not [k for k in ("journal", "git", "seed", "earlier", "harness") if seen[k]], seen
        assert not (ws / "planted.txt").exists()  # its write went to the sandbox's own tmpfs, if anywhere
        assert [e["status"] for e in events(ws, "run_recorded")] == ["ok"]


def test_a_node_that_changes_its_folders_yardstick_is_tampered(tmp_path):
    """Root ignores file modes: under isolation none the node's copy of the protected files can be written; the
    landing sees it and rejects the run."""
    import os

    if os.geteuid() != 0:
        pytest.skip("an ordinary user cannot write the read-only copy")
    transcript = _probe_transcript(tmp_path, "w")
    idea = _idea(tmp_path, transcript=transcript)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb", "--parallel-nodes", "1", "--max-nodes", "1",
                   "--stages", "experiments") == 0
    ws = only_workspace(tmp_path / "sb")
    rec = events(ws, "run_recorded")[0]
    assert rec["status"] == "tampered" and "harness.py" in " ".join(rec["reasons"])
    assert "node's own folder" in " ".join(rec["reasons"])


# -- the pieces ------------------------------------------------------------------------------------------

def test_a_tree_node_is_compared_with_its_nearest_result_ancestor(tmp_path):
    from orchestrator.events import NodeCreated, RunAggregated
    from orchestrator.execution import compared_run
    from orchestrator.journal import Journal

    j = Journal(tmp_path / "j.jsonl")
    for run, parent, kind in [(1, 0, "draft"), (2, 0, "draft"), (3, 1, "improve"), (4, 3, "debug"), (5, 2, "improve")]:
        j.append(NodeCreated(run=run, parent=parent, kind=kind))
    for run, status in [(1, "ok"), (2, "ok"), (3, "failed")]:
        j.append(RunAggregated(run=run, attempt=1, status=status, out_dir=f"run_{run}"))

    class Ctx:
        journal = j

    assert compared_run(Ctx, 1) is None  # a draft: the baseline only
    assert compared_run(Ctx, 3) == 1
    assert compared_run(Ctx, 4) == 1  # its parent failed: the nearest result above it
    assert compared_run(Ctx, 5) == 2  # not node 3 or 4, the runs just before it by number
    assert compared_run(Ctx, 6) == 2  # not a node (a linear run): the last result before it


class Events:
    """A journal's read side over given events (their times as given)."""

    def __init__(self, events: list) -> None:
        self.events = events

    def of(self, kind, **match):
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())]

    def last(self, kind, **match):
        found = self.of(kind, **match)
        return found[-1] if found else None


def test_nodes_in_flight_count_once_towards_the_search_time():
    from orchestrator.events import NodeCreated, RunRecorded
    from orchestrator.search.engine import search_seconds

    rows = []
    for run, start, end in [(1, 0.0, 10.0), (2, 2.0, 5.0), (3, 8.0, 12.0), (4, 20.0, 21.0)]:
        rows += [NodeCreated(run=run, parent=0, kind="draft", ts=start), RunRecorded(run=run, status="ok", attempts=1, ts=end)]
    rows.append(NodeCreated(run=5, parent=4, kind="ablation", ts=30.0))
    rows.append(RunRecorded(run=5, status="ok", attempts=1, ts=40.0))
    assert search_seconds(Events(rows)) == pytest.approx(13.0)  # [0, 12] and [20, 21]; the ablation is not the search's


def test_the_nodes_hidden_from_a_choice_are_the_newest_that_passed_their_smoke_run():
    from orchestrator.events import NodeCreated, RunFinished
    from orchestrator.search.engine import in_flight_at

    rows = [NodeCreated(run=n, parent=0, kind="draft") for n in range(1, 6)]
    rows += [RunFinished(run=n, attempt=1, phase="smoke", out_dir=f".smoke/run_{n}_attempt_1", status=st)
             for n, st in [(1, "ok"), (2, "failed"), (3, "ok"), (4, "ok"), (5, "ok")]]
    j = Events(rows)
    assert in_flight_at(j, 5, 2) == {3, 4}
    assert in_flight_at(j, 4, 2) == {1, 3}
    assert in_flight_at(j, 3, 2) == {1}
    assert in_flight_at(j, 6, 1) == {5}
    assert in_flight_at(j, 6, 0) == set()


def test_nodes_in_flight_default_to_the_runs_slots():
    from orchestrator.search.options import resolve_search
    from orchestrator.settings import Limits
    from orchestrator.spec import Idea
    from orchestrator.template import load_template

    template = load_template(TINY)
    idea = Idea.model_validate({k: v for k, v in json.loads(IDEA.read_text()).items() if k != "tree_transcript"})

    def parallel(limits: Limits, **kw) -> int | None:
        return resolve_search(template, idea, IDEA, limits, strategy=None, max_nodes=None, wall_s=None, **kw).settings.parallel

    assert parallel(Limits()) == 0  # one slot, or the machine's cores for seeds: one node after another
    assert parallel(Limits(parallel_runs=1)) == 0
    assert parallel(Limits(parallel_runs=3)) == 3
    assert parallel(Limits(), gpu_slots=2) == 2  # --gpus 0,1
    assert parallel(Limits(), gpu_slots=1) == 0
    assert parallel(Limits(parallel_runs=3), parallel=1) == 1  # --parallel-nodes 1


def test_a_nodes_exported_diff_is_against_its_parents_code(tmp_path):
    """In MLflow (the records the export writes), node 5 improves node 1 while node 4 was the run before it."""
    from orchestrator.exporters.mlflow import records
    from orchestrator.workspace import Workspace

    assert run_cli("run", _idea(tmp_path), "--sandbox", tmp_path / "sb", "--parallel-nodes", "1",
                   "--stages", "experiments") == 0
    _idea_name, _ws_id, recs = records(Workspace(only_workspace(tmp_path / "sb")))
    diff = {r.key[0]: r.texts.get("code/diff.patch", "") for r in recs if not r.key[1]}
    assert "-LR = 0.1\n+LR = 0.2" in diff["5"] and "\n-STEPS" not in diff["5"]  # not against node 4 (STEPS = 40)
    assert "-STEPS = 20\n+STEPS = 40" in diff["4"] and "\n-LR" not in diff["4"]
    assert "run_" not in diff["5"] and "notes.txt" not in diff["5"]  # the code only
    assert "-LR = 0.05\n+LR = 0.1" in diff["1"]  # a draft: against the template
