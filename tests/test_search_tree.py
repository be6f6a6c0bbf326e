"""The objective (template.toml's [objective]) and the search tree's read model over journal events."""

from __future__ import annotations

import pytest

from orchestrator.events import BaselineRecorded, NodeCreated, RunRecorded, WorkspaceCreated
from orchestrator.objective import Constraint, Objective
from orchestrator.readmodel import WorkspaceModel
from orchestrator.search.tree import build_tree
from orchestrator.template import Manifest

BASE = dict(name="t", command="python e.py --out_dir={out_dir}", editable=["e.py"], required_keys=["m", "l0"])


def test_objective_scores_ranks_and_checks_constraints():
    o = Objective(metric="m", goal="min", constraints=["l0 <= 30"])
    assert o.constraints == [Constraint(key="l0", op="<=", value=30.0)]
    assert o.score({"m": 0.5}) == 0.5 and o.score({"m": float("nan")}) is None and o.score({}) is None
    assert o.feasible({"l0": 30}) and not o.feasible({"l0": 31}) and not o.feasible({})
    assert o.better(0.1, 0.2) and not Objective(metric="m", goal="max").better(0.1, 0.2)
    assert sorted([(0.3, True), (0.1, False), (0.2, True), (None, True)], key=lambda p: o.rank_key(*p)) \
        == [(0.2, True), (0.3, True), (0.1, False), (None, True)]
    assert o.describe() == "min m subject to l0 <= 30"


@pytest.mark.parametrize("objective, problem", [
    ({"metric": "nope", "goal": "max"}, "'nope' is not one of required_keys"),
    ({"metric": "m", "goal": "up"}, "goal"),
    ({"metric": "m", "goal": "max", "constraints": ["l0 about 3"]}, "is not 'metric <= number'"),
    ({"metric": "m", "goal": "max", "constraints": ["x < 3"]}, "'x' is not one of required_keys"),
])
def test_a_bad_objective_is_refused(objective, problem):
    with pytest.raises(ValueError, match=problem):
        Manifest(**BASE, objective=objective)


def _events(*more):
    head = WorkspaceCreated(idea={}, idea_path="i.json", template="t", template_root="/t", limits={}, agent="x")
    return [head, BaselineRecorded(metrics={"m": 1.0, "l0": 10}), *more]


def test_a_tree_reads_its_nodes_best_node_and_path():
    o = Objective(metric="m", goal="max", constraints=["l0 <= 30"])
    events = _events(
        NodeCreated(run=1, parent=0, kind="draft"), RunRecorded(run=1, status="ok", attempts=1, metrics={"m": 2, "l0": 5}),
        NodeCreated(run=2, parent=0, kind="draft"), RunRecorded(run=2, status="failed", attempts=1, reasons=["boom"]),
        NodeCreated(run=3, parent=2, kind="debug"), RunRecorded(run=3, status="failed", attempts=1),
        NodeCreated(run=4, parent=1, kind="improve"), RunRecorded(run=4, status="ok", attempts=1, metrics={"m": 3, "l0": 9}),
        NodeCreated(run=5, parent=4, kind="improve"), RunRecorded(run=5, status="ok", attempts=1, metrics={"m": 9, "l0": 99}),
        NodeCreated(run=6, parent=4, kind="ablation", ablates=1),
    )
    tree = build_tree(WorkspaceModel.build(events), o)
    assert tree.baseline_score == 1.0
    assert [n.node for n in tree.roots()] == [1, 2]
    assert tree.nodes[1].children == [4] and tree.nodes[4].children == [5, 6]
    assert tree.best().node == 4  # 5 scores higher but breaks l0 <= 30
    assert [n.node for n in tree.best_path()] == [1, 4]
    assert tree.debug_depth(3) == 1 and tree.debug_depth(4) == 0
    assert [n.node for n in tree.ablations()] == [6] and tree.nodes[6].status == "unfinished"
    assert tree.nodes[2].reasons == ["boom"] and tree.nodes[2].score is None


def test_a_linear_journal_reads_as_a_chain():
    events = _events(RunRecorded(run=1, status="ok", attempts=1, metrics={"m": 2, "l0": 1}),
                     RunRecorded(run=2, status="failed", attempts=2))
    tree = build_tree(WorkspaceModel.build(events), Objective(metric="m", goal="min"))
    assert [(n.node, n.parent, n.kind) for n in tree.search_nodes()] == [(1, 0, "draft"), (2, 1, "improve")]
    assert tree.best().node == 1 and [n.node for n in tree.best_path()] == [1]


def test_an_ablation_that_no_longer_comes_out_reads_not_applicable_and_is_never_debugged():
    """The tree takes each node's verdict from the read model: an ablation recorded failed with nothing run and a
    'not applicable:' reason is 'not applicable' (the tree view needs no model to say so); one that ran and failed
    stays failed, and neither is a search node the policy could debug or improve."""
    from orchestrator.search.policy import choose, failed_leaves, rng_for
    from orchestrator.search.render import tree_view
    from orchestrator.settings import SearchSettings

    na = "not applicable: the change of run 1 does not come out of run 2's code (patch does not apply)"
    events = _events(
        NodeCreated(run=1, parent=0, kind="draft"), RunRecorded(run=1, status="ok", attempts=1, metrics={"m": 2, "l0": 5}),
        NodeCreated(run=2, parent=1, kind="improve"), RunRecorded(run=2, status="ok", attempts=1, metrics={"m": 3, "l0": 9}),
        NodeCreated(run=3, parent=2, kind="ablation", ablates=1), RunRecorded(run=3, status="failed", attempts=0, reasons=[na]),
        NodeCreated(run=4, parent=2, kind="ablation", ablates=2),
        RunRecorded(run=4, status="failed", attempts=1, reasons=["smoke: exited with code 1"]),
    )
    tree = build_tree(WorkspaceModel.build(events), Objective(metric="m", goal="max"))
    assert tree.nodes[3].status == "not applicable" and tree.nodes[3].reasons == [na]
    assert tree.nodes[4].status == "failed"  # it ran: a failure, whatever an ablation is
    assert [n.node for n in tree.search_nodes()] == [1, 2] and tree.best().node == 2
    settings = SearchSettings(drafts=1, debug_prob=1.0, explore_prob=0.0)
    assert failed_leaves(tree, settings) == []  # no ablation is a leaf to debug, failed or not
    assert choose(tree, settings, rng_for(0, 5)).kind == "improve"
    views = {v.node: v for v in tree_view(tree).walk()}
    assert views[3].status == "not applicable" and views[3].reason.startswith("the change of run 1 does not come out")
    assert views[4].status == "failed" and views[4].reason == "smoke: exited with code 1"


def test_the_node_whose_reply_ended_the_search_is_not_a_node_of_it():
    """A node is journaled before the agent answers; when its reply ends the search nothing is run for it."""
    from orchestrator.search.tree import SearchTree, TreeNode

    t = SearchTree(objective=Objective(metric="m", goal="min"))
    t.nodes[1] = TreeNode(node=1, parent=0, kind="draft", status="ok", score=1.0, feasible=True)
    t.nodes[2] = TreeNode(node=2, parent=1, kind="improve", status="not run")
    assert [n.node for n in t.search_nodes()] == [1] and t.best().node == 1
