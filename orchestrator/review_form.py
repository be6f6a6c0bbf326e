"""The NeurIPS review form as a typed record, read from a model's reply, retried when malformed;
and review.json: the form (or why there is none) beside the deterministic integrity findings."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import prompts
from .paper.integrity import IntegrityReport
from .vision import FigureFinding, VisionReview


class Review(BaseModel):
    """The NeurIPS review form, as the model must fill it in."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1)
    strengths: list[str]
    weaknesses: list[str]
    questions: list[str]
    limitations: list[str]
    soundness: int = Field(ge=1, le=4)
    presentation: int = Field(ge=1, le=4)
    contribution: int = Field(ge=1, le=4)
    overall: int = Field(ge=1, le=10)
    confidence: int = Field(ge=1, le=5)
    decision: Literal["Accept", "Reject"]

    @field_validator("strengths", "weaknesses", "questions", "limitations", mode="before")
    @classmethod
    def _listify(cls, v):
        if isinstance(v, str):  # one paragraph instead of a list: keep it, as one item
            return [v] if v.strip() else []
        return v

    @field_validator("decision", mode="before")
    @classmethod
    def _decision(cls, v):
        if isinstance(v, str) and v.strip().lower() in ("accept", "reject"):
            return v.strip().capitalize()
        return v


class ReviewAttempt(BaseModel):
    """One try at reading a review from the model's reply: ok or why not."""

    step: str
    ok: bool
    error: str = ""


class VisionSection(BaseModel):
    """review.json's vision part: the plots stage's rounds over the figures (vision.py) and the page images
    the paper review saw."""

    skipped: str = ""  # why the figures were not looked at ("" when they were)
    rounds: list[VisionReview] = Field(default_factory=list)  # round 1 first; each round's findings
    open_findings: list[FigureFinding] = Field(default_factory=list)  # the last round's: what is still wrong
    pages: list[str] = Field(default_factory=list)  # page images sent with the paper review
    pages_skipped: str = ""  # why the paper review had no page images


class ReviewFile(BaseModel):
    """review.json."""

    source: str  # what was reviewed: paper.pdf, latex/paper.tex, or a PDF's path
    review: Review | None = None
    review_skipped: str = ""  # why there is no LLM review
    model: str | None = None
    attempts: list[ReviewAttempt] = Field(default_factory=list)
    integrity: IntegrityReport
    vision: VisionSection | None = None  # None: made without the vision review (orchestrate review, older workspaces)


def _json_candidates(text: str) -> list[str]:
    out = [m.group(1) for m in re.finditer(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)]
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        out.append(text[start:end + 1])
    return out


def parse_review(text: str) -> tuple[Review | None, str]:
    """(review, "") or (None, what is wrong) — the error is what the retry prompt tells the model."""
    candidates = _json_candidates(text)
    if not candidates:
        return None, "no JSON object found in the reply"
    error = ""
    for c in candidates:
        try:
            data = json.loads(c)
        except json.JSONDecodeError as exc:
            error = error or f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            continue
        if not isinstance(data, dict):
            error = error or "the JSON is not an object"
            continue
        if "orchestrate" in data and len(data) <= 2:
            error = error or "a stage decision is not a review"
            continue
        try:
            return Review.model_validate(data), ""
        except ValidationError as exc:
            e = exc.errors()[0]
            where = ".".join(str(x) for x in e["loc"]) or "the object"
            more = f" ({len(exc.errors())} problems in all)" if len(exc.errors()) > 1 else ""
            return None, f"field {where}: {e['msg']}{more}"
    return None, error


def ask_review(ask: Callable[[str, str], str], first_prompt: str, *, tries: int = 3) -> tuple[Review | None, list[ReviewAttempt]]:
    """Ask for the form; on a malformed reply ask again (steps review, review-retry-1, ...)."""
    attempts: list[ReviewAttempt] = []
    prompt = first_prompt
    for i in range(tries):
        step = "review" if i == 0 else f"review-retry-{i}"
        reply = ask(prompt, step)
        review, error = parse_review(reply)
        attempts.append(ReviewAttempt(step=step, ok=review is not None, error=error))
        if review is not None:
            return review, attempts
        prompt = prompts.render("review_retry", error=error)
    return None, attempts
