"""Per-run control groups: the kernel's own caps on resident memory and on the number of tasks.

Why cgroups, and not rlimits alone: RLIMIT_AS caps *virtual* memory, which CUDA and JAX reserve by the
terabyte, so it kills healthy GPU programs; RLIMIT_NPROC is ignored for root and, for everyone else,
counts every task of the user (a browser's threads included). A cgroup counts exactly the run's
processes, whatever they do to their environment or session, and its memory cap acts on resident
memory (the kernel's OOM killer ends the run's largest process, not the machine's).

A run gets a fresh cgroup below the orchestrator's own (`orchestrate-<token>`), in cgroup v2 where the
parent has the controller enabled, else in the v1 hierarchy of that controller (memory, pids). The
child joins it before it execs (runner's preexec), so every descendant is inside from its first
instruction. Where no cgroup can be made (no permission, no controller, a container without
delegation) `make` returns None for that controller and the runner's watchdog does the job; so it
does with `ORCHESTRATE_CGROUP=0` in the orchestrator's environment.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .env import CGROUP, cgroups_off
from .procs import sigkill_until_gone

PREFIX = "orchestrate-"
SWITCH = CGROUP  # the variable that turns cgroups off ("0"); named in env.py


@dataclass(frozen=True)
class _Mount:
    version: int  # 1 or 2
    point: Path
    root: str  # the mount's root inside the hierarchy (bind-mounted containers show a sub-path)
    controllers: frozenset[str]


def _mounts() -> list[_Mount]:
    out: list[_Mount] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        fstype, opts = rest[0], rest[2].split(",")
        point = Path(fields[4].replace("\\040", " "))
        if fstype == "cgroup2":
            ctl = frozenset()
            try:
                ctl = frozenset((point / "cgroup.controllers").read_text().split())
            except OSError:
                pass
            out.append(_Mount(2, point, fields[3], ctl))
        elif fstype == "cgroup":
            out.append(_Mount(1, point, fields[3], frozenset(opts)))
    return out


def _own_paths() -> dict[str, str]:
    """Our cgroup per v1 controller name, and under key "" the v2 one (from /proc/self/cgroup)."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctls, path = parts
        if ctls == "":
            out[""] = path
        for c in ctls.split(","):
            out[c] = path
    return out


