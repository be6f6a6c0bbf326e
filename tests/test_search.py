"""`--strategy tree`: the selection policy (pure), and the search engine end to end on the tiny template with
its scripted tree transcript (tests/fixtures/tiny_tree*): drafts, a failing draft that is debugged, improvements
of the best node; resume after SIGKILL mid-search; replay; the node limits; bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, TINY, cli_subprocess, events, only_workspace, run_cli

from orchestrator.objective import Objective
from orchestrator.search.policy import choose, failed_leaves, rng_for
from orchestrator.search.tree import SearchTree, TreeNode
from orchestrator.settings import SearchSettings

IDEA = FIXTURES / "tiny_tree_idea.json"
# the fixture transcript's tree under search seed 0: (node, parent, kind, status)
TREE = [(1, 0, "draft", "ok"), (2, 0, "draft", "failed"), (3, 2, "debug", "ok"), (4, 1, "improve", "ok"),
        (5, 4, "improve", "ok")]


def _error(lr: float, steps: int) -> float:
    """The tiny template's eval.error after `steps` steps of gradient descent at rate `lr` (from w = 0)."""
    return 3.0 * abs(1 - 2 * lr) ** steps


ERRORS = {1: _error(0.1, 20), 3: _error(0.05, 40), 4: _error(0.1, 40), 5: _error(0.2, 40)}


# -- the policy ----------------------------------------------------------------------------------------

