"""Validated limits and settings. Defaults here; an idea and a command line may override them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Isolation = Literal["auto", "none", "bwrap"]


class Limits(BaseModel):
    """How much the pipeline may spend. Lives outside the workspace, so an agent edit cannot change it."""

    model_config = ConfigDict(extra="forbid")

    max_runs: int = Field(5, ge=1, le=100)
    max_attempts: int = Field(4, ge=1, le=50)
    full_timeout_s: float = Field(7200, gt=0)
    smoke_timeout_s: float = Field(120, gt=0)
    plot_timeout_s: float = Field(600, gt=0)
    latex_timeout_s: float = Field(180, gt=0)
    max_plot_attempts: int = Field(3, ge=1, le=20)
    max_compile_attempts: int = Field(3, ge=1, le=20)
    vision_rounds: int = Field(2, ge=0, le=10)  # the vision review of figures: rounds of findings back to the agent
    log_cap_bytes: int = Field(5_000_000, ge=10_000)
    budget_usd: float | None = Field(None, ge=0)
    # The model call: one request's time limit (a hung server holds a try this long at most), and the
    # price per million tokens for a model whose price litellm does not know (needed with budget_usd).
    request_timeout_s: float = Field(180, gt=0, le=3600, allow_inf_nan=False)
    price_per_mtok_in: float | None = Field(None, ge=0, allow_inf_nan=False)
    price_per_mtok_out: float | None = Field(None, ge=0, allow_inf_nan=False)
    # Resource limits applied to every experiment process, whatever the isolation level.
    memory_mb: int | None = Field(None, ge=64)
    cpu_time_s: int | None = Field(None, ge=1)
    max_processes: int = Field(512, ge=8)
    max_file_mb: int = Field(4096, ge=1)
    max_written_mb: int = Field(8192, ge=1)
    max_open_files: int = Field(1024, ge=16)
    # RLIMIT_AS, off by default: CUDA and JAX reserve huge virtual ranges, so it kills healthy runs;
    # memory_mb (a cgroup, else a watchdog) caps resident memory instead. See runner.py.
    address_space_mb: int | None = Field(None, ge=64)
    isolation: Isolation = "auto"
    # Seeds: how many a full run gets (None: the idea's, else the template's [seeds]), how many must be ok,
    # and how many runs go at once on this machine (0: its cores divided by the template's [seeds] cpus).
    seeds: int | None = Field(None, ge=1, le=100)
    seeds_min_ok: int | None = Field(None, ge=1, le=100)
    parallel_runs: int = Field(0, ge=0, le=1024)

    def merged(self, **overrides: object) -> Limits:
        """A copy with the non-None overrides applied (and validated)."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return Limits.model_validate(data)


class LimitOverrides(BaseModel):
    """The part of Limits an idea spec may set; every field optional."""

    model_config = ConfigDict(extra="forbid")

    max_runs: int | None = Field(None, ge=1, le=100)
    max_attempts: int | None = Field(None, ge=1, le=50)
    parallel_runs: int | None = Field(None, ge=0, le=1024)
    full_timeout_s: float | None = Field(None, gt=0)
    smoke_timeout_s: float | None = Field(None, gt=0)
    plot_timeout_s: float | None = Field(None, gt=0)
    latex_timeout_s: float | None = Field(None, gt=0)
    max_plot_attempts: int | None = Field(None, ge=1, le=20)
    max_compile_attempts: int | None = Field(None, ge=1, le=20)
    vision_rounds: int | None = Field(None, ge=0, le=10)
    budget_usd: float | None = Field(None, ge=0)
    request_timeout_s: float | None = Field(None, gt=0, le=3600, allow_inf_nan=False)
    price_per_mtok_in: float | None = Field(None, ge=0, allow_inf_nan=False)
    price_per_mtok_out: float | None = Field(None, ge=0, allow_inf_nan=False)
    memory_mb: int | None = Field(None, ge=64)
    cpu_time_s: int | None = Field(None, ge=1)
    max_processes: int | None = Field(None, ge=8)
    max_file_mb: int | None = Field(None, ge=1)
    max_written_mb: int | None = Field(None, ge=1)
    address_space_mb: int | None = Field(None, ge=64)
    isolation: Isolation | None = None


Strategy = Literal["linear", "tree"]


class SearchSettings(BaseModel):
    """`--strategy tree`: how the search tree grows and when it stops (search/policy.py documents the policy).
    An idea's `search` sets any of them; `--max-nodes` and `--search-time` override. Recorded in the journal
    (WorkspaceCreated.options), so a resume and a replay grow the same tree."""

    model_config = ConfigDict(extra="forbid")

    max_nodes: int | None = Field(None, ge=1, le=1000, description="nodes to make (None: the run's max_runs)")
    wall_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="no new node after this many seconds")
    seed: int = Field(0, ge=0, description="the policy's random choices (drafting anew, debugging) are drawn from it")
    drafts: int = Field(2, ge=1, le=100, description="drafts from the template before any improving")
    debug_prob: float = Field(0.5, ge=0, le=1, description="chance of debugging a failed leaf when one can be")
    explore_prob: float = Field(0.1, ge=0, le=1, description="chance of a fresh draft instead of improving the best")
    max_debug_depth: int = Field(3, ge=0, le=20, description="debug steps in a row, at most, on one line of nodes")
    parallel: int | None = Field(None, ge=0, le=64, description=(
        "nodes whose full runs may go on while the agent drafts the next (None: the run's parallel_runs, else its "
        "GPU slots (--gpus), when above 1, else 0: each node waits for the one before; resolved when the "
        "workspace is made)"))
