"""Which executor runs a workspace's experiments: built from the spec its journal keeps
(`WorkspaceCreated.executor`), and that spec made from the command line's choice."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..env import cache_home
from ..errors import InputError
from . import Executor, LocalExecutor
from .gpus import GpuSlotExecutor, gpu_slots


def build_executor(spec: Mapping[str, Any] | None, *, local_slots: int = 1) -> Executor:
    """The executor a journal's `WorkspaceCreated.executor` names; {} or None: a local subprocess, at most
    `local_slots` at once (seeds.local_slots: the machine's cores over a run's declared need)."""
    spec = dict(spec or {})
    name = spec.get("name", "local")
    if name == "slurm":
        from .slurm import SlurmConfig, SlurmExecutor

        return SlurmExecutor(SlurmConfig.model_validate(spec.get("config", {})))
    if name == "local" and spec.get("gpus"):
        return GpuSlotExecutor([str(g) for g in spec["gpus"]], Path(spec.get("lock_dir") or gpu_lock_dir()))
    if name == "local":
        return LocalExecutor(slots=local_slots)
    raise InputError(None, f"unknown executor {name!r} in the workspace's journal")


def gpu_lock_dir() -> Path:
    """Where GPU slot locks live: shared by every orchestrator of this user."""
    return cache_home() / "gpu-slots"


def executor_spec(executor: str, *, gpus: str | None = None, slurm_config: Path | None = None,
                  idea_slurm: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What each idea's runs execute on, as the journal keeps it: `executor` is "local" or "slurm"."""
    if executor == "slurm":
        from .slurm import SlurmExecutor, check_cluster, load_config

        ex = SlurmExecutor(load_config(slurm_config, idea_slurm))
        check_cluster(ex.config)
        return ex.spec()
    slots = gpu_slots(gpus)
    if not slots:
        return {}
    return GpuSlotExecutor(slots, gpu_lock_dir()).spec()
