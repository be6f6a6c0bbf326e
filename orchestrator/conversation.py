"""Exchanges with the agent, recorded in the journal and memoised: on resume, a recorded exchange is
restored into the conversation instead of asked again, and a recorded reply whose edit was not yet
committed is re-applied through the same aider path instead of asking the model twice."""

from __future__ import annotations

from pydantic import BaseModel

from .agents.aider import AiderSession, Reply, ScriptedReply, parse_decision, settings_prices
from .agents.hermetic import SCRIPTED_MODEL
from .context import Context
from .errors import AgentError, ModelCallInterrupted
from .events import EditApplied, Exchange, ExchangeFailed


class Outcome(BaseModel):
    """An exchange as the stages see it: the reply and what it did to the files."""

    response: str
    edit: EditApplied

    @property
    def changed(self) -> bool:
        return bool(self.edit.files)

    @property
    def done(self) -> bool:
        return self.edit.done


class Conversations:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.sessions: dict[str, AiderSession] = {}

    def session(self, stage: str, files: list[str], read_only: list[str] | None = None) -> AiderSession:
        if stage not in self.sessions:
            self.sessions[stage] = AiderSession(
                self.ctx.ws.root, files, self.ctx.model or SCRIPTED_MODEL, budget=self.ctx.budget,
                retry=self.ctx.retry, read_only=read_only, stream=self.ctx.stream,
                request_timeout_s=self.ctx.limits.request_timeout_s, prices=settings_prices(self.ctx.limits),
            )
        return self.sessions[stage]

    def ask(self, stage: str, prompt: str, *, files: list[str], run: int | None = None,
            attempt: int | None = None, step: str = "edit", read_only: list[str] | None = None) -> Outcome:
        j = self.ctx.journal
        key = dict(stage=stage, run=run, attempt=attempt, step=step)
        session = self.session(stage, files, read_only)
        recorded = j.last(Exchange, **key)
        applied = j.last(EditApplied, **key)
        if recorded and applied:
            session.restore(recorded.prompt, recorded.response, edited=bool(applied.files))
            return Outcome(response=recorded.response, edit=applied)
        if recorded:  # the reply was recorded, its edit not committed: re-apply it, ask nothing
            reply = session.ask(prompt, ScriptedReply(text=recorded.response))
        else:
            scripted = None
            if self.ctx.model is None:
                if self.ctx.transcript is None:
                    raise RuntimeError("no model and no transcript")
                scripted = self.ctx.transcript.next(stage, run, attempt, step)
            try:
                reply = session.ask(prompt, scripted)
            except (AgentError, ModelCallInterrupted) as exc:  # journaled, never a fake exchange; the CLI says it
                interrupted = isinstance(exc, ModelCallInterrupted)
                j.append(ExchangeFailed(
                    **key, model=session.model_name, kind="interrupted" if interrupted else exc.kind,
                    message="interrupted (Ctrl-C or SIGTERM) while waiting on the model" if interrupted else str(exc),
                    attempts=exc.attempts, latency_s=exc.latency_s, status=None if interrupted else exc.status,
                ))
                raise
            j.append(self._exchange(reply, prompt, **key))
        return Outcome(response=reply.response, edit=self._commit(reply, **key))

    def _exchange(self, reply: Reply, prompt: str, **key) -> Exchange:
        return Exchange(
            **key, prompt=prompt, messages=reply.messages, response=reply.response, model=reply.model,
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
            cost_usd=reply.cost_usd, latency_s=reply.latency_s, transcript_line=reply.transcript_line,
            scripted=reply.scripted, retries=reply.retries,
        )

    def _commit(self, reply: Reply, **key) -> EditApplied:
        ws = self.ctx.ws
        before = ws.head()
        where = f"{key['stage']}" + (f" run {key['run']} attempt {key['attempt']}" if key["run"] is not None else "")
        label = "edit" if reply.edited else "reply without edits"
        commit = ws.commit(f"{where}: agent {label} ({key['step']})" + (f": {', '.join(reply.edited)}" if reply.edited else ""))
        diff = ws.diff(before, commit, *reply.edited) if reply.edited else ""
        added = sum(1 for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++"))
        removed = sum(1 for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---"))
        decision = reply.decision or parse_decision(reply.response)
        edit = EditApplied(
            **key, commit=commit, files=reply.edited, diff=diff, added=added, removed=removed,
            refused=reply.refused, failed=reply.failed, done=decision is not None and not reply.edited,
        )
        return self.ctx.journal.append(edit)
