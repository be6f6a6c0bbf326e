"""What every stage gets: the workspace, its settings, the agent, and how to run processes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .agents.aider import Budget, RetryPolicy
from .agents.replay import TranscriptSource
from .env import stream_replies
from .executors import Executor, LocalExecutor
from .objective import Objective
from .settings import Limits, SearchSettings
from .spec import Idea
from .workspace import Workspace


@dataclass
class Context:
    """What every stage gets: the workspace, its settings, the agent's source of replies, and the executor."""

    ws: Workspace
    idea: Idea
    limits: Limits
    python: str
    isolation: str
    model: str | None  # None: replies come from the transcript
    transcript: TranscriptSource | None
    budget: Budget
    cache_dir: Path
    retry: RetryPolicy = field(default_factory=RetryPolicy.from_env)
    stream: bool = field(default_factory=stream_replies)
    tex_available: bool = True
    tex_missing: str = ""
    executor: Executor = field(default_factory=LocalExecutor)
    strategy: str = "linear"  # the experiments stage: "linear" (one line of runs) or "tree" (search/engine.py)
    objective: Objective | None = None  # what the tree search scores nodes by (the idea's, else the template's)
    search: SearchSettings = field(default_factory=SearchSettings)
    vision_model: str | None = None  # reviews figures and page images (vision.py); None: the model, when it takes images
    stages_asked: list[str] | None = None  # the stages named by --stages (run's, or resume's), None: the default

    @property
    def journal(self):
        return self.ws.journal

    @property
    def manifest(self):
        return self.ws.manifest