class Draws:
    """A stand-in for random.Random whose draws are given."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def _tree(*nodes: tuple, goal: str = "min") -> SearchTree:
    t = SearchTree(objective=Objective(metric="m", goal=goal))
    for node, parent, kind, status, *score in nodes:
        s = score[0] if score else None
        t.nodes[node] = TreeNode(node=node, parent=parent, kind=kind, status=status, score=s, feasible=s is not None)
    for n in t.nodes.values():
        if n.parent in t.nodes:
            t.nodes[n.parent].children.append(n.node)
    return t


S = SearchSettings(drafts=2, debug_prob=0.5, explore_prob=0.1, max_debug_depth=2)


def test_policy_drafts_first_then_improves_the_best():
    assert choose(_tree(), S, Draws()).kind == "draft"
    assert choose(_tree((1, 0, "draft", "ok", 0.5)), S, Draws()).kind == "draft"
    two = _tree((1, 0, "draft", "ok", 0.5), (2, 0, "draft", "ok", 0.2))
    c = choose(two, S, Draws(0.5))
    assert (c.kind, c.parent) == ("improve", 2) and "node, 2" in c.why
    assert choose(_tree((1, 0, "draft", "ok", 0.5), (2, 0, "draft", "ok", 0.2), goal="max"), S, Draws(0.5)).parent == 1
    assert choose(two, S, Draws(0.05)).kind == "draft"  # explore: a fresh draft


def test_policy_debugs_the_newest_failed_leaf_with_its_probability():
    t = _tree((1, 0, "draft", "ok", 0.5), (2, 0, "draft", "failed"), (3, 0, "draft", "timeout"))
    assert failed_leaves(t, S) == [2, 3]
    c = choose(t, S, Draws(0.4))
    assert (c.kind, c.parent) == ("debug", 3)
    assert choose(t, S, Draws(0.6, 0.9)).kind == "improve"


def test_policy_without_a_result_debugs_else_drafts():
    t = _tree((1, 0, "draft", "failed"), (2, 0, "draft", "degenerate"))
    assert (choose(t, S, Draws(0.9)).kind, choose(t, S, Draws(0.9)).parent) == ("debug", 2)
    dead = _tree((1, 0, "draft", "tampered"), (2, 0, "draft", "misreported"))
    assert failed_leaves(dead, S) == [] and choose(dead, S, Draws()).kind == "draft"


def test_policy_stops_debugging_at_the_depth_limit():
    t = _tree((1, 0, "draft", "ok", 1.0), (2, 0, "draft", "failed"), (3, 2, "debug", "failed"), (4, 3, "debug", "failed"))
    assert t.debug_depth(4) == 2 and failed_leaves(t, S) == []
    assert choose(t, S, Draws(0.9)).kind == "improve"
    assert failed_leaves(t, S.model_copy(update={"max_debug_depth": 3})) == [4]


def test_policy_draws_depend_on_the_seed_and_node_only():
    assert rng_for(0, 3).random() == rng_for(0, 3).random()
    assert rng_for(0, 3).random() != rng_for(1, 3).random() != rng_for(0, 4).random()


# -- the engine, end to end ----------------------------------------------------------------------------

def _shape(ws: Path) -> list[tuple]:
    nodes = {e["run"]: e for e in events(ws, "node_created")}
    recs = {e["run"]: e for e in events(ws, "run_recorded")}
    return [(n, nodes[n]["parent"], nodes[n]["kind"], recs[n]["status"] if n in recs else None) for n in sorted(nodes)]


def _check_tree(ws: Path) -> None:
    assert _shape(ws) == TREE
    recs = {e["run"]: e for e in events(ws, "run_recorded")}
    for n, err in ERRORS.items():
        assert recs[n]["metrics"]["eval.error"] == pytest.approx(err, rel=1e-9)
    assert recs[2]["metrics"] == {} and "NameError" in " ".join(recs[2]["reasons"])
    # no exchange asked twice, no full run judged twice
    keys = [(e["run"], e["attempt"]) for e in events(ws, "exchange")]
    assert len(keys) == len(set(keys)) == 5
    fulls = [(e["run"], e["attempt"], e["seed"]) for e in events(ws, "run_finished") if e["phase"] == "full"]
    assert len(fulls) == len(set(fulls)) == 4


def test_tree_search_drafts_debugs_and_improves(tmp_path):
    assert run_cli("run", IDEA, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    _check_tree(ws)
    rows = events(ws)
    created = events(ws, "workspace_created")[0]
    assert created["options"]["strategy"] == "tree" and created["options"]["objective"]["metric"] == "eval.error"
    assert created["options"]["search"]["max_nodes"] == 5 and created["options"]["search"]["seed"] == 0
    # each node is journaled before its first exchange, and its plan is the agent's text
    for n in range(1, 6):
        first_node = next(e["seq"] for e in rows if e["type"] == "node_created" and e["run"] == n)
        first_ex = next(e["seq"] for e in rows if e["type"] == "exchange" and e["run"] == n)
        assert first_node < first_ex
    plans = {e["run"]: e["plan"] for e in events(ws, "node_created")}
    assert plans[3] == "Plan: remove the undefined name that crashed node 2."
    # a node starts from its parent's code: node 4 is node 1's change plus its own, node 3 node 2's minus the bug
    edits = {e["run"]: e for e in events(ws, "edit_applied")}
    assert "-STEPS = 20" in edits[4]["diff"] and " LR = 0.1" in edits[4]["diff"] and "-LR" not in edits[4]["diff"]
    assert "-BROKEN = undefined_name" in edits[3]["diff"]
    recs = {e["run"]: e for e in events(ws, "run_recorded")}
    code = subprocess.run(["git", "show", f"{recs[4]['commit']}:experiment.py"], cwd=ws, capture_output=True,
                          text=True).stdout
    assert "LR = 0.1" in code and "STEPS = 40" in code and "BROKEN" not in code
    # the prompts: the debug node sees its parent's traceback, the improve node its parent's score
    prompts = {e["run"]: e["prompt"] for e in events(ws, "exchange")}
    assert "debugs node 2" in prompts[3] and "NameError: name 'undefined_name' is not defined" in prompts[3]
    assert "improves node 1" in prompts[4] and "min eval.error" in prompts[4]
    assert "fresh draft" in prompts[2] and "Best node so far: node 1" in prompts[2]
    summary = next(e for e in rows if e["type"] == "stage_finished")["summary"]
    assert summary.startswith("4 result(s) of 5 node(s); best node 5")


def test_tree_search_reads_back_as_a_tree(tmp_path):
    from orchestrator.readmodel import WorkspaceModel
    from orchestrator.search.tree import build_tree
    from orchestrator.workspace import Workspace

    assert run_cli("run", IDEA, "--sandbox", tmp_path / "sb", "--max-nodes", "3") == 0
    ws = Workspace(only_workspace(tmp_path / "sb"))
    tree = build_tree(WorkspaceModel.build(ws.journal.events), ws.manifest.objective)
    assert [(n.node, n.parent, n.kind, n.status) for n in tree.search_nodes()] == TREE[:3]
    assert tree.best().node == 1 and [n.node for n in tree.best_path()] == [1]
    assert tree.nodes[2].children == [3] and tree.debug_depth(3) == 1


def test_search_time_limit_stops_before_a_new_node(tmp_path):
    assert run_cli("run", IDEA, "--sandbox", tmp_path / "sb", "--search-time", "0.01") == 0
    ws = only_workspace(tmp_path / "sb")
    assert _shape(ws) == TREE[:1]
    assert any("time limit" in e["text"] for e in events(ws, "message"))


def test_linear_strategy_overrides_the_idea(tmp_path, capsys):
    # the tree transcript is served under --strategy tree only: this idea names no other
    assert run_cli("run", IDEA, "--sandbox", tmp_path / "sb", "--strategy", "linear") == 2
    assert "names no transcript" in capsys.readouterr().err
    idea = _idea(tmp_path, transcript=str(_linear_transcript(tmp_path)))
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb", "--strategy", "linear", "--max-runs", "1") == 0
    ws = only_workspace(tmp_path / "sb")
    assert events(ws, "node_created") == [] and events(ws, "workspace_created")[0]["options"]["strategy"] == "linear"
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok"]


# -- crash safety and replay -----------------------------------------------------------------------------

def _wait_for(sandbox: Path, pred, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(sandbox.glob("*_tiny_tree")) if sandbox.exists() else []
        if found and pred(found[0]):
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the search never got there")


@pytest.mark.parametrize("point", ["node_created", "during_full_run", "after_exchange"])
def test_sigkill_mid_search_then_resume_loses_no_node_and_runs_none_twice(tmp_path, point):
    sandbox = tmp_path / "sb"
    args = ["run", IDEA, "--sandbox", sandbox]
    if point == "node_created":  # node 3 journaled, nothing asked yet (5th node_created: each node has two)
        proc = cli_subprocess(*args, env={"ORCHESTRATE_FAULT": "after:node_created:5"})
        assert proc.returncode == -signal.SIGKILL
    elif point == "after_exchange":  # node 3's reply recorded, its edit not yet committed
        proc = cli_subprocess(*args, env={"ORCHESTRATE_FAULT": "after:exchange:3"})
        assert proc.returncode == -signal.SIGKILL
    else:  # node 3's full run sleeps 2 s: kill the orchestrator while it runs
        p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *map(str, args), "--stages", "experiments"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        _wait_for(sandbox, lambda ws: any(e["phase"] == "full" and e["run"] == 3 for e in events(ws, "run_started")))
        time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL
    ws = only_workspace(sandbox)
    assert not events(ws, "stage_finished")
    res = cli_subprocess("resume", ws)
    assert res.returncode == 0, res.stderr
    _check_tree(ws)
    assert "resumed" in " ".join(e["text"] for e in events(ws, "message"))


def test_replay_grows_the_same_tree(tmp_path):
    assert run_cli("run", IDEA, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    out = tmp_path / "replays"
    assert run_cli("replay", ws, "--sandbox", out) == 0
    again = only_workspace(out)
    _check_tree(again)
    report = json.loads((again / ".orchestrate" / "replay.json").read_text())
    assert report["divergences"] == []
    assert {d["run"] for d in report["deltas"] if d["metric"] == "eval.error"} == {1, 3, 4, 5}


def test_replay_of_a_tree_with_ablations_runs_them_too_and_a_narrower_replay_does_not_miss_them(tmp_path, capsys):
    # the hsae tree workspace's replay ran only the experiments stage and named its three ablation runs (and
    # their seeds and nodes) "not reached by the replay": 9 divergences, exit 1, for a tree it regrew exactly
    from orchestrator.cli import main

    assert run_cli("run", IDEA, "--sandbox", tmp_path / "sb", "--stages", "experiments,ablations") == 0
    ws = only_workspace(tmp_path / "sb")
    ablations = sorted(e["run"] for e in events(ws, "node_created") if e["kind"] == "ablation")
    assert ablations
    capsys.readouterr()
    assert main(["replay", str(ws), "--sandbox", str(tmp_path / "all")]) == 0  # no --stages: the ablations too
    out = capsys.readouterr().out
    again = only_workspace(tmp_path / "all")
    report = json.loads((again / ".orchestrate" / "replay.json").read_text())
    assert report["divergences"] == [], report["divergences"]
    ran = {e["run"] for e in events(ws, "run_recorded") if e["run"] in ablations and e["status"] == "ok"}
    assert ran and ran <= {d["run"] for d in report["deltas"]}
    assert {e["run"]: e["status"] for e in events(again, "run_recorded") if e["run"] in ablations} == {
        e["run"]: e["status"] for e in events(ws, "run_recorded") if e["run"] in ablations}
    assert sorted(e["run"] for e in events(again, "node_created") if e["kind"] == "ablation") == ablations
    assert "replay reproduced every run within tolerance" in out and "eval.error" in out
    assert main(["replay", str(ws), "--sandbox", str(tmp_path / "exp"), "--stages", "experiments"]) == 0
    narrow = json.loads((only_workspace(tmp_path / "exp") / ".orchestrate" / "replay.json").read_text())
    assert narrow["divergences"] == [] and not set(ablations) & {d["run"] for d in narrow["deltas"]}


def test_tree_divergences_name_a_moved_node():
    from orchestrator.events import NodeCreated
    from orchestrator.replay import tree_divergences

    a = {1: NodeCreated(run=1, parent=0, kind="draft"), 2: NodeCreated(run=2, parent=1, kind="improve")}
    b = {1: NodeCreated(run=1, parent=0, kind="draft"), 2: NodeCreated(run=2, parent=0, kind="draft")}
    assert tree_divergences(a, a) == []
    assert tree_divergences(a, b) == ["node 2: recorded improve from node 1, now draft from the template"]
    assert tree_divergences(a, {1: a[1]}) == ["node 2: not reached by the replay"]


# -- bad input -------------------------------------------------------------------------------------------

def _linear_transcript(tmp_path: Path) -> Path:
    """The tree transcript's header and first reply: a one-run linear transcript for the same idea."""
    linear = tmp_path / "linear.transcript.jsonl"
    linear.write_text("\n".join((FIXTURES / "tiny_tree.transcript.jsonl").read_text().splitlines()[:2]) + "\n")
    return linear


