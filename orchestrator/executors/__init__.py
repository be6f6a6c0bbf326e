"""Where a run executes. Stages never know which executor ran them: every executor returns the same
`runner.RunRecord`. `local` runs a subprocess here; `slurm` submits a job (executors/slurm.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from .. import runner
from ..settings import Limits


class Executor(Protocol):
    name: str

    def run(self, argv: Sequence[str], *, cwd: Path, log_dir: Path, timeout_s: float, env: Mapping[str, str],
            limits: Limits, isolation: str, writable: Sequence[Path], watch_dir: Path | None, stop,
            key: str, read_only: Sequence[Path] | None = None) -> runner.RunRecord:
        """Run to completion; `key` (e.g. `run_2/attempt_1/full`) names the run for re-attaching; `read_only`:
        the paths bound read-only under bwrap (None: the workspace's defaults, runner.run)."""
        ...


class LocalExecutor:
    """A subprocess on this machine; `gpus` (e.g. "0,1") becomes CUDA_VISIBLE_DEVICES."""

    name = "local"

    def __init__(self, gpus: str | None = None) -> None:
        self.gpus = gpus

    def run(self, argv, *, cwd, log_dir, timeout_s, env, limits, isolation, writable, watch_dir, stop, key,
            read_only=None):
        env = dict(env)
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus
        return runner.run(argv, cwd=cwd, log_dir=log_dir, timeout_s=timeout_s, env=env, limits=limits,
                          isolation=isolation, writable=writable, watch_dir=watch_dir, stop=stop,
                          read_only=read_only)
