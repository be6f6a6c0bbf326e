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


class AgentError(OrchestratorError):
    """The agent could not produce a reply (provider failure after retries)."""


class AuthenticationFailed(AgentError):
    """The model provider rejected our credentials: stop at once."""

    exit_code = 3


class BudgetExceeded(OrchestratorError):
    """The next agent call would exceed --budget-usd. The workspace stays resumable."""

    exit_code = 4


class JournalError(OrchestratorError):
    """The journal could not be written (e.g. the disk is full). Nothing written is lost."""


class PrepareFailed(OrchestratorError):
    """The template's [prepare] step (the data cache's only writer) failed: no run can start."""


class UnsafePath(WorkspaceError):
    """A workspace path the orchestrator will not follow: a symbolic link, or a way out of the workspace."""
