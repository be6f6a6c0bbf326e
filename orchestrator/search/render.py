"""The search tree for people: one view model of a workspace's tree (each node's line, its place, whether it
is on the best path) that the terminal (`show.py`) and the HTML report (`report/`) both draw, so the two
say the same thing. Everything here is read from the journal through `build_tree`; nothing is printed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..formatting import delta, fmt_num
from ..readmodel import NOT_APPLICABLE, NOT_APPLICABLE_REASON
from ..timeline import Timeline
from .tree import SearchTree, TreeNode, build_tree

BEST = "★"  # marks the nodes on the path to the best node
PLAN_CHARS = 80


@dataclass
class NodeView:
    """One node as a view draws it: its number, kind, verdict and score, and its place in the tree."""

    node: int
    parent: int
    kind: str
    status: str
    score: float | None
    score_text: str  # the objective's metric, formatted ("" when the node has no score)
    change: str  # the score's change against the baseline ("" when unknown)
    feasible: bool
    on_best_path: bool
    best: bool
    plan: str  # the agent's plan, first line, shortened
    reason: str  # why it is not a result (its first reason)
    ablates: int | None
    depth: int
    children: list[NodeView] = field(default_factory=list)

    @property
    def what(self) -> str:
        """Its kind, with what an ablation removes: "improve", "ablation of node 3"."""
        return f"ablation of node {self.ablates}" if self.kind == "ablation" and self.ablates is not None else self.kind

    @property
    def score_note(self) -> str:
        """"0.93 (+12.0%)", with "infeasible" when it breaks a constraint; "" without a score."""
        if not self.score_text:
            return ""
        text = self.score_text + (f" ({self.change})" if self.change else "")
        return text + ("" if self.feasible else " infeasible")


@dataclass
class TreeView:
    """A workspace's search tree for the views: the objective, the baseline, the best node and its path, and
    the nodes in drawing order (roots first, each followed by its children)."""

    objective: str  # Objective.describe(), or why there is none
    metric: str | None
    baseline: str
    roots: list[NodeView]
    best: NodeView | None
    best_path: list[int]
    counts: dict[str, int]  # nodes by kind

    def walk(self) -> Iterator[NodeView]:
        """Every node in drawing order (depth first)."""
        stack = list(reversed(self.roots))
        while stack:
            n = stack.pop()
            yield n
            stack.extend(reversed(n.children))

    @property
    def best_line(self) -> str:
        """"best: node 4 — eval.score 0.93 (+12.0%), path 1 → 4", or why there is no best node."""
        if self.best is None:
            return "best: none yet (no node is a result" + (" with a score" if self.metric else "") + ")"
        path = " → ".join(str(n) for n in self.best_path)
        score = f" — {self.metric} {self.best.score_note}" if self.metric and self.best.score_note else ""
        return f"best: node {self.best.node}{score}, path {path}"

    @property
    def summary(self) -> str:
        """The objective, the baseline's score, how many nodes of which kind, in one line."""
        kinds = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        base = f"; baseline {self.baseline}" if self.baseline else ""
        return f"objective: {self.objective}{base}; {sum(self.counts.values())} node(s) ({kinds})"


def _first_line(text: str, limit: int = PLAN_CHARS) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _node_view(tree: SearchTree, n: TreeNode, best: int | None, path: set[int], depth: int) -> NodeView:
    reason = "" if n.is_result else _first_line("; ".join(n.reasons), 120)
    if n.status == NOT_APPLICABLE:  # the verdict says it already
        reason = reason.removeprefix(NOT_APPLICABLE_REASON).strip()
    return NodeView(
        node=n.node, parent=n.parent, kind=n.kind, status=n.status, score=n.score,
        score_text="" if n.score is None else fmt_num(n.score),
        change=delta(n.score, tree.baseline_score) if n.score is not None else "",
        feasible=n.feasible,
        on_best_path=n.node in path, best=n.node == best, plan=_first_line(n.plan),
        reason=reason, ablates=n.ablates, depth=depth,
    )


def tree_view(tree: SearchTree) -> TreeView:
    """The view model of a search tree (each node's status is the read model's, as build_tree gives it: an ablation
    whose change no longer comes out reads "not applicable", not "failed")."""
    best = tree.best()
    path = [n.node for n in tree.best_path()]
    on_path = set(path)
    seen: set[int] = set()

    def view(n: TreeNode, depth: int) -> NodeView:
        seen.add(n.node)
        v = _node_view(tree, n, best.node if best else None, on_path, depth)
        v.children = [view(tree.nodes[c], depth + 1) for c in sorted(n.children) if c not in seen]
        return v

    roots = [view(n, 0) for n in tree.roots() if n.node not in seen]
    # an ablation whose parent is not a node, or anything a cycle kept out, still gets drawn (at the top)
    roots += [view(n, 0) for _, n in sorted(tree.nodes.items()) if n.node not in seen]
    counts: dict[str, int] = {}
    for n in sorted(tree.nodes.values(), key=lambda n: n.node):
        counts[n.kind] = counts.get(n.kind, 0) + 1
    o = tree.objective
    nodes = {v.node: v for r in roots for v in _walk(r)}
    return TreeView(
        objective=o.describe() if o is not None else "none declared (the best node is the last result)",
        metric=o.metric if o is not None else None,
        baseline=fmt_num(tree.baseline_score) if tree.baseline_score is not None else "",
        roots=roots, best=nodes.get(best.node) if best else None, best_path=path, counts=counts,
    )


def _walk(v: NodeView) -> Iterator[NodeView]:
    yield v
    for c in v.children:
        yield from _walk(c)


def search_view(tl: Timeline) -> TreeView | None:
    """The tree of a workspace the search made (`node_created` events), None for a linear one."""
    if not tl.model.nodes:
        return None
    return tree_view(build_tree(tl.model, tl.objective))


def linear_best(tl: Timeline) -> str | None:
    """For a linear workspace with an objective: "best under the objective (max m): run 3 — 0.93 (+12.0%)";
    None without an objective or a scored result."""
    if tl.objective is None or tl.model.nodes:
        return None
    view = tree_view(build_tree(tl.model, tl.objective))
    if view.best is None:
        return None
    return f"best under the objective ({tl.objective.describe()}): run {view.best.node} — {view.best.score_note}"
