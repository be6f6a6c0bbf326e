"""The search tree of a workspace, read from its journal: every node (a numbered run) with its parent, its
kind, its verdict and its score under the objective, the best node and the path that led there.

A journal of the linear strategy (no `node_created` events) reads as a chain: run k's parent is run k-1
(run 1's is 0, the template), because each run starts from the code the previous one left. So every
view, the ablations and the paper work on both strategies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..objective import Objective
from ..readmodel import WorkspaceModel

ROOT = 0  # the template's code (the baseline run_0): every draft's parent


@dataclass
class TreeNode:
    node: int  # its run number
    parent: int  # 0: the template
    kind: str  # draft | improve | debug | ablation
    status: str  # the run's verdict as the read model gives it (RunView.status: "not applicable" for an ablation
    #              whose change no longer comes out, never the "failed" it is recorded as), or "unfinished"
    score: float | None = None  # the objective's metric for a result; None otherwise
    feasible: bool = False  # a result whose metrics meet every constraint
    commit: str | None = None  # the node's code
    base_commit: str | None = None  # the parent's code it started from
    plan: str = ""
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    ablates: int | None = None
    children: list[int] = field(default_factory=list)

    @property
    def is_result(self) -> bool:
        return self.status == "ok"


@dataclass
class SearchTree:
    objective: Objective | None
    nodes: dict[int, TreeNode] = field(default_factory=dict)
    baseline_score: float | None = None

    # -- queries -----------------------------------------------------------------------------------
    def search_nodes(self) -> list[TreeNode]:
        """The nodes the search made (ablations aside), by number; not the one whose reply ended the search (it
        was journaled before the agent answered, and nothing was run for it)."""
        return [n for _, n in sorted(self.nodes.items()) if n.kind != "ablation" and n.status != "not run"]

    def ablations(self) -> list[TreeNode]:
        return [n for _, n in sorted(self.nodes.items()) if n.kind == "ablation"]

    def roots(self) -> list[TreeNode]:
        return [n for n in self.search_nodes() if n.parent == ROOT or n.parent not in self.nodes]

    def best(self) -> TreeNode | None:
        """The best result under the objective (feasible before infeasible; the earliest on a tie); without an
        objective, the last result."""
        results = [n for n in self.search_nodes() if n.is_result]
        if not results:
            return None
        if self.objective is None:
            return results[-1]
        scored = [n for n in results if n.score is not None]
        if not scored:
            return None
        return min(scored, key=lambda n: (self.objective.rank_key(n.score, n.feasible), n.node))  # type: ignore[union-attr]

    def path_to(self, node: int) -> list[TreeNode]:
        """The nodes from the first draft down to `node` (the template itself excluded)."""
        out: list[TreeNode] = []
        seen: set[int] = set()
        while node in self.nodes and node not in seen:
            seen.add(node)
            out.append(self.nodes[node])
            node = self.nodes[node].parent
        return list(reversed(out))

    def best_path(self) -> list[TreeNode]:
        b = self.best()
        return self.path_to(b.node) if b else []

    def debug_depth(self, node: int) -> int:
        """How many debug steps in a row led to `node` (0: it is not a debug node)."""
        depth = 0
        while node in self.nodes and self.nodes[node].kind == "debug":
            depth += 1
            node = self.nodes[node].parent
        return depth


def _code_of(run, made) -> str | None:
    """A node's code: a search node's is its edit's commit (its result's commit may have been made while the
    tree held another node's code: the notes and run folder landing alone); a linear run's or an ablation's is
    its result's commit, else its last edit's."""
    rec = run.recorded
    if made is not None and made.kind != "ablation" and run.edits:
        return run.edits[-1].commit or (rec.commit if rec is not None else None)
    return (rec.commit if rec is not None else None) or run.code_commit


def build_tree(model: WorkspaceModel, objective: Objective | None) -> SearchTree:
    """The tree of the workspace folded in `model`, each result scored under `objective`."""
    tree = SearchTree(objective=objective)
    if objective is not None:
        base = model.baseline
        tree.baseline_score = objective.score(base.metrics) if base is not None else None
    linear = all(n.kind == "ablation" for n in model.nodes.values())  # ablations alone: still a linear search
    for run in model.run_list():
        made = model.nodes.get(run.run)
        if made is None and not linear:
            continue  # a run outside the search (none today): not a node
        rec = run.recorded
        status = run.status  # the read model's verdict, not the raw RunRecorded.status (see TreeNode.status)
        metrics = dict(rec.metrics) if rec is not None and rec.status == "ok" else {}
        score = objective.score(metrics) if objective is not None and metrics else None
        tree.nodes[run.run] = TreeNode(
            node=run.run,
            parent=made.parent if made is not None else run.run - 1,
            kind=made.kind if made is not None else ("draft" if run.run == 1 else "improve"),
            status=status,
            score=score,
            feasible=score is not None and objective is not None and objective.feasible(metrics),
            commit=_code_of(run, made),
            base_commit=made.base_commit if made is not None else None,
            plan=made.plan if made is not None else "",
            reasons=list(run.reasons),
            metrics=metrics,
            ablates=made.ablates if made is not None else None,
        )
    for n in tree.nodes.values():
        if n.parent in tree.nodes:
            tree.nodes[n.parent].children.append(n.node)
    return tree
