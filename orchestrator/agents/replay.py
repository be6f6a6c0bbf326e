"""Transcripts: recorded or hand-written agent replies, served in order through the aider edit path."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import TranscriptError
from ..events import Exchange
from ..validation_message import first_problem
from .aider import ScriptedReply


class TranscriptHeader(BaseModel):
    """A transcript's first line: its format version and which idea and template it was recorded for."""

    model_config = ConfigDict(extra="allow")

    transcript: int = Field(ge=1, le=1)
    idea: str | None = None
    template: str | None = None
    note: str = ""


class Usage(BaseModel):
    """Token counts a recorded reply cost."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class TranscriptLine(BaseModel):
    """One recorded reply: the stage, run and attempt it answers, and the response text."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    run: int | None = None
    attempt: int | None = None
    step: str | None = None
    response: str
    prompt_sha256: str | None = None
    model: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None


class Transcript(BaseModel):
    """A loaded transcript file: its header and its replies in order."""

    path: Path
    header: TranscriptHeader
    lines: list[TranscriptLine]

    @property
    def scripted(self) -> bool:
        return "scripted" in self.header.note.lower()


def load_transcript(path: Path) -> Transcript:
    """Read and validate a transcript .jsonl; TranscriptError (exit 2) names the bad line."""
    path = Path(path)
    try:
        raw_lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TranscriptError(path, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TranscriptError(path, f"not a transcript: not UTF-8 text (byte {exc.start}); a transcript is JSONL") from None
    rows = []
    for n, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            continue
        try:
            rows.append((n, json.loads(raw)))
        except json.JSONDecodeError as exc:
            raise TranscriptError(path, f"line {n}: not valid JSON: {exc.msg}") from None
    if not rows:
        raise TranscriptError(path, "empty transcript")
    try:
        header = TranscriptHeader.model_validate(rows[0][1])
    except ValidationError as exc:
        raise TranscriptError(path, f"line {rows[0][0]}: header: {first_problem(path, exc)}") from None
    lines = []
    for n, row in rows[1:]:
        try:
            lines.append(TranscriptLine.model_validate(row))
        except ValidationError as exc:
            raise TranscriptError(path, f"line {n}: {first_problem(path, exc)}") from None
    numbers = [n for n, _ in rows[1:]]
    t = Transcript(path=path, header=header, lines=lines)
    t._numbers = numbers  # type: ignore[attr-defined]
    return t


class TranscriptSource:
    """Serves a transcript's lines in order; a request that does not match is a divergence."""

    def __init__(self, transcript: Transcript, position: int = 0) -> None:
        self.t = transcript
        self.pos = position
        self.numbers: list[int] = getattr(transcript, "_numbers", list(range(2, len(transcript.lines) + 2)))

    def next(self, stage: str, run: int | None, attempt: int | None, step: str) -> ScriptedReply:
        """The next recorded reply, which must answer this stage, run and attempt (else a divergence)."""
        where = (f"{stage}" + (f" run {run} attempt {attempt}" if run is not None else "")
                 + (f" ({step})" if step != "edit" else ""))
        if self.pos >= len(self.t.lines):
            raise TranscriptError(self.t.path,
                                  f"divergence: the pipeline asked for {where}, but the transcript has no more lines")
        line = self.t.lines[self.pos]
        n = self.numbers[self.pos]
        mism = []
        if line.stage != stage:
            mism.append(f"stage {line.stage!r}")
        if line.run is not None and run is not None and line.run != run:
            mism.append(f"run {line.run}")
        if line.attempt is not None and attempt is not None and line.attempt != attempt:
            mism.append(f"attempt {line.attempt}")
        if line.step is not None and line.step != step:
            mism.append(f"step {line.step!r}")
        if mism:
            raise TranscriptError(self.t.path, f"line {n}: divergence: the pipeline asked for {where}, "
                                               f"the line is for {', '.join(mism)}")
        self.pos += 1
        usage = line.usage or Usage()
        return ScriptedReply(text=line.response, line=n, model=line.model, prompt_tokens=usage.prompt_tokens,
                             completion_tokens=usage.completion_tokens, cost_usd=line.cost_usd or 0.0)


def export_transcript(exchanges: list[Exchange], *, idea: str, template: str, note: str) -> str:
    """A workspace's exchanges as a transcript (JSONL text)."""
    import hashlib

    out = [json.dumps({"transcript": 1, "idea": idea, "template": template, "note": note})]
    for e in exchanges:
        row = {"stage": e.stage, "run": e.run, "attempt": e.attempt, "step": e.step, "response": e.response,
               "prompt_sha256": hashlib.sha256(e.prompt.encode()).hexdigest(), "model": e.model,
               "usage": {"prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens},
               "cost_usd": e.cost_usd}
        out.append(json.dumps({k: v for k, v in row.items() if v is not None}))
    return "\n".join(out) + "\n"
