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

from ..env import retry_base_s
from ..errors import AgentError, AuthenticationFailed, BudgetExceeded, ContextOverflow, InputError, ModelCallInterrupted
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
    """Bounded exponential backoff for transient provider errors (rate limit, timeout, 5xx, refused
    connection, an empty or unparsable reply). A `Retry-After` the provider sends wins over the backoff,
    up to `max_retry_after_s`; one that asks for longer ends the tries at once."""

    tries: int = Field(6, ge=1, le=20)
    base_delay_s: float = Field(1.0, ge=0)
    max_delay_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(120.0, ge=0)

    @classmethod
    def from_env(cls) -> RetryPolicy:

        return cls(base_delay_s=retry_base_s())


# Before the first reply of a session, the reply is assumed this long (tokens) for the budget's estimate;
# after it, the longest reply seen so far.
FIRST_REPLY_TOKENS = 500


class Budget:
    """Dollars spent so far and the limit; checked before every live call."""

    def __init__(self, limit_usd: float | None, spent_usd: float = 0.0) -> None:
        self.limit = limit_usd
        self.spent = spent_usd
        self.longest_reply_tokens = 0

    def estimate(self, prompt_tokens: int, prices: tuple[float, float]) -> float:
        """The next call's cost: the prompt's real token count, and a reply as long as the longest so far."""
        reply = self.longest_reply_tokens or FIRST_REPLY_TOKENS
        return prompt_tokens * prices[0] + reply * prices[1]

    def check(self, estimate_usd: float) -> None:
        if self.limit is not None and self.spent + estimate_usd > self.limit:
            raise BudgetExceeded(
                f"budget: ${self.spent:.4f} spent of ${self.limit:.4f}; the next call (about "
                f"${estimate_usd:.4f}) would exceed it. Stopped before it; `orchestrate resume` continues "
                "with a larger --budget-usd."
            )


def settings_prices(limits) -> tuple[float, float] | None:
    """The prices the user set (dollars per token), from settings' price_per_mtok_in/out."""
    pin, pout = getattr(limits, "price_per_mtok_in", None), getattr(limits, "price_per_mtok_out", None)
    if pin is None and pout is None:
        return None
    return (pin or 0.0) / 1e6, (pout or 0.0) / 1e6


def require_price(model: str | None, limits) -> None:
    """A budget needs a price: refuse (exit 2, before anything is made) a budget for a model whose price
    no one knows, instead of counting its calls as free."""
    if model is None or limits.budget_usd is None:
        return
    if hermetic.known_prices(model, settings_prices(limits)) is None:
        raise InputError(None, f"--budget-usd: the price of {model} is unknown, so the budget cannot be enforced; "
                               "set limits.price_per_mtok_in and price_per_mtok_out in the idea (0 for a free model), "
                               "or input_cost_per_token/output_cost_per_token in models.json")


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


class _Failure(Exception):
    """A reply that came but is unusable (empty, null, no choices): retried like a transient error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Stop(Exception):
    """Raised out of send_completion so that aider's own loop ends the exchange; ask() raises `error`."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


RETRIED = ("rate_limit", "server", "timeout", "connection", "empty_reply", "invalid_reply")


