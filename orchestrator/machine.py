"""Safe default resource limits for experiment processes, derived from the machine the orchestrator runs on.

Memory: min(total - 2 GiB, 75% of total), at least 256 MB, where total is the machine's memory or our own
cgroup's limit when that is lower (a container's limit is what we really have). The orchestrator itself,
the agent (aider, litellm) and the system keep the rest, so an experiment that grows is stopped before it
takes the control plane down with it.
Processes: half of the tasks still free under the kernel's and our cgroup's limits, at most 512 and at
least 64."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RESERVE_MB = 2048  # left to the orchestrator, the agent and the system
SHARE = 0.75  # of the total, at most, for an experiment
MAX_PROCESSES = 512


@dataclass(frozen=True)
class Machine:
    """What the machine offers: memory (MB) and tasks (the kernel's or our cgroup's limit, and in use)."""

    memory_mb: int
    task_limit: int
    tasks_used: int

    @property
    def memory_cap_mb(self) -> int:
        return max(256, min(self.memory_mb - RESERVE_MB, int(self.memory_mb * SHARE)))

    @property
    def process_cap(self) -> int:
        return max(64, min(MAX_PROCESSES, (self.task_limit - self.tasks_used) // 2))


def _meminfo_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)


def _int_file(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _tasks_used() -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                n += len(os.listdir(f"/proc/{d}/task"))
            except OSError:
                pass
    return n


def probe() -> Machine:
    """This machine, now."""
    from .cgroup import own_limit

    mem = _meminfo_mb()
    cg_mem = own_limit("memory")
    if cg_mem is not None:
        mem = min(mem, cg_mem // (1 << 20))
    limits = [v for v in (_int_file("/proc/sys/kernel/pid_max"), _int_file("/proc/sys/kernel/threads-max"),
                          own_limit("pids")) if v]
    return Machine(memory_mb=mem, task_limit=min(limits) if limits else 32768, tasks_used=_tasks_used())
