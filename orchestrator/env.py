"""The orchestrator's home folder and the `ORCHESTRATE_*` environment variables it reads: every read of
one goes through here, so this file is the list of them.

Variables the orchestrator sets for the experiment (ORCHESTRATE_WORKSPACE, ORCHESTRATE_CACHE_DIR,
ORCHESTRATE_SMOKE, ORCHESTRATE_RUN_TOKEN) are named here too."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HOME = "ORCHESTRATE_HOME"  # the orchestrator's own folder (default ~/.cache/orchestrator)
CONFIG = "ORCHESTRATE_CONFIG"  # the user's config file (default <home>/config.toml)
MODEL = "ORCHESTRATE_MODEL"  # the default model when --model is not given
MODEL_METADATA = "ORCHESTRATE_MODEL_METADATA"  # model prices and context sizes (default <home>/models.json)
STREAM = "ORCHESTRATE_STREAM"  # "1": stream the model's replies to the terminal
FAULT = "ORCHESTRATE_FAULT"  # crash tests: after:<event type>:<n> kills the orchestrator there
CGROUP = "ORCHESTRATE_CGROUP"  # "0": make no cgroups (the watchdog alone enforces the caps)
CITATIONS = "ORCHESTRATE_CITATIONS"  # offline | openalex | semanticscholar
CITATIONS_URL = "ORCHESTRATE_CITATIONS_URL"  # the citation backend's base address
LITERATURE = "ORCHESTRATE_LITERATURE"  # `orchestrate ideas`' novelty search: openalex (default) | semanticscholar | offline
LITERATURE_URL = "ORCHESTRATE_LITERATURE_URL"  # its base address (a mirror, or a loopback stub in tests)
RETRY_BASE_S = "ORCHESTRATE_RETRY_BASE_S"  # the first backoff delay after a provider error (default 1 s)
# set by the orchestrator for the experiment's process
WORKSPACE = "ORCHESTRATE_WORKSPACE"
CACHE_DIR = "ORCHESTRATE_CACHE_DIR"
SMOKE = "ORCHESTRATE_SMOKE"
RUN_TOKEN = "ORCHESTRATE_RUN_TOKEN"
JOB_WORKSPACE = "ORCHESTRATE_JOB_WORKSPACE"  # a Slurm job's ORCHESTRATE_WORKSPACE, renamed (executors/slurm.py)
EVAL_SEED = "ORCHESTRATE_EVAL_SEED"  # the workspace's secret seed, for its evaluator only
SEED = "ORCHESTRATE_SEED"  # a seeded run's seed (the default [seeds] env of a template)
# set by Slurm for a job (read on the node)
SLURM_RESTART_COUNT = "SLURM_RESTART_COUNT"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def cache_home(env: Mapping[str, str] | None = None) -> Path:
    """The orchestrator's own folder (environments, data caches, GPU slot locks, aider's and litellm's files)."""
    return Path(_env(env).get(HOME, Path.home() / ".cache" / "orchestrator"))


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The user's config file: $ORCHESTRATE_CONFIG, else <home>/config.toml."""
    return Path(_env(env).get(CONFIG, cache_home(env) / "config.toml"))


def model_metadata_path(env: Mapping[str, str] | None = None) -> Path:
    """The user's model metadata (prices, context sizes): $ORCHESTRATE_MODEL_METADATA, else <home>/models.json."""
    return Path(_env(env).get(MODEL_METADATA, cache_home(env) / "models.json"))


def default_model(env: Mapping[str, str] | None = None) -> str | None:
    """$ORCHESTRATE_MODEL, or None when unset or empty."""
    return _env(env).get(MODEL) or None


def stream_replies(env: Mapping[str, str] | None = None) -> bool:
    """Whether the model's replies stream to the terminal ($ORCHESTRATE_STREAM=1)."""
    return _env(env).get(STREAM) == "1"


def fault_point(env: Mapping[str, str] | None = None) -> str:
    """The crash tests' kill point ($ORCHESTRATE_FAULT), "" when unset."""
    return _env(env).get(FAULT, "")


def cgroups_off(env: Mapping[str, str] | None = None) -> bool:
    """Whether the user turned cgroups off ($ORCHESTRATE_CGROUP=0)."""
    return _env(env).get(CGROUP) == "0"


def citation_backend(env: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(backend name, base address or None) from $ORCHESTRATE_CITATIONS and $ORCHESTRATE_CITATIONS_URL."""
    e = _env(env)
    return (e.get(CITATIONS) or "offline").strip().lower(), e.get(CITATIONS_URL)


def literature_backend(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(backend name or None when unset, base address or None) from $ORCHESTRATE_LITERATURE(_URL)."""
    e = _env(env)
    return ((e.get(LITERATURE) or "").strip().lower() or None), e.get(LITERATURE_URL) or None


def retry_base_s(env: Mapping[str, str] | None = None) -> float:
    """The first backoff delay after a provider error, seconds ($ORCHESTRATE_RETRY_BASE_S, default 1)."""
    return float(_env(env).get(RETRY_BASE_S, 1.0))


def slurm_restart_count(env: Mapping[str, str] | None = None) -> int:
    """How often Slurm requeued this job ($SLURM_RESTART_COUNT on the node; 0 when unset)."""
    try:
        return int(_env(env).get(SLURM_RESTART_COUNT, "0") or 0)
    except ValueError:
        return 0
