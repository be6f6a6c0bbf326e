"""Which node the search makes next: a pure function of the tree so far, the settings and a seeded draw.

The policy (greedy best-first with exploration and a debug-depth limit, after AIDE):

1. Until `drafts` drafts exist, draft anew from the template.
2. A *failed leaf* is a node whose run failed, timed out or was degenerate, that has no child yet and is fewer
   than `max_debug_depth` debug steps down a line of debug nodes. When there is one, with probability
   `debug_prob` debug the newest (the child starts from its code and sees its feedback).
3. With no result yet: debug the newest failed leaf if there is one, else draft anew.
4. Else, with probability `explore_prob` draft anew; otherwise improve the best result under the objective
   (feasible before infeasible, the earliest on a tie: `SearchTree.best`).

A tampered or misreported node is never built on (its code attacked the yardstick); an unfinished node (its
run still going) is neither debugged nor improved. Every draw comes from `rng_for(seed, node)`, a generator
seeded by the search seed and the node's number, so a resume and a replay make the same choices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from ..settings import SearchSettings
from .tree import ROOT, SearchTree

DEBUGGABLE = ("failed", "timeout", "degenerate")


@dataclass(frozen=True)
class Choice:
    """The next node: its kind, the node it starts from (0: the template) and why, in words."""

    kind: Literal["draft", "improve", "debug"]
    parent: int
    why: str


def rng_for(seed: int, node: int) -> random.Random:
    """The draws for choosing node `node`: the same for the same search seed, whatever came before."""
    return random.Random(f"search:{seed}:{node}")


def failed_leaves(tree: SearchTree, settings: SearchSettings) -> list[int]:
    """The nodes a debug step may start from, oldest first."""
    return [n.node for n in tree.search_nodes()
            if n.status in DEBUGGABLE and not n.children and tree.debug_depth(n.node) < settings.max_debug_depth]


def choose(tree: SearchTree, settings: SearchSettings, rng: random.Random) -> Choice:
    """The next node's kind and parent (see the module's docstring for the policy)."""
    nodes = tree.search_nodes()
    drafts = sum(1 for n in nodes if n.kind == "draft")
    if drafts < settings.drafts:
        return Choice("draft", ROOT, f"draft {drafts + 1} of {settings.drafts} from the template")
    leaves = failed_leaves(tree, settings)
    if leaves and rng.random() < settings.debug_prob:
        return Choice("debug", leaves[-1], f"debug node {leaves[-1]} (drawn with probability {settings.debug_prob:g})")
    best = tree.best()
    if best is None:
        if leaves:
            return Choice("debug", leaves[-1], f"no result yet: debug node {leaves[-1]}")
        return Choice("draft", ROOT, "no result yet and nothing left to debug: a fresh draft")
    if rng.random() < settings.explore_prob:
        return Choice("draft", ROOT, f"explore: a fresh draft (drawn with probability {settings.explore_prob:g})")
    score = f" ({tree.objective.metric} {best.score:.6g})" if tree.objective is not None and best.score is not None else ""
    return Choice("improve", best.node, f"improve the best node, {best.node}{score}")
