"""The one aider edit path. Live replies come from a model through litellm; scripted replies
(a transcript, or the journal on resume) are injected as litellm `mock_response`, so aider parses
and applies them exactly like a live reply."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AgentError, AuthenticationFailed, BudgetExceeded
from . import hermetic

DONE_BLOCK = re.compile(r"```json\s*(\{.*?\})\s*```", re.S)
# An applied edit in an earlier reply: its file name line, the fence, SEARCH ... REPLACE, the fence.
EDIT_BLOCK = re.compile(r"(?m)^(\S[^\n]*)\n```[^\n]*\n<<<<<<< SEARCH\n.*?\n>>>>>>> REPLACE\n```[ \t]*$", re.S)


def compact_history(messages: list[dict]) -> None:
    """Shorten earlier replies in place: their SEARCH/REPLACE blocks are already applied and the files'
    current content goes with every message, so the blocks only repeat code. The prose stays."""
    for m in messages:
        if m.get("role") == "assistant" and isinstance(m.get("content"), str) and "<<<<<<< SEARCH" in m["content"]:
            m["content"] = EDIT_BLOCK.sub(lambda g: f"[edit to {g.group(1).strip()}: handled; its current content is above]",
                                          m["content"])


class StageDecision(BaseModel):
    """The agent's typed statement that a stage is finished: a fenced json block."""

    model_config = ConfigDict(extra="forbid")

    orchestrate: str = Field(pattern="^done$")
    reason: str = ""


def parse_decision(text: str) -> StageDecision | None:
    """The last fenced json block that validates as a StageDecision, if any."""
    for raw in reversed(DONE_BLOCK.findall(text)):
        try:
            return StageDecision.model_validate(json.loads(raw))
        except (ValidationError, json.JSONDecodeError):
            continue
    return None


class ScriptedReply(BaseModel):
    """A reply not asked of a model: from a transcript line or a journal record."""

    text: str
    line: int | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class Reply(BaseModel):
    """One exchange's outcome after aider applied its edits."""

    response: str
    messages: list[dict[str, Any]] = Field(default_factory=list)
    edited: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)
    failed: str | None = None
    decision: StageDecision | None = None
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    scripted: bool = False
    transcript_line: int | None = None
    retries: int = 0


class RetryPolicy(BaseModel):
    """Bounded exponential backoff for provider errors (rate limit, timeout, 5xx, connection refused)."""

    tries: int = Field(6, ge=1, le=20)
    base_delay_s: float = Field(1.0, ge=0)
    max_delay_s: float = Field(30.0, ge=0)

    @classmethod
    def from_env(cls) -> RetryPolicy:
        import os

        return cls(base_delay_s=float(os.environ.get("ORCHESTRATE_RETRY_BASE_S", 1.0)))


class Budget:
    """Dollars spent so far and the limit; checked before every live call."""

    def __init__(self, limit_usd: float | None, spent_usd: float = 0.0) -> None:
        self.limit = limit_usd
        self.spent = spent_usd

    def check(self, estimate_usd: float) -> None:
        if self.limit is not None and self.spent + estimate_usd > self.limit:
            raise BudgetExceeded(
                f"budget: ${self.spent:.4f} spent of ${self.limit:.2f}; the next call (about "
                f"${estimate_usd:.4f}) would exceed it. Stopped before it; `orchestrate resume` continues "
                "with a larger --budget-usd."
            )


class _QuietIO:
    """Factory for an aider InputOutput that captures instead of printing and answers every question no."""

    @staticmethod
    def make():
        from aider.io import InputOutput

        class QuietIO(InputOutput):
            def __init__(self) -> None:
                super().__init__(pretty=False, yes=False, fancy_input=False, chat_history_file=None)
                self.captured: list[str] = []
                self.questions: list[str] = []

            def tool_output(self, *messages, log_only=False, bold=False):
                self.captured.append(" ".join(str(m) for m in messages))

            def tool_error(self, message="", strip=True):
                self.captured.append(str(message))

            def tool_warning(self, message="", strip=True):
                self.captured.append(str(message))

            def assistant_output(self, message, pretty=None):
                pass

            def user_input(self, inp, log_only=True):
                pass

            def ai_output(self, content):
                pass

            def confirm_ask(self, question, default="y", subject=None, explicit_yes_required=False,
                            group=None, allow_never=False):
                self.questions.append(f"{question} {subject or ''}".strip())
                return False

        return QuietIO()


def _litellm_errors():
    import litellm

    retry = (
        litellm.RateLimitError, litellm.Timeout, litellm.APIConnectionError, litellm.InternalServerError,
        litellm.ServiceUnavailableError, litellm.BadGatewayError,
    )
    auth = tuple(getattr(litellm, n) for n in ("AuthenticationError", "PermissionDeniedError") if hasattr(litellm, n))
    return retry, auth


