"""The vision review of figures: after the deterministic checks (figures.py), a model that takes images
looks at each figure with its caption, the notes and the runs' numbers, and names what a reader would
trip over — unreadable or missing labels, empty panels, legends that hide data, duplicate figures, a
figure that contradicts the numbers. Its findings are typed, for the agent (bounded rounds, by the
caller: stages/plots_vision.py) and for review.json. Without a vision model it says so and reviews nothing.

Which model looks: `--vision-model`, else the user config's `vision_model`, else the run's model, when
it takes images. A transcript (scripted or recorded) looks only when it holds vision entries (a line
with step `vision`), so transcripts made before the vision review still replay as they were."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from . import prompts
from .agents import hermetic
from .agents.chat import ChatModel, json_blocks
from .errors import AgentError, AuthenticationFailed
from .events import FiguresReviewed
from .paths import readable

STEP = "vision"  # the exchange's step; a transcript with such a line has a vision reviewer

Kind = Literal["unreadable-labels", "missing-labels", "empty-panel", "legend-hides-data", "duplicate",
               "contradicts-numbers", "other"]
MAX_IMAGE_BYTES = 4_000_000  # a larger figure is not sent (and the review says so)
MAX_FIGURES = 24  # figures shown in one look; the rest are listed as not sent
MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}


class FigureFinding(BaseModel):
    """One problem the reviewer saw in one figure."""

    figure: str
    kind: Kind
    detail: str = ""


class VisionReview(BaseModel):
    """What the vision review did: skipped (and why), or the figures it saw and its findings."""

    model: str | None = None
    skipped: str = ""
    figures: list[str] = []
    not_sent: list[str] = []
    findings: list[FigureFinding] = []

    @property
    def clean(self) -> bool:
        return not self.skipped and not self.findings

    def event(self, stage: str, round_: int) -> FiguresReviewed:
        """This review as the journal records it."""
        return FiguresReviewed(stage=stage, round=round_, model=self.model, skipped=self.skipped, figures=self.figures,
                               not_sent=self.not_sent, findings=[f.model_dump() for f in self.findings])

    @classmethod
    def of(cls, e: FiguresReviewed) -> VisionReview:
        return cls(model=e.model, skipped=e.skipped, figures=e.figures, not_sent=e.not_sent,
                   findings=[FigureFinding.model_validate(f) for f in e.findings])


def has_vision(model: str | None) -> bool:
    """Whether `model` takes images: litellm's map says so, or models.json gives "supports_vision": true."""
    if not model or model == hermetic.SCRIPTED_MODEL:
        return False
    local = hermetic.local_metadata(model) or {}
    if "supports_vision" in local:
        return bool(local["supports_vision"])
    info = hermetic.native_info(model) or {}
    return bool(info.get("supports_vision"))


def transcript_has_vision(ctx) -> bool:
    """Whether the run's transcript holds vision entries (it was recorded, or written, with a vision reviewer)."""
    t = ctx.transcript
    return t is not None and any(line.step == STEP for line in t.t.lines)


def vision_model_of(ctx) -> tuple[str | None, str]:
    """(the model that looks at images, "") or (None, why there is none) for a stage's context."""
    if ctx.model is None:
        if transcript_has_vision(ctx):
            return hermetic.SCRIPTED_MODEL, ""
        return None, "no vision model: the transcript has no vision entries"
    model = ctx.vision_model or ctx.model
    if not has_vision(model):
        return None, (f"no vision model: {model} does not take images (pass --vision-model, or set vision_model "
                      "in the config file)")
    return model, ""


def chat_for(ctx, stage: str) -> tuple[ChatModel | None, str]:
    """A chat with the vision model for `stage` (its exchanges journaled, budgeted, reused on resume), or
    (None, why not)."""
    model, why = vision_model_of(ctx)
    if model is None:
        return None, why
    live = None if model == hermetic.SCRIPTED_MODEL else model
    return ChatModel(ctx.journal, model=live, transcript=None if live else ctx.transcript, limits=ctx.limits,
                     budget=ctx.budget, retry=ctx.retry, stage=stage, reuse=True), ""


def image_part(root: Path, rel: str) -> dict | None:
    """An image content part (a data URL) for a figure inside `root`, named `rel`; None when it cannot be sent."""
    path = readable(root, rel)
    media = MEDIA.get(Path(rel).suffix.lower())
    if path is None or media is None or not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
        return None
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}, "name": rel}


def parse_findings(text: str, figures: list[str]) -> list[FigureFinding] | None:
    """The findings of a reply's last ```json block ({"findings": [...]}); None when there is none.
    A finding about a figure that was not shown is dropped; an unknown kind is "other"."""
    for raw in reversed(json_blocks(text)):
        if isinstance(raw, dict) and isinstance(raw.get("findings"), list):
            out = []
            for f in raw["findings"]:
                if not isinstance(f, dict) or f.get("figure") not in figures:
                    continue
                kind = f.get("kind") if f.get("kind") in Kind.__args__ else "other"  # type: ignore[attr-defined]
                try:
                    out.append(FigureFinding(figure=f["figure"], kind=kind, detail=str(f.get("detail", ""))[:500]))
                except ValidationError:
                    continue
            return out
    return None


def review_figures(chat: ChatModel | None, root: Path, figures: list[str], *, captions: dict[str, str], notes: str,
                   numbers: str, stage_round: int = 1) -> VisionReview:
    """Show every figure to the vision model once (one exchange, step `vision`, attempt `stage_round`).
    A chat served by a transcript (model None) was chosen for its vision entries (chat_for)."""
    model = chat.name if chat is not None else None
    if chat is None or (chat.model is not None and not has_vision(chat.model)):
        return VisionReview(model=model, skipped=f"no vision model ({model or 'none configured'} does not take images): "
                                                 "figures checked by the deterministic checks only")
    parts: list[dict] = []
    sent, not_sent = [], []
    for rel in figures:
        part = image_part(root, rel) if len(sent) < MAX_FIGURES else None
        if part is None:
            not_sent.append(rel)
            continue
        parts += [{"type": "text", "text": f"Figure {rel}: {captions.get(rel) or '(no caption)'}"}, part]
        sent.append(rel)
    if not sent:
        return VisionReview(model=model, skipped="no figure could be sent", not_sent=not_sent)
    text = prompts.render("vision_figures", figures=sent, notes=notes, numbers=numbers)
    try:
        reply = chat.ask([{"role": "system", "content": "You review the figures of a research paper as a careful reader."},
                          {"role": "user", "content": [{"type": "text", "text": text}, *parts]}],
                         step=STEP, attempt=stage_round)
    except AuthenticationFailed:  # the credentials are wrong: stop, as for every other call
        raise
    except AgentError as exc:  # journaled (exchange_failed); a look that cannot be had is skipped, not fatal
        return VisionReview(model=model, skipped=f"the vision model failed ({exc.kind}): {str(exc)[:300]}",
                            figures=sent, not_sent=not_sent)
    found = parse_findings(reply, sent)
    if found is None:
        none = FigureFinding(figure=sent[0], kind="other", detail="the reviewer's reply had no findings block")
        return VisionReview(model=model, figures=sent, not_sent=not_sent, findings=[none])
    return VisionReview(model=model, figures=sent, not_sent=not_sent, findings=found)


def feedback(review: VisionReview) -> str:
    """The findings as a message for the agent that edits plot.py."""
    return "\n".join(f"- {f.figure}: {f.kind}: {f.detail}" for f in review.findings)