def classify(exc: BaseException) -> tuple[str, int | None]:
    """The kind of a provider error (see AgentError) and its HTTP status, from litellm's exception."""
    import litellm

    def of(*names: str) -> tuple[type, ...]:  # litellm's exception classes that this version has
        return tuple(c for c in (getattr(litellm, n, None) for n in names) if isinstance(c, type))

    if isinstance(exc, _Failure):
        return exc.kind, None
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    text = str(exc).lower()
    chain, cause = [], exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, of("ContextWindowExceededError")) or (
            status in (400, 413, 422) and ("context length" in text or "context_length_exceeded" in text
                                            or "context window" in text)):
        return "context_overflow", status
    if isinstance(exc, of("AuthenticationError", "PermissionDeniedError")) or status in (401, 403):
        return "auth", status
    if any(isinstance(c, json.JSONDecodeError) for c in chain) or "unterminated string" in text or "expecting value" in text:
        return "invalid_reply", status
    if isinstance(exc, of("RateLimitError")) or status == 429:
        return "rate_limit", status
    if isinstance(exc, of("Timeout")) or "timed out" in text or "timeout" in exc.__class__.__name__.lower():
        return "timeout", status
    if isinstance(exc, of("APIConnectionError")) and status in (None, 500):
        return "connection", status
    if isinstance(exc, of("InternalServerError", "ServiceUnavailableError", "BadGatewayError")) or (
            status is not None and status >= 500):
        return "server", status
    if status is not None and 400 <= status < 500 or isinstance(exc, of("BadRequestError", "NotFoundError")):
        return "bad_request", status
    return "error", status


def retry_after_s(exc: BaseException) -> float | None:
    """The provider's `Retry-After` (seconds, or an HTTP date), if it sent one."""
    headers = getattr(exc, "litellm_response_headers", None)
    response = getattr(exc, "response", None)
    if not headers and response is not None:
        headers = getattr(response, "headers", None)
    value = None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After") if headers else None
    except Exception:
        value = None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _short(exc: BaseException) -> str:
    """The provider's own words, on one line: litellm's prefixes and aider's tracebacks left out."""
    text = " ".join(str(exc).split())
    for prefix in ("litellm.", "APIError:", "BadRequestError:", "RateLimitError:", "InternalServerError:",
                   "ServiceUnavailableError:", "APIConnectionError:", "OpenAIException -", "Timeout:"):
        text = text.replace(prefix, "").strip()
    return text[:200] or exc.__class__.__name__


class _Buffered:
    """A streamed reply read to its end inside our retry loop (so an empty or broken stream is retried like
    a non-streamed one), handed to aider as the stream it asked for."""

    def __init__(self, chunks: list, stream) -> None:
        self._chunks, self._stream = chunks, stream

    def __iter__(self):
        return iter(self._chunks)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _content_of(completion, stream: bool) -> str:
    if stream:
        parts = []
        for chunk in completion:
            choices = getattr(chunk, "choices", None) or []
            delta = getattr(choices[0], "delta", None) if choices else None
            for attr in ("content", "reasoning_content", "function_call", "tool_calls"):
                value = getattr(delta, attr, None) if delta is not None else None
                if value:
                    parts.append(str(value))
        return "".join(parts)
    choices = getattr(completion, "choices", None) or []
    if not choices:
        return ""
    message = getattr(choices[0], "message", None)
    return str(getattr(message, "content", None) or getattr(message, "tool_calls", None) or "")


def with_retries(name: str, retry: RetryPolicy, call: Callable[[], Any], *, sleep: Callable[[float], None] = time.sleep,
                 on_try: Callable[[int], None] | None = None) -> Any:
    """`call()` under the one classified retry loop: transient errors (RETRIED) back off exponentially, a
    `Retry-After` wins up to `retry.max_retry_after_s`; auth (exit 3), context overflow (exit 5) and other
    refusals stop at once. `on_try(attempt)` is told of every try (1-based). Raises AgentError subclasses."""
    delay = retry.base_delay_s
    for attempt in range(1, retry.tries + 1):
        if on_try is not None:
            on_try(attempt)
        try:
            return call()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            kind, status = classify(exc)
            what = _short(exc)
            if kind == "auth":
                raise AuthenticationFailed(
                    f"{name}: the provider rejected the credentials (HTTP {status or '401'}: {what})",
                    kind=kind, attempts=attempt, status=status) from None
            if kind == "context_overflow":
                raise ContextOverflow(f"{name}: the prompt exceeds the model's context window ({what})",
                                      kind=kind, attempts=attempt, status=status) from None
            if kind not in RETRIED:
                label = f"HTTP {status}" if status else exc.__class__.__name__
                raise AgentError(f"{name}: the provider refused the request ({label}): {what}",
                                 kind=kind, attempts=attempt, status=status) from None
            wait = min(delay, retry.max_delay_s)
            after = retry_after_s(exc)
            if after is not None and after > retry.max_retry_after_s:
                raise AgentError(f"{name}: {kind.replace('_', ' ')}; the provider asks to wait {after:.0f} s "
                                 f"(more than {retry.max_retry_after_s:.0f} s): {what}",
                                 kind=kind, attempts=attempt, status=status) from None
            if attempt == retry.tries:
                raise AgentError(f"{name}: gave up after {attempt} tries: {kind.replace('_', ' ')}: {what}",
                                 kind=kind, attempts=attempt, status=status) from None
            sleep(max(wait, after) if after is not None else wait)
            delay *= 2
    raise AgentError("unreachable")


