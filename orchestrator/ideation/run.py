"""`orchestrate ideas`: generate, check and rank ideas for a template in a folder of its own,
sandbox/<stamp>_ideas_<template>/, whose journal (.orchestrate/journal.jsonl) records every exchange;
the ideas file it writes is what `orchestrate run IDEAS --all` takes."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import env
from ..agents.aider import Budget, require_price
from ..agents.chat import ChatModel
from ..agents.replay import TranscriptSource, export_transcript, load_transcript
from ..env import cache_home
from ..errors import BudgetExceeded, InputError, TranscriptError
from ..events import Artifact, Exchange, Message, StageFinished, StageStarted, WorkspaceCreated
from ..journal import Journal
from ..settings import Limits
from ..template import MANIFEST, Template, find_template, load_template
from . import generate as gen
from . import literature as litmod
from . import novelty, ranking
from .records import IdeaEntry, Novelty, Ranking

STAGE = "ideas"

CHECKOUT = Path(__file__).resolve().parents[2]
MAX_WAIT_S = 60.0  # the most the novelty check spends backing off from a rate-limited service, in all


@dataclass
class IdeasOptions:
    """What `orchestrate ideas` was asked."""

    template: str
    n: int = 3
    reflections: int = 3
    model: str | None = None
    output: Path = Path("ideas.json")
    budget_usd: float | None = None
    top: int | None = None
    offline: bool = False
    literature: str | None = None  # openalex | semanticscholar | offline; None: $ORCHESTRATE_LITERATURE, else by mode
    transcript: Path | None = None
    literature_cache: Path | None = None  # a recorded cache (JSONL), read-only
    novelty_rounds: int = 3
    max_runs: int = 5
    sandbox: Path = Path("sandbox")
    max_wait_s: float = MAX_WAIT_S


def default_transcript(template: Template) -> Path | None:
    """ideas/<template>_ideas.transcript.jsonl, here or in the checkout."""
    for base in (Path.cwd() / "ideas", CHECKOUT / "ideas"):
        p = base / f"{template.manifest.name}_ideas.transcript.jsonl"
        if p.is_file():
            return p
    return None


def _template(name_or_path: str) -> Template:
    """The template ideas are made for; an AI Scientist folder (no template.toml) as adopted, read only:
    its inferred manifest (metrics from the cached baseline, if one was made), seed_ideas.json and prompt.json."""
    from .. import adopt
    from ..env import cache_home

    root = find_template(name_or_path, ai_scientist=True)
    return load_template(root) if (root / MANIFEST).is_file() else adopt.provisional(root, cache=cache_home())


def template_ref(template: Template) -> str:
    """How the ideas file names the template: its name when that finds it, else its folder."""
    try:
        if find_template(template.manifest.name) == template.root:
            return template.manifest.name
    except InputError:
        pass
    return str(template.root)


def _check(opts: IdeasOptions) -> None:
    if not 1 <= opts.n <= 100:
        raise InputError(None, "-n: between 1 and 100")
    if not 0 <= opts.reflections <= 10:
        raise InputError(None, "--reflections: between 0 and 10")
    if opts.top is not None and opts.top < 1:
        raise InputError(None, "--top: at least 1")
    if not 1 <= opts.novelty_rounds <= 10:
        raise InputError(None, "--novelty-rounds: between 1 and 10")
    if opts.budget_usd is not None and opts.budget_usd < 0:
        raise InputError(None, "--budget-usd: not negative")


def run_ideas(opts: IdeasOptions, *, log=print) -> Path:
    """Generate, check and rank; write the ideas file; return the run's folder. Raises typed errors."""
    from ..pipeline import RunOptions, configured_model

    _check(opts)
    template = _template(opts.template)
    model = configured_model(RunOptions(model=opts.model))
    limits = Limits().merged(budget_usd=opts.budget_usd)
    transcript = None
    if model is None:
        path = opts.transcript or default_transcript(template)
        if path is None:
            raise InputError(opts.template, "no model configured and no transcript for this template: pass --model NAME "
                             f"(or set ORCHESTRATE_MODEL), or --transcript FILE "
                             f"(ideas/{template.manifest.name}_ideas.transcript.jsonl)")
        transcript = load_transcript(path)
        if transcript.header.template and transcript.header.template != template.manifest.name:
            raise TranscriptError(path, f"header: transcript is for template {transcript.header.template!r}, "
                                        f"not {template.manifest.name!r}")
    require_price(model, limits)
    lit = _literature(opts, template, scripted=model is None, transcript_path=transcript.path if transcript else None)

    stamp = time.strftime("%Y%m%d_%H%M%S")
    root = opts.sandbox / f"{stamp}_ideas_{template.manifest.name}"
    n = 1
    while root.exists():
        n += 1
        root = opts.sandbox / f"{stamp}_ideas_{template.manifest.name}_{n}"
    state = root / ".orchestrate"
    state.mkdir(parents=True)
    journal = Journal(state / "journal.jsonl")
    agent = f"litellm:{model}" if model else f"transcript:{transcript.path}"  # type: ignore[union-attr]
    journal.append(WorkspaceCreated(
        idea={"name": f"ideas_{template.manifest.name}", "title": f"ideas for {template.manifest.name}",
              "template": template.manifest.name, "experiment": "generate, check and rank ideas (orchestrate ideas)",
              "extra": {"kind": "ideas", "n": opts.n, "reflections": opts.reflections, "top": opts.top,
                        "literature": lit.name}},
        idea_path=str(opts.output), template=template.manifest.name, template_root=str(template.root),
        limits=limits.model_dump(), agent=agent, scripted=bool(transcript and transcript.scripted),
        imported_from="orchestrate ideas"))  # read-only for resume: `show` and `report` read it

    def say(text: str, level: str = "info") -> None:
        log(text)
        journal.append(Message(stage=STAGE, level=level, text=text))  # type: ignore[arg-type]

    source = f"replaying {transcript.path}" if transcript else f"model {model}"
    searched = lit.name if lit.online else f"offline ({lit.down}): answers from the {lit.name} cache and the recorded cache only"
    say(f"ideas for {template.manifest.name}: {source}; literature: {searched}; folder {root}")
    ideation = ChatModel(journal, model=model, transcript=TranscriptSource(transcript) if transcript else None,
                         limits=limits, budget=Budget(limits.budget_usd))
    t0 = time.monotonic()
    entries: list[IdeaEntry] = []
    ref = template_ref(template)
    stopped: BudgetExceeded | None = None
    drafts: list = []

    def entry(d, r: int) -> IdeaEntry:
        return IdeaEntry(**d.model_dump(), template=ref, reflections=r,
                         generated_by={"folder": str(root), "model": ideation.name},
                         novelty=Novelty(checked=False, decision="not checked", reason="novelty not checked: stopped before it"))

    try:
        journal.append(StageStarted(stage=STAGE))
        gen.generate(ideation, template, n=opts.n, reflections=opts.reflections, max_runs=opts.max_runs,
                     existing=gen.seed_ideas(template), log=say, into=drafts)
        entries = [entry(d, r) for d, r in drafts]
        for i, (e, (d, _)) in enumerate(zip(entries, drafts), 1):
            nov, refs = novelty.check(ideation, lit, d, run=i, rounds=opts.novelty_rounds, log=say)
            e.novelty, e.references = nov, refs
            e.novel = None if not nov.checked else nov.decision == "novel"
            say(f"idea {i} {e.Name}: {nov.decision}" + (f" — {nov.reason}" if nov.reason else ""))
        checked = (f"novelty: {sum(e.novelty.checked for e in entries)} of {len(entries)} checked; "
                   f"{lit.requests} request(s), {lit.wait.waited_s:.1f} s backing off")
        say(checked)
        entries, games = _rank(ideation, entries, gen.context_values(template, opts.max_runs), log=say)
        journal.append(StageFinished(stage=STAGE, status="done",
                                     summary=f"{len(entries)} idea(s); {checked}; {len(games)} game(s) ranked"))
    except BudgetExceeded as exc:
        stopped = exc
        entries = entries or [entry(d, r) for d, r in drafts]
        say(str(exc), "warning")
    kept = entries[: opts.top] if opts.top else entries
    _write(root / "ideas.json", [e.dump() for e in entries])
    _write(opts.output, [e.dump() for e in kept])
    journal.append(Artifact(stage=STAGE, kind="ideas", path=str(opts.output.resolve()),
                            detail=f"{len(kept)} of {len(entries)} idea(s)" + (f" (--top {opts.top})" if opts.top else "")))
    exchanges = journal.of(Exchange)
    (state / "ideas.transcript.jsonl").write_text(export_transcript(
        exchanges, idea=None, template=template.manifest.name,  # type: ignore[arg-type]
        note=f"recorded from {agent}" + (" (scripted)" if transcript and transcript.scripted else "")))
    (state / "ideas.literature.jsonl").write_text(litmod.record(lit.used))
    tokens = sum(e.prompt_tokens + e.completion_tokens for e in exchanges)
    say(f"wrote {opts.output}: {len(kept)} idea(s) ({len(entries)} made) in {time.monotonic() - t0:.1f} s; "
        f"{len(exchanges)} exchange(s), {tokens} tokens, ${sum(e.cost_usd for e in exchanges):.4f}")
    for e in kept:
        r = f"#{e.ranking.rank} " if e.ranking else ""
        log(f"  {r}{e.Name}: {e.Title} [I{e.Interestingness} F{e.Feasibility} N{e.Novelty}; {e.novelty.decision}]")
    if stopped:
        raise stopped
    return root