def _idea(tmp_path: Path, **fields) -> Path:
    idea = json.loads(IDEA.read_text())
    idea.update({"template": str(TINY), "tree_transcript": str(FIXTURES / "tiny_tree.transcript.jsonl"), **fields})
    path = tmp_path / "tiny_tree.json"
    path.write_text(json.dumps(idea))
    return path


@pytest.mark.parametrize("objective, words", [
    ({"metric": "eval.nothing", "goal": "min"}, "'eval.nothing' is not one of required_keys"),
    ({"metric": "eval.error", "goal": "median"}, "goal"),
    ({"metric": "eval.error", "goal": "min", "constraints": ["eval.error ~ 3"]}, "constraint"),
])
def test_a_bad_objective_is_one_line_and_exit_2(tmp_path, capsys, objective, words):
    sandbox = tmp_path / "sb"
    assert run_cli("run", _idea(tmp_path, objective=objective), "--sandbox", sandbox) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "tiny_tree.json" in err
    assert not sandbox.exists() or not any(sandbox.iterdir())


def test_tree_without_an_objective_is_refused_before_any_workspace(tmp_path, capsys, tiny_copy):
    toml = tiny_copy / "template.toml"
    toml.write_text(toml.read_text().split("[objective]")[0])
    idea = _idea(tmp_path, template=str(tiny_copy))
    sandbox = tmp_path / "sb"
    assert run_cli("run", idea, "--sandbox", sandbox) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--strategy tree needs an objective" in err and "template.toml" in err
    assert not sandbox.exists() or not any(sandbox.iterdir())
    # the linear strategy needs none
    idea = _idea(tmp_path, template=str(tiny_copy), transcript=str(_linear_transcript(tmp_path)))
    assert run_cli("run", idea, "--sandbox", sandbox, "--strategy", "linear", "--max-runs", "1") == 0