def make_model(name: str, *, budget: Budget, retry: RetryPolicy, sleep: Callable[[float], None] = time.sleep,
               request_timeout_s: float = 180.0, prices: tuple[float, float] | None = None):
    """An aider Model whose completions we control: budget check, classified errors, bounded backoff
    honouring Retry-After, a per-request timeout; auth, bad requests and context overflows stop at once."""
    hermetic.register_model(name, prices=prices)
    hermetic.no_hidden_retries()
    from aider.models import Model

    class OrchestratedModel(Model):
        fatal: BaseException | None = None
        scripted: bool = False
        retries: int = 0
        attempts: int = 0
        last_messages: list = []

        def send_completion(self, messages, functions, stream, temperature=None):
            try:
                return self._send(messages, functions, stream, temperature)
            except KeyboardInterrupt:
                self.fatal = ModelCallInterrupted(self.attempts)
            except (AgentError, BudgetExceeded) as exc:
                self.fatal = exc
            except Exception as exc:  # a scripted reply aider could not take: ours, stated once
                self.fatal = AgentError(f"{name}: {exc.__class__.__name__}: {_short(exc)}", attempts=self.attempts)
            # not a litellm exception: aider's loop does not retry it, it ends the exchange quietly
            raise _Stop(self.fatal)

        def _send(self, messages, functions, stream, temperature):
            self.last_messages = [
                {"role": m.get("role"),
                 "content": m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))}
                for m in messages
            ]
            if self.scripted:
                return super().send_completion(messages, functions, stream, temperature)
            price = hermetic.known_prices(name, prices)
            if price is not None and budget.limit is not None:
                budget.check(budget.estimate(self.token_count(messages), price))

            def once():
                hashed, completion = Model.send_completion(self, messages, functions, stream, temperature)
                if stream:
                    completion = _Buffered(list(completion), completion)
                if not _content_of(completion, stream).strip():
                    raise _Failure("empty_reply", "the reply was empty (no choices, or no content)")
                return hashed, completion

            def on_try(attempt: int) -> None:
                self.attempts = attempt
                self.retries += attempt > 1

            return with_retries(name, retry, once, sleep=sleep, on_try=on_try)

    return OrchestratedModel(name, weak_model=name, editor_model=False)


