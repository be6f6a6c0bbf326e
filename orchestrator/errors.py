"""Typed errors. Only `cli.py` turns them into messages and exit codes."""

from __future__ import annotations

from pathlib import Path


class OrchestratorError(Exception):
    """Base class: a problem the user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


class InputError(OrchestratorError):
    """Bad input from the user (a file, an argument): one line naming the file and the problem."""

    exit_code = 2

    def __init__(self, path: Path | str | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class SpecError(InputError):
    """An idea spec that does not validate."""


class TemplateError(InputError):
    """A template or its manifest that does not validate."""


class TranscriptError(InputError):
    """A transcript that is malformed, or that does not fit the pipeline's request (a divergence)."""


class WorkspaceError(InputError):
    """A workspace that is missing, not ours, or unusable."""


class EnvironmentBuildError(OrchestratorError):
    """The experiment's Python environment could not be built."""


class PackageNotFound(EnvironmentBuildError):
    """A package the template needs is not on the index: the user provides it (--python, a requirements.txt)."""

    exit_code = 2


class AgentError(OrchestratorError):
    """The agent could not produce a reply (provider failure after retries). `kind` classifies it
    (auth, bad_request, context_overflow, rate_limit, server, timeout, connection, empty_reply,
    invalid_reply, error); `attempts` and `latency_s` are what it cost; the journal records all three."""

    def __init__(self, message: str, *, kind: str = "error", attempts: int = 1, latency_s: float = 0.0,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.attempts, self.latency_s, self.status = kind, attempts, latency_s, status


class AuthenticationFailed(AgentError):
    """The model provider rejected our credentials (401/403): stop at once."""

    exit_code = 3


class ContextOverflow(AgentError):
    """The prompt does not fit the model's context window: nothing was sent (or the provider refused it)."""

    exit_code = 5


class ModelCallInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while waiting on the model: the CLI's interrupt path (exit 130, resumable)."""

    def __init__(self, attempts: int = 1, latency_s: float = 0.0) -> None:
        super().__init__("interrupted while waiting on the model")
        self.attempts, self.latency_s = attempts, latency_s


class BudgetExceeded(OrchestratorError):
    """The next agent call would exceed --budget-usd. The workspace stays resumable."""

    exit_code = 4


class JournalError(OrchestratorError):
    """The journal could not be written (e.g. the disk is full). Nothing written is lost."""


class PrepareFailed(OrchestratorError):
    """The template's [prepare] step (the data cache's only writer) failed: no run can start."""


class UnsafePath(WorkspaceError):
    """A workspace path the orchestrator will not follow: a symbolic link, or a way out of the workspace."""