def _under(mount: _Mount, path: str) -> Path:
    rel = path
    if mount.root != "/" and rel.startswith(mount.root):
        rel = rel[len(mount.root):]
    return mount.point / rel.lstrip("/")


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def _read_int(path: Path, key: str | None = None) -> int:
    """A number from a cgroup file: the whole file, or the value after `key` in a `key value` list."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    if key is None:
        text = text.strip()
        return int(text) if text.isdigit() else 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


@dataclass
class RunCgroup:
    """The cgroup(s) of one run. `dirs` maps a controller (memory, pids) to the directory enforcing it."""

    name: str
    dirs: dict[str, Path] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def controllers(self) -> list[str]:
        return sorted(self.dirs)

    def join_files(self) -> list[str]:
        """The `cgroup.procs` files a child writes its pid into (one per distinct directory)."""
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def pids(self) -> set[int]:
        """Every process still in the run's cgroups."""
        found: set[int] = set()
        for d in set(self.dirs.values()):
            try:
                found.update(int(x) for x in (d / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
        return found

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended for this cgroup's memory cap."""
        d = self.dirs.get("memory")
        if d is None:
            return 0
        if self.versions["memory"] == 2:
            return _read_int(d / "memory.events", "oom_kill")
        return _read_int(d / "memory.oom_control", "oom_kill")

    def pid_limit_hits(self) -> int:
        """How many forks (or thread starts) were refused because the task cap was reached."""
        d = self.dirs.get("pids")
        return _read_int(d / "pids.events", "max") if d is not None else 0

    def kill_all(self) -> int:
        """SIGKILL every process in the run's cgroup(s), until none is left; returns how many were seen."""
        for d, v in {(d, self.versions[c]) for c, d in self.dirs.items()}:
            if v == 2 and (d / "cgroup.kill").exists():
                _write(d / "cgroup.kill", "1")
        return len(sigkill_until_gone(self.pids, rounds=100, pause=0.01))

    def remove(self) -> bool:
        """Kill what is left and remove the directories; True when all are gone."""
        self.kill_all()
        ok = True
        for d in set(self.dirs.values()):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                ok = False
        return ok


def make(token: str, *, memory_mb: int | None, max_tasks: int | None) -> RunCgroup | None:
    """A cgroup for one run with the caps asked for, or None where no controller could be used."""
    wanted = {c for c, on in (("memory", memory_mb), ("pids", max_tasks)) if on}
    if not wanted or cgroups_off():
        return None
    mounts = _mounts()
    own = _own_paths()
    cg = RunCgroup(name=f"{PREFIX}{token[:16]}")
    v2 = next((m for m in mounts if m.version == 2), None)
    if v2 is not None and "" in own:
        parent = _under(v2, own[""])
        _sweep(parent)
        try:
            enabled = set((parent / "cgroup.subtree_control").read_text().split())
        except OSError:
            enabled = set()
        usable = wanted & enabled
        if usable:
            d = parent / cg.name
            try:
                d.mkdir()
            except OSError:
                usable = set()
            if usable:
                if "memory" in usable:
                    if _write(d / "memory.max", str(memory_mb * 2**20)):
                        _write(d / "memory.swap.max", "0")  # absent without swap accounting: fine
                    else:
                        usable.discard("memory")
                if "pids" in usable and not _write(d / "pids.max", str(max_tasks)):
                    usable.discard("pids")
                for c in usable:
                    cg.dirs[c], cg.versions[c] = d, 2
                if not usable:
                    _rmdir(d)
    for c in sorted(wanted - set(cg.dirs)):
        m = next((m for m in mounts if m.version == 1 and c in m.controllers), None)
        if m is None or c not in own:
            continue
        _sweep(_under(m, own[c]))
        d = _under(m, own[c]) / cg.name
        try:
            d.mkdir()
        except OSError:
            continue
        if c == "memory":
            ok = _write(d / "memory.limit_in_bytes", str(memory_mb * 2**20))
            if ok and (d / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
                _write(d / "memory.memsw.limit_in_bytes", str(memory_mb * 2**20))
        else:
            ok = _write(d / "pids.max", str(max_tasks))
        if ok:
            cg.dirs[c], cg.versions[c] = d, 1
        else:
            _rmdir(d)
    return cg if cg.dirs else None


STALE_S = 60.0


def _sweep(parent: Path) -> None:
    """Remove run cgroups an orchestrator killed with -9 left behind: empty, and older than a minute
    (a live run's cgroup holds its child within milliseconds of being made)."""
    try:
        entries = [p for p in parent.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except OSError:
        return
    now = time.time()
    for d in entries:
        try:
            if now - d.stat().st_mtime > STALE_S and not (d / "cgroup.procs").read_text().strip():
                d.rmdir()
        except OSError:
            continue


def _rmdir(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def join(files: list[str]) -> None:
    """In the child before exec: move this process into the run's cgroup(s). Failure leaves it to the watchdog."""
    pid = str(os.getpid())
    for f in files:
        try:
            with open(f, "w") as fh:
                fh.write(pid)
        except OSError:
            pass


def leftovers() -> list[Path]:
    """Run cgroups left behind (by an orchestrator killed with -9): for cleanup and for tests."""
    out: list[Path] = []
    own = _own_paths()
    for m in _mounts():
        key = "" if m.version == 2 else next((c for c in ("memory", "pids") if c in m.controllers), None)
        if key is None or key not in own:
            continue
        parent = _under(m, own[key])
        try:
            out += [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
        except OSError:
            continue
    return out


def own_limit(controller: str) -> int | None:
    """The limit our own cgroup puts on `memory` (bytes) or `pids` (tasks), or None when there is none to
    read (no cgroup, "max", or v1's huge "unlimited" number). A container's limit is what we really have."""
    files = {"memory": ("memory.max", "memory.limit_in_bytes"), "pids": ("pids.max", "pids.max")}[controller]
    own = _own_paths()
    for m in _mounts():
        if m.version == 2 and "" in own:
            path = _under(m, own[""]) / files[0]
        elif m.version == 1 and controller in m.controllers and controller in own:
            path = _under(m, own[controller]) / files[1]
        else:
            continue
        value = _read_int(path)
        if 0 < value < 1 << 60:
            return value
    return None