class AiderSession:
    """One aider Coder kept alive across a stage, so the model sees the conversation."""

    def __init__(self, root: Path, files: list[str], model_name: str, *, budget: Budget,
                 retry: RetryPolicy | None = None, stream: bool = False,
                 read_only: list[str] | None = None, sleep: Callable[[float], None] = time.sleep,
                 request_timeout_s: float = 180.0, prices: tuple[float, float] | None = None) -> None:
        hermetic.prepare()
        from aider.coders import Coder

        self.root = Path(root)
        self.files = list(files)
        self.model_name = model_name
        self.budget = budget
        self.request_timeout_s = request_timeout_s
        self.prices = prices
        self.model = make_model(model_name, budget=budget, retry=retry or RetryPolicy(), sleep=sleep,
                                request_timeout_s=request_timeout_s, prices=prices)
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
        self.overflow: str | None = None
        check_tokens = self.coder.check_tokens

        def refuse_overflow(messages) -> bool:
            """aider's own check of the prompt against max_input_tokens: when it fails it sends nothing."""
            fits = check_tokens(messages)
            if not fits:
                self.overflow = next((m for m in reversed(self.io.captured) if "token limit" in m), "the prompt is too long")
            return fits

        self.coder.check_tokens = refuse_overflow

    def restore(self, prompt: str, response: str, *, edited: bool) -> None:
        """Put an exchange back into the conversation without calling anything (resume), as aider's own
        send_message left it: the pair joins the current messages, and a reply that edited files moves them
        into the history followed by aider's "I updated the files." / "Ok." pair. The model sees the same
        conversation after a resume as without one."""
        coder = self.coder
        coder.cur_messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        if edited:
            coder.move_back_cur_messages(coder.gpt_prompts.files_content_gpt_edits_no_repo)

    def ask(self, prompt: str, scripted: ScriptedReply | None = None) -> Reply:
        """Send `prompt`; aider applies the reply's SEARCH/REPLACE edits to the chat files."""
        coder = self.coder
        self.model.fatal = None
        self.model.scripted = scripted is not None
        self.model.retries = 0
        # live: our loop is the only retry loop (litellm's and the SDK's are off), each try bounded in time
        self.model.extra_params = ({"mock_response": scripted.text} if scripted else
                                   {"max_retries": 0, "num_retries": 0, "timeout": self.request_timeout_s})
        self.model.attempts = 0
        self.overflow = None
        self.io.captured.clear()
        self.io.questions.clear()
        compact_history(coder.done_messages)
        sent0, recv0, cost0 = coder.total_tokens_sent, coder.total_tokens_received, coder.total_cost
        before = {f: _read(self.root / f) for f in self.files}
        self.model.last_messages = []
        coder.partial_response_content = ""  # never the previous exchange's reply
        t0 = time.monotonic()
        try:
            with contextlib.chdir(self.root), contextlib.redirect_stdout(io.StringIO()):
                coder.run(with_message=prompt, preproc=False)
        except KeyboardInterrupt:
            raise ModelCallInterrupted(self.model.attempts, round(time.monotonic() - t0, 3)) from None
        latency = time.monotonic() - t0
        fatal = self.model.fatal
        if isinstance(fatal, (AgentError, ModelCallInterrupted)):
            fatal.latency_s = round(latency, 3)
        if fatal is not None:
            raise fatal
        if self.overflow is not None:
            raise ContextOverflow(f"{self.model_name}: {self.overflow}; nothing was sent. Fewer or smaller files "
                                  "in the chat, or a model with a larger context, would fit it",
                                  kind="context_overflow", attempts=0, latency_s=round(latency, 3))
        response = coder.partial_response_content or ""
        if not response and not scripted:  # aider dropped it (our checks passed): say what it said
            raise AgentError(f"{self.model_name}: no usable reply ({'; '.join(self.io.captured[-2:])[:300]})",
                             kind="empty_reply", attempts=self.model.attempts, latency_s=round(latency, 3))
        cost = 0.0  # a replayed reply costs nothing now
        if not scripted:
            cost = coder.total_cost - cost0
            price = hermetic.known_prices(self.model_name, self.prices)
            if not cost and price:  # aider prices a reply only when the input price is not 0
                cost = (coder.total_tokens_sent - sent0) * price[0] + (coder.total_tokens_received - recv0) * price[1]
            self.budget.spent += cost
            self.budget.longest_reply_tokens = max(self.budget.longest_reply_tokens, coder.total_tokens_received - recv0)
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
            cost_usd=round(cost, 8),
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