def make_model(name: str, *, budget: Budget, retry: RetryPolicy, sleep: Callable[[float], None] = time.sleep):
    """An aider Model whose completions we control: budget check, bounded backoff, auth stops at once."""
    hermetic.register_model(name)
    from aider.models import Model

    class OrchestratedModel(Model):
        fatal: Exception | None = None
        scripted: bool = False
        retries: int = 0
        last_messages: list = []

        def send_completion(self, messages, functions, stream, temperature=None):
            try:
                return self._send(messages, functions, stream, temperature)
            except Exception as exc:
                # aider swallows exceptions from here; keep ours so ask() can raise it
                if self.fatal is None:
                    self.fatal = exc if isinstance(exc, (AgentError, BudgetExceeded)) else AgentError(
                        f"{name}: {exc.__class__.__name__}: {str(exc)[:300]}")
                raise

        def _send(self, messages, functions, stream, temperature):
            self.last_messages = [
                {"role": m.get("role"), "content": m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))}
                for m in messages
            ]
            if not self.scripted:
                budget.check(self.estimate_cost(messages))
            retryable, auth = _litellm_errors()
            delay = retry.base_delay_s
            for attempt in range(1, retry.tries + 1):
                try:
                    return super().send_completion(messages, functions, stream, temperature)
                except auth as exc:
                    self.fatal = AuthenticationFailed(f"{name}: the provider rejected the credentials ({exc.__class__.__name__})")
                    raise self.fatal from None
                except retryable as exc:
                    self.retries += 1
                    if attempt == retry.tries:
                        self.fatal = AgentError(f"{name}: gave up after {attempt} tries: {exc.__class__.__name__}: {str(exc)[:200]}")
                        raise self.fatal from None
                    sleep(min(delay, retry.max_delay_s))
                    delay *= 2
            raise AgentError("unreachable")

        def estimate_cost(self, messages) -> float:
            inp = float(self.info.get("input_cost_per_token") or 0.0)
            out = float(self.info.get("output_cost_per_token") or 0.0)
            if not inp and not out:
                return 0.0
            tokens = self.token_count(messages)
            return tokens * inp + 2000 * out

    return OrchestratedModel(name, weak_model=name, editor_model=False)


class AiderSession:
    """One aider Coder kept alive across a stage, so the model sees the conversation."""

    def __init__(self, root: Path, files: list[str], model_name: str, *, budget: Budget,
                 retry: RetryPolicy | None = None, stream: bool = False,
                 read_only: list[str] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        hermetic.prepare()
        from aider.coders import Coder

        self.root = Path(root)
        self.files = list(files)
        self.model_name = model_name
        self.budget = budget
        self.model = make_model(model_name, budget=budget, retry=retry or RetryPolicy(), sleep=sleep)
        self.io = _QuietIO.make()
        with contextlib.chdir(self.root), contextlib.redirect_stdout(io.StringIO()):
            self.coder = Coder.create(
                main_model=self.model, io=self.io, fnames=[str(self.root / f) for f in self.files],
                read_only_fnames=[str(self.root / f) for f in (read_only or [])],
                edit_format="diff", auto_commits=False, dirty_commits=False, use_git=False,
                auto_lint=False, auto_test=False, map_tokens=0, stream=stream,
                suggest_shell_commands=False, detect_urls=False, analytics=_offline_analytics(),
            )
        self.coder.max_reflections = 0  # a failed edit becomes our own, recorded exchange
        self.coder.root = str(self.root)
        if self.coder.summarizer is not None:
            self.coder.summarizer.max_tokens = 10**9  # summarising would be an unrecorded model call

    def restore(self, prompt: str, response: str) -> None:
        """Put an exchange back into the conversation without calling anything (resume)."""
        self.coder.done_messages += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ]

    def ask(self, prompt: str, scripted: ScriptedReply | None = None) -> Reply:
        """Send `prompt`; aider applies the reply's SEARCH/REPLACE edits to the chat files."""
        coder = self.coder
        self.model.fatal = None
        self.model.scripted = scripted is not None
        self.model.retries = 0
        # live: our RetryPolicy is the only retry loop (the SDK's own hidden retries are off)
        self.model.extra_params = {"mock_response": scripted.text} if scripted else {"max_retries": 0}
        self.io.captured.clear()
        self.io.questions.clear()
        compact_history(coder.done_messages)
        sent0, recv0, cost0 = coder.total_tokens_sent, coder.total_tokens_received, coder.total_cost
        before = {f: _read(self.root / f) for f in self.files}
        self.model.last_messages = []
        t0 = time.monotonic()
        with contextlib.chdir(self.root), contextlib.redirect_stdout(io.StringIO()):
            coder.run(with_message=prompt, preproc=False)
        latency = time.monotonic() - t0
        if self.model.fatal is not None:
            raise self.model.fatal
        response = coder.partial_response_content or ""
        if not response and not scripted:
            raise AgentError(f"{self.model_name}: no reply ({'; '.join(self.io.captured[-2:])[:300]})")
        if not scripted:
            self.budget.spent += coder.total_cost - cost0
        edited = [f for f in self.files if _read(self.root / f) != before[f]]
        refused = sorted({q.split("Allow edits to file that has not been added to the chat?")[-1].strip()
                          for q in self.io.questions if "Allow edits" in q} |
                         {m.replace("Skipping edits to", "").strip() for m in self.io.captured
                          if m.startswith("Skipping edits to")})
        refused = [r for r in refused if r]
        return Reply(
            response=response,
            messages=self.model.last_messages,  # exactly what was sent: system prompt, files, history
            edited=edited,
            refused=refused,
            failed=coder.reflected_message,
            decision=parse_decision(response),
            model=scripted.model if scripted and scripted.model else self.model_name,
            prompt_tokens=scripted.prompt_tokens if scripted else coder.total_tokens_sent - sent0,
            completion_tokens=scripted.completion_tokens if scripted else coder.total_tokens_received - recv0,
            cost_usd=0.0 if scripted else round(coder.total_cost - cost0, 8),  # a replayed reply costs nothing now
            latency_s=round(latency, 3),
            scripted=scripted is not None,
            transcript_line=scripted.line if scripted else None,
            retries=self.model.retries,
        )


def _offline_analytics():
    """aider's analytics, off, and without its ~/.aider/analytics.json (nothing written to the user's home)."""
    from aider.analytics import Analytics

    class OfflineAnalytics(Analytics):
        def get_data_file_path(self):
            return None

        def event(self, *args, **kwargs):
            pass

    return OfflineAnalytics()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None
