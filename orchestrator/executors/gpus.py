"""GPU slots: which GPUs this machine shows, `--gpus` parsed into slots, and an executor that leases a
slot (a lock file under the orchestrator's home, shared by every orchestrator of this user) for each
experiment and shows it as `CUDA_VISIBLE_DEVICES`."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import runner
from ..runner import RunRecord, RunSpec
from . import Handle, LocalExecutor, _linked, _start, wait_local


class GpuSlotExecutor:
    """A local subprocess on a leased GPU: waits for a free slot, runs with CUDA_VISIBLE_DEVICES set to it.

    `gpus` lists one entry per slot: "0,1" is two slots; "0,0" deliberately puts two experiments on GPU 0."""

    name = "local"

    def __init__(self, gpus: list[str], lock_dir: Path, poll_s: float = 0.2) -> None:
        self.gpus = list(gpus)
        self.lock_dir = Path(lock_dir)
        self.poll_s = poll_s

    def spec(self) -> dict[str, Any]:
        """What the journal keeps to build this executor again (`factory.build_executor`)."""
        return {"name": "local", "gpus": self.gpus, "lock_dir": str(self.lock_dir)}

    def _slots(self) -> list[tuple[str, Path]]:
        seen: dict[str, int] = {}
        out = []
        for gpu in self.gpus:
            k = seen.get(gpu, 0)
            seen[gpu] = k + 1
            out.append((gpu, self.lock_dir / f"gpu{gpu}.{k}.lock"))
        return out

    def lease(self, stop: threading.Event | None = None):
        """(gpu, open lock file) of a free slot, waiting for one; None when stopped while waiting."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            for gpu, path in self._slots():
                fh = open(path, "a+")  # held open for the lease: closing it releases the slot
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.close()
                    continue
                fh.seek(0)
                fh.truncate()
                fh.write(f"{os.getpid()}\n")
                fh.flush()
                return gpu, fh
            if stop is not None and stop.is_set():
                return None
            time.sleep(self.poll_s)

    def submit(self, spec: RunSpec, *, stop: threading.Event | None = None) -> Handle:
        """Start the run in a thread that waits for a free slot, runs on it, and releases it at the end."""
        handle = Handle(spec=spec, stop=_linked(stop))

        def body() -> RunRecord:
            leased = self.lease(handle.stop)
            if leased is None:  # stopped while waiting for a GPU: the runner records it as interrupted
                return runner.run(LocalExecutor(gpus="").prepared(spec), stop=handle.stop)
            gpu, fh = leased
            try:
                return runner.run(LocalExecutor(gpus=gpu).prepared(spec), stop=handle.stop)
            finally:
                fh.close()  # closing releases the lock; a killed process releases it too

        handle.future = _start(body, outer=stop, own=handle.stop)
        return handle

    def wait(self, handle: Handle) -> RunRecord:
        return wait_local(handle)

    def attach(self, spec: RunSpec, job_id: str, *, stop: threading.Event | None = None) -> Handle | None:
        return None


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """GPU indices this machine shows: `nvidia-smi -L`, else CUDA_VISIBLE_DEVICES, else none."""
    env = os.environ if env is None else env
    res = runner.tool(["nvidia-smi", "-L"], timeout_s=20)
    if res.exit_code == 0:
        found = [line.split(":", 1)[0].split()[1] for line in res.stdout.splitlines() if line.startswith("GPU ")]
        cvd = env.get("CUDA_VISIBLE_DEVICES")
        if found and cvd is not None:  # a restricted view: keep what the user was given
            return [g for g in _split(cvd) if g not in ("-1", "NoDevFiles")]
        if found:
            return found
    return [g for g in _split(env.get("CUDA_VISIBLE_DEVICES", "")) if g not in ("-1", "NoDevFiles")]


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def gpu_slots(arg: str | None) -> list[str]:
    """--gpus: "0,1" (a slot each), "0,0" (two experiments on GPU 0, as asked), "none"; default: all visible."""
    if arg is None:
        return visible_gpus()
    if arg.strip().lower() in ("", "none", "cpu"):
        return []
    return _split(arg)