def test_bad_search_flags_are_refused_by_the_parser(tmp_path, capsys):
    for flags in (["--strategy", "beam"], ["--max-nodes", "0"], ["--search-time", "-1"]):
        assert run_cli("run", IDEA, "--sandbox", tmp_path / "sb", *flags) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    bad = _idea(tmp_path, search={"seed": 0, "drafts": 0})
    assert run_cli("run", bad, "--sandbox", tmp_path / "sb") == 2
    assert "drafts" in capsys.readouterr().err


def test_a_missing_tree_transcript_is_refused(tmp_path, capsys):
    bad = _idea(tmp_path, tree_transcript="nowhere.jsonl")
    assert run_cli("run", bad, "--sandbox", tmp_path / "sb") == 2
    assert "tree_transcript: no such file" in capsys.readouterr().err


def test_check_accepts_the_tree_idea():
    assert run_cli("check", IDEA) == 0


# -- the sae template's tree transcript ----------------------------------------------------------------

def test_hsae_tree_transcript_applies_node_by_node_to_its_parents_code():
    """ideas/hsae.tree.transcript.jsonl under search seed 0: each node's edits apply (exact SEARCH) to its
    parent's code as the policy picks it, and every state compiles (its runs: test_sae_tree_search_end_to_end)."""
    from test_sae_template import TEMPLATE, apply_blocks, parse_blocks

    from orchestrator.template import load_template

    idea = json.loads((ROOT / "ideas" / "hsae.json").read_text())
    assert idea["tree_transcript"] == "hsae.tree.transcript.jsonl" and idea["search"]["seed"] == 0
    objective = load_template(TEMPLATE).manifest.objective
    assert objective is not None and objective.describe() == "max core.explained_variance subject to core.l0 <= 30"
    rows = [json.loads(ln) for ln in (ROOT / "ideas" / idea["tree_transcript"]).read_text().splitlines() if ln.strip()]
    assert rows[0]["idea"] == "hsae" and "scripted" in rows[0]["note"]
    nodes = [r for r in rows[1:] if r["stage"] == "experiments"]
    assert [(r["run"], r["attempt"]) for r in nodes] == [(n, 1) for n in range(1, 6)]
    parents = {1: 0, 2: 0, 3: 2, 4: 3}  # draft, draft (crashes in its smoke run), debug 2, improve the best (3)
    code = {0: (TEMPLATE / "experiment.py").read_text()}
    for r in nodes[:4]:
        n = r["run"]
        code[n] = apply_blocks(code[parents[n]], parse_blocks(r["response"]), f"node {n}")
        compile(code[n], f"experiment.py (node {n})", "exec")
    assert "repeat_interleave" not in code[2] and "repeat_interleave" in code[3]
    assert "CONSISTENCY_COEFF = 0.0" in code[4]
    assert not parse_blocks(nodes[4]["response"]) and '"orchestrate": "done"' in nodes[4]["response"]
    # the later stages' lines follow, as in the linear transcript
    assert [r["stage"] for r in rows[1:]][5:] == [r["stage"] for r in rows[1:] if r["stage"] != "experiments"]


