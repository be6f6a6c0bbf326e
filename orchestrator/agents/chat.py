"""Model calls that edit no file (ideation, the vision review of figures): litellm's chat completion
directly, no aider, under the agent's classified retry loop, budget and journal records; or, with no
model, the replies of a transcript served in order (the same TranscriptSource as `orchestrate run`).
With `reuse`, an exchange the journal already holds for the same stage, run, attempt and step is its
reply (a resumed workspace asks nothing twice). Image content parts are sent as they are and journaled
as the file they came from, never as base64."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from ..errors import AgentError, ModelCallInterrupted
from ..events import Exchange, ExchangeFailed
from ..journal import Journal
from ..settings import Limits
from . import hermetic
from .aider import Budget, RetryPolicy, _Failure, settings_prices, with_retries
from .replay import TranscriptSource

FENCED_JSON = re.compile(r"```json\s*(.*?)```", re.S)


def json_blocks(text: str) -> list[Any]:
    """Every fenced ```json block of a reply that parses, in order."""
    out = []
    for raw in FENCED_JSON.findall(text):
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out


def _text(content: Any) -> str:
    """A message's text: the string, or its text parts (image parts named by their `name`)."""
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")


def _for_journal(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as journaled: an image part becomes the name it was given, not its bytes."""
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, list):
            c = [{"type": "image_url", "image_url": {"url": p.get("name", "(image)")}} if p.get("type") == "image_url" else p
                 for p in c if isinstance(p, dict)]
            c = [{k: v for k, v in p.items() if k != "name"} for p in c]
        out.append({**m, "content": c})
    return out


def _wire(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as sent: our `name` on image parts left out."""
    return [{**m, "content": [{k: v for k, v in p.items() if k != "name"} for p in m["content"]]}
            if isinstance(m.get("content"), list) else m for m in messages]


class ChatModel:
    """Asks the model (or the transcript) and records every exchange, failed ones too, in the journal."""

    def __init__(self, journal: Journal, *, model: str | None, transcript: TranscriptSource | None, limits: Limits,
                 budget: Budget, retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 stage: str = "ideas", reuse: bool = False) -> None:
        if model is None and transcript is None:
            raise ValueError("no model and no transcript")
        self.stage, self.reuse = stage, reuse
        self.journal, self.model, self.transcript, self.limits = journal, model, transcript, limits
        self.budget, self.retry, self.sleep = budget, retry or RetryPolicy.from_env(), sleep
        self.prices = hermetic.known_prices(model, settings_prices(limits)) if model else None
        if model:
            hermetic.register_model(model, prices=settings_prices(limits))
            hermetic.no_hidden_retries()

    @property
    def name(self) -> str:
        return self.model or hermetic.SCRIPTED_MODEL

    def ask(self, messages: list[dict[str, Any]], *, step: str, run: int | None = None, attempt: int | None = None) -> str:
        """The reply to `messages` (the last one the user's); journaled as an Exchange."""
        key = dict(stage=self.stage, run=run, attempt=attempt, step=step)
        if self.reuse:
            done = self.journal.last(Exchange, **key)
            if done is not None:
                return done.response
        prompt = _text(messages[-1]["content"])
        recorded = _for_journal(messages)
        if self.model is None:
            assert self.transcript is not None
            s = self.transcript.next(self.stage, run, attempt, step)
            self.journal.append(Exchange(**key, prompt=prompt, messages=recorded, response=s.text,
                                         model=s.model or self.name, prompt_tokens=s.prompt_tokens,
                                         completion_tokens=s.completion_tokens, transcript_line=s.line, scripted=True))
            return s.text
        import litellm

        if self.prices is not None and self.budget.limit is not None:
            tokens = litellm.token_counter(model=self.model, messages=_wire(messages))
            self.budget.check(self.budget.estimate(tokens, self.prices))
        state = {"attempts": 0}

        def once():
            resp = litellm.completion(model=self.model, messages=_wire(messages), max_retries=0, num_retries=0,
                                      timeout=self.limits.request_timeout_s)
            choices = getattr(resp, "choices", None) or []
            text = str(getattr(getattr(choices[0], "message", None), "content", None) or "") if choices else ""
            if not text.strip():
                raise _Failure("empty_reply", "the reply was empty (no choices, or no content)")
            return resp, text

        def on_try(n: int) -> None:
            state["attempts"] = n

        t0 = time.monotonic()
        try:
            resp, text = with_retries(self.model, self.retry, once, sleep=self.sleep, on_try=on_try)
        except (AgentError, KeyboardInterrupt) as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            latency = round(time.monotonic() - t0, 3)
            self.journal.append(ExchangeFailed(
                **key, model=self.model, kind="interrupted" if interrupted else exc.kind,
                message="interrupted (Ctrl-C or SIGTERM) while waiting on the model" if interrupted else str(exc),
                attempts=state["attempts"] if interrupted else exc.attempts, latency_s=latency,
                status=None if interrupted else exc.status))
            if interrupted:
                raise ModelCallInterrupted(state["attempts"], latency) from None
            raise
        usage = getattr(resp, "usage", None)
        pt, ct = int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)
        cost = pt * self.prices[0] + ct * self.prices[1] if self.prices else 0.0
        self.budget.spent += cost
        self.budget.longest_reply_tokens = max(self.budget.longest_reply_tokens, ct)
        self.journal.append(Exchange(**key, prompt=prompt, messages=recorded, response=text, model=self.model,
                                     prompt_tokens=pt, completion_tokens=ct, cost_usd=round(cost, 8),
                                     latency_s=round(time.monotonic() - t0, 3), retries=state["attempts"] - 1))
        return text