def _rank(chat: ChatModel, entries: list[IdeaEntry], values: dict, *, log) -> tuple[list[IdeaEntry], list]:
    """The entries best first, each with its Ranking, and the games played (none for a single idea)."""
    if len(entries) < 2:
        return entries, []
    keys = ("Name", "Title", "Experiment", "Interestingness", "Feasibility", "Novelty")
    shown = [{k: v for k, v in e.dump().items() if k in keys} | {"novelty": e.novelty.decision} for e in entries]
    strengths, games = ranking.tournament(chat, shown, values, log=log)
    wins, played = [0.0] * len(entries), [0] * len(entries)
    for a, b, score in games:
        wins[a] += score
        wins[b] += 1 - score
        played[a] += 1
        played[b] += 1

    def scores(k: int) -> int:  # the ideas' own scores break a tie in strength
        return entries[k].Interestingness + entries[k].Feasibility + entries[k].Novelty

    order = sorted(range(len(entries)), key=lambda k: (-strengths[k], -scores(k), k))
    for place, k in enumerate(order, 1):
        entries[k].ranking = Ranking(rank=place, strength=round(strengths[k], 4), wins=wins[k], games=played[k])
    return [entries[k] for k in order], games


def _literature(opts: IdeasOptions, template: Template, *, scripted: bool, transcript_path: Path | None) -> litmod.Literature:
    """The search to use: --offline or a scripted replay reads the caches only (unless a backend is named)."""
    kind_env, url = env.literature_backend()
    kind = "offline" if opts.offline else (opts.literature or kind_env or ("offline" if scripted else "openalex"))
    cached_name = kind if kind != "offline" else (kind_env if kind_env not in (None, "offline") else "openalex")
    recorded_path = opts.literature_cache
    if recorded_path is None and transcript_path is not None:
        cand = transcript_path.with_name(transcript_path.name.replace(".transcript.jsonl", ".literature.jsonl"))
        recorded_path = cand if cand.is_file() and cand != transcript_path else None
    recorded = litmod.load_recorded(recorded_path) if recorded_path else {}
    wait = litmod.BoundedWait(opts.max_wait_s)
    backend = litmod.make_backend(kind, url, wait, base_delay_s=env.retry_base_s())
    reason = "--offline" if opts.offline else "offline mode" if kind == "offline" else ""
    if backend is not None and (why := litmod.unreachable(url or litmod.DEFAULT_URLS[kind])):
        backend, reason = None, why
    return litmod.Literature(cached_name, backend, cache_dir=cache_home() / "literature", wait=wait, recorded=recorded,
                             offline_reason=reason)


def _write(path: Path, data: list[dict]) -> None:
    """The ideas file, written whole (a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
