"""The ideation's file formats: the model's idea (AI Scientist's JSON), the novelty decision, the
references found, and the ideas file `orchestrate run ideas.json --all` takes."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..agents.chat import json_blocks
from ..citations import Bibliographic, Paper
from ..spec import SLUG

DONE = "I am done"


def said_done(text: str) -> bool:
    """Whether a reply ends the reflection ("I am done", AI Scientist's phrase)."""
    return DONE.lower() in text.lower()


def slug(name: str) -> str:
    """A name the idea spec accepts (letters, digits, `_.-`; 80 characters)."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("_.-")[:80]
    return s or "idea"


class IdeaDraft(BaseModel):
    """One idea as the model writes it (AI Scientist's fields); scores 1-10."""

    model_config = ConfigDict(extra="ignore")

    Name: str = Field(min_length=1)
    Title: str = Field(min_length=1)
    Experiment: str = Field(min_length=1)
    Interestingness: int = Field(ge=1, le=10)
    Feasibility: int = Field(ge=1, le=10)
    Novelty: int = Field(ge=1, le=10)

    @field_validator("Name")
    @classmethod
    def _slug(cls, v: str) -> str:
        return slug(v)


def parse_idea(text: str) -> tuple[IdeaDraft | None, str]:
    """The last fenced json block that is an idea, or (None, why not)."""
    blocks = json_blocks(text)
    if not blocks:
        return None, "the reply has no ```json block"
    problem = ""
    for raw in reversed(blocks):
        try:
            return IdeaDraft.model_validate(raw), ""
        except ValidationError as exc:
            err = exc.errors()[0]
            problem = f"{'.'.join(str(p) for p in err['loc']) or 'idea'}: {err['msg']}"
    return None, f"the json block is not an idea ({problem})"


class Reference(Bibliographic):
    """A paper the novelty check found: a candidate reference for the idea's paper, with its BibTeX entry."""

    bibtex: str = ""

    @classmethod
    def of(cls, p: Paper) -> Reference:
        return cls(**p.model_dump(include=set(Bibliographic.model_fields)), bibtex=p.bibtex())

    def paper(self) -> Paper:
        return Paper(**self.model_dump(include=set(Bibliographic.model_fields)))


class Novelty(BaseModel):
    """The novelty check's outcome for one idea. `decision` "not checked" when no search could be made."""

    checked: bool
    decision: Literal["novel", "not novel", "not checked"]
    reason: str = ""
    backend: str = "offline"
    queries: list[str] = Field(default_factory=list)
    rounds: int = 0
    relied_on: list[str] = Field(default_factory=list)  # titles of the papers the decision rests on


class Ranking(BaseModel):
    """The idea's place in the tournament: rank 1 is best; strength is its Bradley-Terry parameter."""

    rank: int
    strength: float
    wins: float
    games: int


class IdeaEntry(BaseModel):
    """One entry of the ideas file: AI Scientist's fields (read by its tools and by `orchestrate run`),
    with ours alongside. `novel` is absent when novelty was not checked (AI Scientist then checks it)."""

    model_config = ConfigDict(extra="forbid")

    Name: str = Field(pattern=SLUG)
    Title: str
    Experiment: str
    Interestingness: int
    Feasibility: int
    Novelty: int
    novel: bool | None = None
    template: str
    novelty: Novelty
    references: list[Reference] = Field(default_factory=list)
    ranking: Ranking | None = None
    reflections: int = 0
    generated_by: dict[str, Any] = Field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        if self.novel is None:
            d.pop("novel")
        if self.ranking is None:
            d.pop("ranking")
        return d
