"""benchmarks/search.py's machinery at its smallest (1 seed, N = 4): the landscape template, the seeded stand-in
agent and a real search through the pipeline (aider's edit path, git, subprocesses at isolation none)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
from conftest import ROOT

from orchestrator.readmodel import WorkspaceModel
from orchestrator.search.tree import build_tree
from orchestrator.template import load_template
from orchestrator.workspace import Workspace

_spec = importlib.util.spec_from_file_location("search_benchmark", ROOT / "benchmarks" / "search.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # its dataclasses look their module up
_spec.loader.exec_module(bench)

CODE = (bench.LANDSCAPE / "experiment.py").read_text()


def settings_of(code: str) -> dict[str, float]:
    return {k: float(v) for k, v in bench.SETTING.findall(code)}


def crashes(s: dict[str, float]) -> bool:
    return s["X"] + s["Y"] > 1.25 or (s["X"] > 0.85 and s["Z"] > 0.65)


def test_the_landscape_has_its_known_optimum_and_baseline():
    m = load_template(bench.LANDSCAPE).manifest
    assert m.objective is not None and m.objective.metric == "score" and m.objective.goal == "max"
    base = json.loads((bench.LANDSCAPE / "run_0" / "final_info.json").read_text())
    assert base["score"] == pytest.approx(bench.landscape_score(0.5, 0.5, 0.5))
    assert bench.landscape_score(0.80, 0.25, 0.60) == pytest.approx(bench.OPTIMUM, abs=1e-4)
    grid = [bench.landscape_score(x / 20, y / 20, z / 20) for x in range(21) for y in range(21) for z in range(21)]
    assert max(grid) <= bench.OPTIMUM + 1e-9
    assert settings_of(CODE) == {"X": 0.5, "Y": 0.5, "Z": 0.5}


def test_the_stand_in_agent_is_deterministic_per_seed():
    a, b, c = (bench.StandInAgent(seed, lambda: CODE) for seed in (1, 1, 2))
    requests = [("experiments", run, 1, "edit") for run in range(1, 9)]
    ra = [a.next(*r).text for r in requests]
    assert ra == [b.next(*r).text for r in requests]
    assert ra != [c.next(*r).text for r in requests]
    for text in ra:  # every reply moves at least one setting, inside [0, 1], with a block that matches the code
        blocks = re.findall(r"<<<<<<< SEARCH\n(\w) = (\S+)\n=======\n\w = (\S+)\n>>>>>>> REPLACE", text)
        assert blocks and all(f"{k} = {old}" in CODE and old != new and 0 <= float(new) <= 1 for k, old, new in blocks)
    # the reply depends on the code it is shown: the same request on other code moves from there
    other = CODE.replace("X = 0.5", "X = 0.9")
    d = bench.StandInAgent(1, lambda: other)
    searched = [re.findall(r"<<<<<<< SEARCH\n(\w = \S+)\n", d.next(*r).text) for r in requests]
    assert all(line in ("X = 0.9", "Y = 0.5", "Z = 0.5") for lines in searched for line in lines)
    assert any("X = 0.9" in lines for lines in searched)


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search-bench")
    # seed 9 crashes at its second node and climbs out; seed 4 trains nothing at its second (Z < 0.1)
    return [bench.run_search("linear", seed, 4, tmp / f"l{i}", keep=True) for i, seed in enumerate((9, 9, 4))]


def test_a_linear_search_replays_the_same_for_a_seed(linear):
    first, again, _ = linear
    assert first.nodes == 4 and first.replies == 4  # one edit per node
    assert first.scores == again.scores and first.statuses == again.statuses


@pytest.mark.parametrize("which", [0, 2])
def test_the_best_objective_is_the_running_best_of_what_each_node_computed(linear, which):
    s = linear[which]
    assert "ok" in s.statuses and {"failed", "degenerate"} & set(s.statuses)
    bests = [s.best_after(n) for n in range(1, s.nodes + 1)]
    got = [b for b in bests if b is not None]
    assert got == sorted(got)  # monotone in N
    ws = Workspace(s.workspace)
    tree = build_tree(WorkspaceModel.build(ws.journal.events, ws.root), ws.manifest.objective)
    for n, score, status in zip(tree.search_nodes(), s.scores, s.statuses, strict=True):
        code = settings_of(ws.git("show", f"{n.commit}:experiment.py"))
        if status == "ok":  # the score is the landscape at the node's own code
            assert score == pytest.approx(bench.landscape_score(code["X"], code["Y"], code["Z"]))
            assert not crashes(code) and code["Z"] >= 0.1
        elif status == "failed":
            assert crashes(code)
        else:
            assert status == "degenerate" and code["Z"] < 0.1
    text = bench.table({"linear": [s]}, [2, 4])
    assert text.splitlines()[0].split()[:1] == ["strategy"] and "N = 4" in text
    assert re.search(r"^linear\s+\d\.\d{3} ± 0\.000\s+\d\.\d{3} ± 0\.000", text, re.M)


def test_the_timing_counts_overlapping_work_once(linear):
    assert bench.covered([(0, 2), (1, 3), (5, 6)], 0, 10) == 4
    assert bench.covered([(-1, 1), (9, 12)], 0, 10) == 2
    s = linear[0]  # one slot: the experiments and the agent take turns, the rest is the orchestrator's
    assert 0 < s.idle_s < s.span_s and s.busy_s + s.agent_s + s.idle_s == pytest.approx(s.span_s, abs=0.05)
    assert bench.uncovered([(0, 2), (1, 3), (5, 6)], 0, 10) == [(3, 5), (6, 10)]
    # the idle time, split by the journal events it lies between, adds up to the whole
    assert sum(s.idle_by_step.values()) == pytest.approx(s.idle_s, abs=1e-6)
    parts = list(s.idle_by_step.values())
    assert all(" -> " in k for k in s.idle_by_step) and parts == sorted(parts, reverse=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search-bench-tree")
    return [bench.run_search("tree", 1, 5, tmp / f"t{i}", keep=True) for i in range(2)]


def test_a_tree_search_replays_the_same_for_a_seed_and_scores_each_node_at_its_code(tree):
    first, again = tree
    assert first.nodes == 5 and first.replies == 5 and first.kinds.get("draft", 0) >= 1
    assert first.scores == again.scores and first.statuses == again.statuses and first.kinds == again.kinds
    got = [b for b in (first.best_after(n) for n in range(1, 6)) if b is not None]
    assert got and got == sorted(got)
    ws = Workspace(first.workspace)
    t = build_tree(WorkspaceModel.build(ws.journal.events, ws.root), ws.manifest.objective)
    for n, score in zip(t.search_nodes(), first.scores, strict=True):
        code = settings_of(ws.git("show", f"{n.commit}:experiment.py"))
        parent = settings_of(ws.git("show", f"{n.base_commit}:experiment.py"))
        assert sum(code[k] != parent[k] for k in code) >= 1  # the agent moved its parent's settings
        if score is not None:
            assert score == pytest.approx(bench.landscape_score(code["X"], code["Y"], code["Z"]))
    text = bench.table({"linear": [], "tree": [first]}, [5])
    assert re.search(r"^tree\s+\d\.\d{3} ± 0\.000", text, re.M)
