"""The novelty check: the idea's title is searched, the model reads the papers found (title, year, venue,
abstract, link) and either decides — novel or not — naming the papers it relied on, or asks a follow-up
query in its JSON block; at most `rounds` rounds, the last one must decide. With no search possible
(offline and not in the cache, or the service down) the idea's novelty is "not checked": no model call,
no failure."""

from __future__ import annotations

import json
from collections.abc import Callable

from pydantic import BaseModel, ValidationError, field_validator

from .. import prompts
from ..agents.chat import ChatModel, json_blocks
from ..citations import Paper
from .literature import Literature
from .records import IdeaDraft, Novelty, Reference

LIMIT = 5  # papers per query
MAX_REFERENCES = 10


class Verdict(BaseModel):
    """The model's answer in one round."""

    decision: str | None = None
    query: str | None = None
    relied_on: list[int] = []
    reason: str = ""

    @field_validator("decision")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().lower()
        if v not in ("novel", "not novel"):
            raise ValueError("decision must be 'novel', 'not novel' or null")
        return v


def parse_verdict(text: str) -> Verdict | None:
    for raw in reversed(json_blocks(text)):
        if isinstance(raw, dict):
            try:
                return Verdict.model_validate(raw)
            except ValidationError:
                continue
    return None


def _merge(found: list[Paper], new: list[Paper]) -> list[Paper]:
    seen = {" ".join(p.title.lower().split()) for p in found}
    return found + [p for p in new if " ".join(p.title.lower().split()) not in seen]


def check(model: ChatModel, lit: Literature, draft: IdeaDraft, *, run: int, rounds: int = 3,
          log: Callable[[str], None] = print) -> tuple[Novelty, list[Reference]]:
    """The idea's novelty decision and the papers found (those relied on first) as candidate references."""
    query = draft.Title
    first = lit.search(query, LIMIT)
    log(_searched(run, first))
    if first.papers is None:
        return Novelty(checked=False, decision="not checked", backend=lit.name, queries=[query],
                       reason=f"novelty not checked: {first.note or 'offline'}"), []
    papers: list[Paper] = list(first.papers)
    queries = [query]
    idea = json.dumps(draft.model_dump(), indent=1)
    messages: list[dict] = [{"role": "system", "content": "You judge the novelty of research ideas against the literature."}]
    unavailable = ""
    verdict: Verdict | None = None
    for r in range(1, rounds + 1):
        messages.append({"role": "user", "content": prompts.render(
            "ideas_novelty", first=r == 1, idea=idea, round=r, rounds=rounds, query=query, papers=papers,
            unavailable=unavailable, last=r == rounds)})
        reply = model.ask(messages, step="novelty", run=run, attempt=r)
        messages.append({"role": "assistant", "content": reply})
        verdict = parse_verdict(reply)
        if verdict is None or verdict.decision or r == rounds or not verdict.query:
            break
        query = verdict.query
        queries.append(query)
        more = lit.search(query, LIMIT)
        log(_searched(run, more))
        unavailable = "" if more.papers is not None else f"the search could not be made: {more.note or 'offline'}"
        papers = _merge(papers, more.papers or [])
    relied = [papers[i - 1] for i in (verdict.relied_on if verdict else []) if 1 <= i <= len(papers)]
    others = [p for p in papers if p not in relied]
    refs = [Reference.of(p) for p in (relied + others)[:MAX_REFERENCES]]
    if verdict is None or verdict.decision is None:
        return Novelty(checked=False, decision="not checked", backend=lit.name, queries=queries, rounds=len(queries),
                       reason="novelty not checked: the model gave no decision"), refs
    return Novelty(checked=True, decision=verdict.decision, reason=verdict.reason, backend=lit.name,  # type: ignore[arg-type]
                   queries=queries, rounds=sum(1 for m in messages if m["role"] == "assistant"),
                   relied_on=[p.title for p in relied]), refs


def _searched(run: int, s) -> str:
    n = "not searched" if s.papers is None else f"{len(s.papers)} paper(s)"
    extra = f", {s.requests} request(s), {s.waited_s:.1f} s backing off" if s.requests else ""
    return f"idea {run}: literature {s.source}: {s.query!r}: {n}{extra}" + (f" ({s.note})" if s.papers is None and s.note else "")
