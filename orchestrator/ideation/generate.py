"""Idea generation, AI Scientist's shape: for each new idea the model sees the template's code,
description and README (and an AI Scientist template's prompt.json: its system prompt and task
description) and every idea that already exists (the template's seed ideas and those made
before it), writes one idea as a fenced JSON block, then refines it over up to R reflection rounds,
stopping early when it says "I am done". A draft that does not parse, or repeats an existing idea (same
name, or a near-identical title), is sent back with the problem; one still unusable after the last round
is dropped and the run says so."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from difflib import SequenceMatcher
from pathlib import Path

from .. import prompts
from ..adopt import PROMPT, SHIPPED_CAP, TemplatePrompt, parse_prompt
from ..agents.chat import ChatModel
from ..paths import readable
from ..template import Template
from .records import IdeaDraft, parse_idea, said_done

SEED_FILE = "seed_ideas.json"  # AI Scientist's name for a template's example ideas
CODE_CAP = 12_000  # characters of each editable file shown to the model
README_CAP = 4_000
STOP = {"a", "an", "the", "of", "for", "and", "in", "on", "with", "to", "via", "by", "from", "against", "at", "as"}


def seed_ideas(template: Template) -> list[dict]:
    """The template's seed_ideas.json (AI Scientist's list of ideas), [] when it has none or it is unusable."""
    path = template.root / SEED_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [e for e in raw if isinstance(e, dict) and e.get("Name") and e.get("Title")] if isinstance(raw, list) else []


def _words(title: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", title.lower()) if w not in STOP}


def duplicate_of(draft: IdeaDraft, existing: list[dict]) -> str | None:
    """The name of an existing idea this draft repeats: the same name, or a near-identical title
    (character similarity >= 0.85, or >= 80% of content words shared)."""
    t = " ".join(draft.Title.lower().split())
    for e in existing:
        if str(e.get("Name", "")).lower() == draft.Name.lower():
            return str(e["Name"])
        other = " ".join(str(e.get("Title", "")).lower().split())
        a, b = _words(t), _words(other)
        jaccard = len(a & b) / len(a | b) if a | b else 0.0
        if SequenceMatcher(None, t, other).ratio() >= 0.85 or jaccard >= 0.8:
            return str(e["Name"])
    return None


def template_code(template: Template) -> list[tuple[str, str]]:
    """(file, text) of the template's editable source files, each capped."""
    out = []
    for rel in template.manifest.editable:
        p = template.root / rel
        if any(c in rel for c in "*?[") or not p.is_file() or p.is_symlink() or p.suffix != ".py":
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        out.append((rel, text if len(text) <= CODE_CAP else text[:CODE_CAP] + "\n# ... (cut)"))
    return out


def _readme(root: Path) -> str:
    p = root / "README.md"
    if not p.is_file() or p.is_symlink():
        return ""
    text = p.read_text(encoding="utf-8", errors="replace")
    return text if len(text) <= README_CAP else text[:README_CAP] + "\n(...)"


def framing(template: Template) -> TemplatePrompt | None:
    """The template's prompt.json (AI Scientist's system prompt and task description), if it has one."""
    path = readable(template.root, PROMPT)
    try:
        return parse_prompt(path.read_text(encoding="utf-8")[:SHIPPED_CAP] if path is not None and path.is_file() else None)
    except (OSError, UnicodeDecodeError):
        return None


def context_values(template: Template, max_runs: int) -> dict:
    m = template.manifest
    return dict(template_name=m.name, description=m.description or "(no description)", command=m.command,
                full_s=m.timeouts.full_s, max_runs=max_runs, key_metrics=m.key_metrics, framing=framing(template))


def generate(model: ChatModel, template: Template, *, n: int, reflections: int, max_runs: int,
             existing: list[dict], log: Callable[[str], None] = print,
             into: list[tuple[IdeaDraft, int]] | None = None) -> list[tuple[IdeaDraft, int]]:
    """n new ideas (fewer when drafts are dropped), each with the reflection rounds it took, appended to
    `into` as they are made (so a budget stop keeps those already made)."""
    values = context_values(template, max_runs)
    system = prompts.render("ideas_system", **values)
    code = template_code(template)
    readme = _readme(template.root)
    known = list(existing)
    made: list[tuple[IdeaDraft, int]] = [] if into is None else into
    for i in range(1, n + 1):
        previous = json.dumps([{k: e.get(k) for k in ("Name", "Title", "Experiment")} for e in known], indent=1)
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": prompts.render("ideas_generate", **values, files=[f for f, _ in code],
                                                               code=code, readme=readme, previous=previous)}]
        reply = model.ask(messages, step="generate", run=i, attempt=1)
        rounds = 1
        while True:
            draft, problem = parse_idea(reply)
            dup = duplicate_of(draft, known) if draft else None
            problems = [problem] if problem else [f"it repeats the existing idea {dup!r}: propose a different one"] if dup else []
            if (not problems and said_done(reply) and rounds > 1) or rounds > reflections:
                break
            if problems:
                log(f"idea {i}, round {rounds}: {problems[0]}")
            rounds += 1
            messages = [*messages, {"role": "assistant", "content": reply},
                        {"role": "user", "content": prompts.render("ideas_reflect", round=rounds, rounds=reflections + 1,
                                                                   problems=problems)}]
            reply = model.ask(messages, step="reflect", run=i, attempt=rounds)
        if problems:
            log(f"idea {i}: dropped after {rounds} round(s): {problems[0]}")
            continue
        assert draft is not None
        log(f"idea {i}: {draft.Name} — {draft.Title} ({rounds} round(s))")
        known.append(draft.model_dump())
        made.append((draft, rounds - 1))
    return made
