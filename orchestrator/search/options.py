"""The search's settings for a new workspace or a resumed one: the strategy, the objective and how the tree
grows, from the command line over the idea over the template, checked before any workspace is made and
recorded in WorkspaceCreated.options (so a resume and a replay keep them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..objective import Objective
from ..settings import Limits, SearchSettings
from ..spec import Idea
from ..template import MANIFEST, Template, objective_problem


@dataclass
class SearchSetup:
    strategy: str  # linear | tree
    objective: Objective | None
    settings: SearchSettings

    def options(self) -> dict[str, Any]:
        """What WorkspaceCreated.options records ("strategy", and for a tree its objective and settings)."""
        if self.strategy != "tree":
            return {"strategy": self.strategy}
        assert self.objective is not None
        return {"strategy": "tree", "objective": self.objective.model_dump(mode="json"),
                "search": self.settings.model_dump(mode="json")}


def resolve_search(template: Template, idea: Idea, idea_path: Path, limits: Limits, *, strategy: str | None,
            max_nodes: int | None, wall_s: float | None, recorded: SearchSettings | None = None,
            parallel: int | None = None, gpu_slots: int = 0) -> SearchSetup:
    """`--strategy` over the idea's `strategy` (default linear); the idea's `objective` over the template's
    `[objective]`; `--max-nodes`, `--search-time` and `--parallel-nodes` over the idea's `search` (or
    `recorded`, a replay's); nodes in flight default to the run's parallel_runs, else its GPU slots, when above 1.
    InputError (exit 2): an idea objective the template's results cannot score; a tree without objective."""
    chosen = strategy or idea.strategy or "linear"
    objective = idea.objective or template.manifest.objective
    if idea.objective is not None:
        problem = objective_problem(idea.objective, template.manifest.required_keys)
        if problem is not None:
            raise InputError(idea_path, f"{problem} (template {template.manifest.name!r})")
    settings = recorded or idea.search or SearchSettings()
    settings = settings.model_copy(update={k: v for k, v in dict(max_nodes=max_nodes, wall_s=wall_s,
                                                                  parallel=parallel).items() if v is not None})
    if settings.max_nodes is None:
        settings = settings.model_copy(update={"max_nodes": limits.max_runs})
    if settings.parallel is None:  # fixed now, so a resume or a replay elsewhere grows the same tree
        slots = limits.parallel_runs or gpu_slots
        settings = settings.model_copy(update={"parallel": slots if slots > 1 else 0})
    if chosen == "tree" and objective is None:
        raise InputError(idea_path, f"--strategy tree needs an objective: add [objective] (metric, goal) to "
                         f"{template.root / MANIFEST} or an \"objective\" to the idea")
    return SearchSetup(chosen, objective, SearchSettings.model_validate(settings.model_dump()))


def recorded_search(options: dict[str, Any], *, max_nodes: int | None = None) -> SearchSetup:
    """The search a workspace was made with (WorkspaceCreated.options); a resume's --max-nodes over it."""
    if options.get("strategy") != "tree":
        return SearchSetup("linear", None, SearchSettings())
    settings = SearchSettings.model_validate(options.get("search") or {})
    if max_nodes is not None:
        settings = settings.model_copy(update={"max_nodes": max_nodes})
    return SearchSetup("tree", Objective.model_validate(options["objective"]), settings)