def test_sae_tree_search_end_to_end(tmp_path):
    """The sae template under --strategy tree with its tree transcript's first three nodes, at a small size
    (one seed, shortened SAE training): a draft, a draft whose smoke run crashes, and its debug node, each
    evaluated by the template's sealed evaluator and scored by its objective."""
    from test_sae_template import sae_python

    py = sae_python()
    idea = json.loads((ROOT / "ideas" / "hsae.json").read_text())
    idea.update(template=str(ROOT / "templates" / "sae"), tree_transcript=str(ROOT / "ideas" / idea["tree_transcript"]),
                seeds={"count": 1}, template_config={"sae_steps": 200, "syn_steps": 300},
                search={"seed": 0, "drafts": 2, "max_nodes": 3}, limits={"isolation": "none"})
    idea.pop("transcript")
    path = tmp_path / "hsae.json"
    path.write_text(json.dumps(idea))
    assert run_cli("run", path, "--strategy", "tree", "--python", py, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert _shape(ws) == [(1, 0, "draft", "ok"), (2, 0, "draft", "failed"), (3, 2, "debug", "ok")]
    recs = {e["run"]: e for e in events(ws, "run_recorded")}
    assert "size of tensor" in " ".join(recs[2]["reasons"])
    for n in (1, 3):
        assert recs[n]["evaluation"] == "evaluated" and 0.05 <= recs[n]["metrics"]["core.explained_variance"] <= 1
    prompts = {e["run"]: e["prompt"] for e in events(ws, "exchange")}
    assert "debugs node 2" in prompts[3] and "RuntimeError" in prompts[3]
    assert "max core.explained_variance subject to core.l0 <= 30" in prompts[1]


def test_live_tree_search_stops_at_its_budget_and_resume_finishes_it(tmp_path, server, monkeypatch, capsys):
    """Real aider against the loopback server under --strategy tree: the budget stops the search before the
    call that would pass it, a resume with more budget grows the rest of the same tree, nothing asked twice."""
    from fake_openai import Canned

    model = "openai/test-model"
    meta = tmp_path / "models.json"
    meta.write_text(json.dumps({model: {"input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5,
                                        "max_input_tokens": 100000, "litellm_provider": "openai", "mode": "chat"}}))
    monkeypatch.setenv("ORCHESTRATE_MODEL_METADATA", str(meta))
    replies = [json.loads(ln)["response"] for ln in (FIXTURES / "tiny_tree.transcript.jsonl").read_text().splitlines()[1:]]
    server.replies = [Canned(r) for r in replies]
    idea = _idea(tmp_path)
    data = json.loads(idea.read_text())
    data.pop("tree_transcript")
    idea.write_text(json.dumps(data))
    rc = run_cli("run", idea, "--model", model, "--sandbox", tmp_path / "sb", "--budget-usd", "0.06")
    assert rc == 4 and "budget" in capsys.readouterr().err
    ws = only_workspace(tmp_path / "sb")
    asked = len(server.requests)
    assert 0 < asked < 5 and len(events(ws, "exchange")) == asked
    assert run_cli("resume", ws, "--budget-usd", "5") == 0
    assert _shape(ws) == TREE and len(server.requests) == 5
    assert all(not e["scripted"] and e["model"] == model for e in events(ws, "exchange"))


def test_replay_of_a_tree_transcript_grows_its_tree(tmp_path):
    """The transcript an idea names as its tree_transcript replays as a tree search, the idea's strategy aside."""
    idea = _idea(tmp_path)
    data = json.loads(idea.read_text())
    data.pop("strategy")
    idea.write_text(json.dumps(data))
    tr = FIXTURES / "tiny_tree.transcript.jsonl"
    assert run_cli("replay", tr, "--idea-file", idea, "--sandbox", tmp_path / "r") == 0
    _check_tree(only_workspace(tmp_path / "r"))


def test_the_hsae_idea_pins_the_search_its_tree_transcript_was_written_for():
    """The transcript's node 4 improves node 3; with a node in flight node 3 is hidden when node 4 is chosen, so
    node 4 improves node 1, whose code lacks the line the scripted edit changes (it fails: edit not applied) and
    the scripted paper no longer fits. The idea pins 0 nodes in flight, so --parallel 2 or --gpus keep the
    transcript's tree; --parallel-nodes still wins."""
    from orchestrator.search.options import resolve_search
    from orchestrator.settings import Limits
    from orchestrator.spec import load_idea
    from orchestrator.template import load_template

    loaded = load_idea(ROOT / "ideas" / "hsae.json")
    template = load_template(ROOT / "templates" / "sae")

    def parallel(**kw):
        return resolve_search(template, loaded.idea, loaded.path, Limits(parallel_runs=2), strategy="tree",
                              max_nodes=None, wall_s=None, **kw).settings.parallel

    assert parallel() == 0 and parallel(parallel=1) == 1
