"""Ranking ideas: a pairwise tournament judged by the model, scored with a Bradley-Terry model fitted
by Hunter's MM iterations.

Why Bradley-Terry and not Elo: Elo updates after each game, so the ranking depends on the order in
which the pairs were judged and on its K factor; Bradley-Terry fits every comparison at once (the
maximum-likelihood strengths p_i with P(i beats j) = p_i / (p_i + p_j)), order-free, and MM converges
monotonically to it. An idea that wins (or loses) every game has no finite MLE, so each idea also plays
one virtual game against a reference of strength 1 that it half wins (a weak prior); strengths are
relative to that reference. An unparsable judgement counts as a draw (half a win each)."""

from __future__ import annotations

import json
from collections.abc import Callable

from .. import prompts
from ..agents.chat import ChatModel, json_blocks

ALL_PAIRS_UP_TO = 8  # up to this many ideas every pair plays; beyond, each idea plays GAMES neighbours
GAMES = 4


def pairs(n: int) -> list[tuple[int, int]]:
    """The games of a tournament between n ideas (0-based indices), deterministic."""
    if n <= ALL_PAIRS_UP_TO:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    out: set[tuple[int, int]] = set()
    for i in range(n):
        for off in range(1, GAMES // 2 + 1):
            j = (i + off * (1 + i % 3)) % n  # varied strides, so the graph is connected and not a plain ring
            if i != j:
                out.add((min(i, j), max(i, j)))
    return sorted(out)


def bradley_terry(n: int, games: list[tuple[int, int, float]], *, iters: int = 500, tol: float = 1e-10) -> list[float]:
    """Strengths from games (i, j, score of i: 1 win, 0 loss, 0.5 draw), MM iterations with the prior above."""
    wins = [0.5] * n  # the virtual half win against the reference
    count: dict[tuple[int, int], float] = {}
    for i, j, s in games:
        wins[i] += s
        wins[j] += 1 - s
        count[(i, j)] = count.get((i, j), 0) + 1
        count[(j, i)] = count.get((j, i), 0) + 1
    p = [1.0] * n
    for _ in range(iters):
        new = []
        for i in range(n):
            denom = 1.0 / (p[i] + 1.0) + sum(c / (p[i] + p[j]) for (a, j), c in count.items() if a == i)
            new.append(wins[i] / denom)
        delta = max(abs(a - b) for a, b in zip(new, p)) if n else 0.0
        p = new
        if delta < tol:
            break
    return p


def judge(text: str) -> float | None:
    """1.0 when the reply names A the winner, 0.0 for B, None when it names neither."""
    for raw in reversed(json_blocks(text)):
        if isinstance(raw, dict) and str(raw.get("winner", "")).strip().upper() in ("A", "B"):
            return 1.0 if str(raw["winner"]).strip().upper() == "A" else 0.0
    return None


def tournament(model: ChatModel, ideas: list[dict], values: dict, *,
               log: Callable[[str], None] = print) -> tuple[list[float], list[tuple[int, int, float]]]:
    """Judge every game (alternating which idea is shown first, against position bias) and fit strengths."""
    games = []
    for k, (i, j) in enumerate(pairs(len(ideas)), 1):
        a, b = (i, j) if k % 2 else (j, i)
        reply = model.ask([{"role": "system", "content": "You are a careful research lead allocating compute."},
                           {"role": "user", "content": prompts.render("ideas_rank", **values, a=json.dumps(ideas[a], indent=1),
                                                                      b=json.dumps(ideas[b], indent=1))}],
                          step="rank", run=k)
        s = judge(reply)
        if s is None:
            log(f"game {k}: no winner named; counted as a draw")
            s = 0.5
        games.append((a, b, s))
        log(f"game {k}: {ideas[a]['Name']} vs {ideas[b]['Name']}: " +
            ("draw" if s == 0.5 else f"{ideas[a if s == 1.0 else b]['Name']} wins"))
    return bradley_terry(len(ideas), games), games
