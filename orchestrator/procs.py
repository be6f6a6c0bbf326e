"""Ending processes: one sweep loop for every way of finding them (a run's token, its cgroup, a marker)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable


def sigkill_until_gone(list_pids: Callable[[], Iterable[int]], *, rounds: int = 20, pause: float = 0.02) -> set[int]:
    """SIGKILL what `list_pids` finds, again and again until it finds nothing (a fork storm can outrun
    one sweep) or `rounds` run out; never this process. Returns every pid seen."""
    me = os.getpid()
    seen: set[int] = set()
    for _ in range(rounds):
        pids = set(list_pids()) - {me}
        if not pids:
            break
        seen |= pids
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(pause)
    return seen
