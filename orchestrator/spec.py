"""Idea specs: our JSON format, and AI Scientist's `ideas.json` accepted as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SpecError
from .objective import Objective
from .settings import LimitOverrides, SearchSettings, Strategy
from .validation_message import first_problem

SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
NAME_RULE = "1 to 80 letters, digits, '_', '.' or '-', starting with a letter or digit"


class SeedOverride(BaseModel):
    """An idea's `seeds`: how many seeds each full run gets, and how many must be ok for a result."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=100)
    min_ok: int | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _fits(self) -> SeedOverride:
        if self.min_ok is not None and self.min_ok > self.count:
            raise ValueError(f"min_ok ({self.min_ok}) is more than count ({self.count})")
        return self


class Idea(BaseModel):
    """One research idea: what to try, on which template, within which limits."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="short identifier, used in the workspace's folder name")
    title: str = Field(min_length=1)
    template: str = Field(min_length=1, description="a template name under templates/, or a path")
    experiment: str = Field(min_length=1, description="what to do, in prose")
    implementation_plan: str | None = None
    max_runs: int | None = Field(None, ge=1, le=100)
    transcript: str | None = Field(None, description="a transcript file, relative to the idea file")
    template_config: dict[str, Any] = Field(default_factory=dict)
    limits: LimitOverrides = Field(default_factory=LimitOverrides)
    slurm: dict[str, Any] = Field(default_factory=dict, description="job settings for --executor slurm (executors/slurm.py)")
    seeds: SeedOverride | None = Field(None, description="seeds per full run (overrides the template's [seeds])")
    strategy: Strategy | None = Field(None, description="the experiments stage: linear (default) or tree (--strategy)")
    objective: Objective | None = Field(None, description="what a tree search scores (overrides the template's [objective])")
    search: SearchSettings | None = Field(None, description="how the tree search grows and stops (settings.SearchSettings)")
    tree_transcript: str | None = Field(None, description="the transcript for --strategy tree, relative to the idea file")
    # Kept from AI Scientist's format, shown in notes and reports, never acted on.
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.match(SLUG, v):
            raise ValueError(f"{v!r} is not a usable name: use {NAME_RULE}")
        return v


class LoadedIdea(BaseModel):
    """An idea with where it came from (so relative paths resolve against its file)."""

    idea: Idea
    path: Path
    transcript_path: Path | None
    tree_transcript_path: Path | None = None  # served instead of transcript_path under --strategy tree
    warnings: list[str] = Field(default_factory=list)  # what the user is told, not refused (repeated names)


def unique_names(path: Path, entries: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Each entry's name in an ideas list, a repeated one suffixed `_2`, `_3` ... (AI Scientist's own lists
    repeat names: grokking's has `noisy_grokking` twice), with one warning per renamed entry."""
    raw = [str(e.get("Name", e.get("name", ""))) for e in entries]
    taken, names, warnings = set(raw), [], []
    first: dict[str, int] = {}
    for i, name in enumerate(raw, 1):
        if name not in first:
            first[name] = i
            names.append(name)
            continue
        n = 2
        while f"{name}_{n}" in taken:
            n += 1
        new = f"{name}_{n}"
        taken.add(new)
        names.append(new)
        warnings.append(f"{path}: warning: entry {i} repeats the idea name {name!r} of entry {first[name]}: "
                        f"it is named {new!r} here")
    return names, warnings


def _from_ai_scientist(entry: dict[str, Any], path: Path, template: str | None) -> dict[str, Any]:
    """Map one AI Scientist ideas.json entry (Name, Title, Experiment, ...) onto our fields."""
    if template is None and isinstance(entry.get("template"), str):
        template = entry["template"]  # written by `orchestrate ideas` next to AI Scientist's fields
        if not Path(template).is_absolute() and (path.parent / template).is_dir():
            template = str((path.parent / template).resolve())
    if template is None:
        # AI Scientist keeps ideas.json inside templates/<name>/: that names the template.
        if path.resolve().parent.parent.name == "templates":
            template = str(path.resolve().parent)
        else:
            raise SpecError(path, "AI Scientist ideas name no template: pass --template NAME")
    known = {"Name", "Title", "Experiment", "template", "transcript"}
    missing = [k for k in ("Name", "Title", "Experiment") if k not in entry]
    if missing:
        raise SpecError(path, f"{missing[0]}: field required (AI Scientist format)")
    return {
        "name": entry["Name"],
        "title": entry["Title"],
        "template": template,
        "experiment": entry["Experiment"],
        "extra": {k: v for k, v in entry.items() if k not in known},
        **({"transcript": entry["transcript"]} if isinstance(entry.get("transcript"), str) else {}),
    }


def load_idea(path: Path | str, *, idea_name: str | None = None, template: str | None = None) -> LoadedIdea:
    """Read and validate an idea file. Raises SpecError with a one-line message on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, "no such file") from None
    except IsADirectoryError:
        raise SpecError(path, "a folder, not an idea file") from None
    except PermissionError:
        raise SpecError(path, "cannot read: permission denied") from None
    except UnicodeDecodeError as exc:
        raise SpecError(path, f"not an idea file: not UTF-8 text (byte {exc.start}); an idea is JSON") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None

    warnings: list[str] = []
    if isinstance(raw, list):
        entries = [e for e in raw if isinstance(e, dict)]
        if len(entries) != len(raw) or not entries:
            raise SpecError(path, "an ideas list must hold one or more objects")
        for i, e in enumerate(entries, 1):
            if not str(e.get("Name", e.get("name", ""))).strip():
                title = e.get("Title", e.get("title"))
                raise SpecError(path, f"entry {i}{f' (Title {title!r})' if title else ''} has no \"Name\" field: "
                                "an AI Scientist idea needs Name, Title and Experiment")
        names, warnings = unique_names(path, entries)
        if idea_name is None:
            if len(entries) > 1:
                raise SpecError(path, f"holds {len(entries)} ideas: pick one with --idea NAME ({', '.join(names[:5])})")
            at = 0
        else:
            if idea_name not in names:
                raise SpecError(path, f"no idea named {idea_name!r} (have: {', '.join(names[:8])})")
            at = names.index(idea_name)
        chosen = {**entries[at], "Name" if "Name" in entries[at] else "name": names[at]}
        raw = _from_ai_scientist(chosen, path, template) if "Name" in chosen else chosen
    elif isinstance(raw, dict):
        if "Name" in raw and "name" not in raw:
            raw = _from_ai_scientist(raw, path, template)
        if idea_name is not None and raw.get("name") != idea_name:
            raise SpecError(path, f"no idea named {idea_name!r} (have: {raw.get('name')!r})")
    else:
        raise SpecError(path, "an idea file must be a JSON object or a list of objects")

    if template is not None:
        raw = {**raw, "template": template}
    try:
        idea = Idea.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(path, first_problem(path, exc)) from None

    transcript_path = None
    if idea.transcript:
        transcript_path = (path.parent / idea.transcript).resolve()
        if not transcript_path.is_file():
            raise SpecError(path, f"transcript: no such file {idea.transcript!r}")
    tree_path = None
    if idea.tree_transcript:
        tree_path = (path.parent / idea.tree_transcript).resolve()
        if not tree_path.is_file():
            raise SpecError(path, f"tree_transcript: no such file {idea.tree_transcript!r}")
    return LoadedIdea(idea=idea, path=path.resolve(), transcript_path=transcript_path, tree_transcript_path=tree_path,
                      warnings=warnings)
