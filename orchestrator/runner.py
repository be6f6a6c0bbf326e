"""The one module that starts processes.

Every child gets its own process group and a unique token in its environment, so that a timeout
kills the whole tree — grandchildren that left the group (setsid, double fork) included. Output
goes to capped files in the run's log folder; wall time, exit code and peak resident memory (of
the whole tree) are measured; the environment is scrubbed of secrets.

Limits, in layers (each works where the one before it is unavailable):

- isolation `bwrap` (sandbox.py): a sealed root (system directories, the interpreter, the workspace,
  the paths named), no network, the workspace's record, yardstick and earlier runs read-only, own pid
  namespace.
- a per-run cgroup (cgroup.py): `memory.max` / `memory.limit_in_bytes` on resident memory, and
  `pids.max` on the number of tasks — the only process cap that also binds root.
- watchdogs, polled every 0.1 s over the run's processes (found by cgroup and by token): resident
  memory of the tree, number of processes, bytes written to the workspace, wall time.
- rlimits: CPU time, file size, open files, core dumps, processes (RLIMIT_NPROC, for non-root only:
  the kernel ignores it for root, and it counts *all* the user's tasks, so the cap is set to the
  user's present count plus `max_processes`). Address space (RLIMIT_AS) only when
  `limits.address_space_mb` is set, never by default: CUDA, JAX and many BLAS builds reserve
  terabytes of virtual memory they never touch, so an address-space cap kills healthy programs;
  resident memory is what the cgroup and the watchdog cap instead.
"""

from __future__ import annotations

import os
import re
import resource
import select
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from . import cgroup, sandbox
from . import env as env_names
from .procs import sigkill_until_gone
from .settings import Limits

TOKEN_VAR = env_names.RUN_TOKEN
_SECRET = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|SESSION|COOKIE|PRIVATE)", re.IGNORECASE)
_SECRET_NAMES = {"OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "AWS_ACCESS_KEY_ID"}
_POLL_S = 0.1


class RunRecord(BaseModel):
    """What happened to one process tree."""

    argv: list[str]
    cwd: str
    exit_code: int | None
    wall_s: float
    peak_rss_mb: float
    timed_out: bool = False
    # Which limit ended it: timeout, memory, processes, written-bytes, file-size, cpu-time, interrupted.
    killed: str | None = None
    limit_detail: str | None = None  # the same, in words the agent can act on
    stdout_path: str
    stderr_path: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    isolation: str = "none"
    leftover_killed: int = 0  # processes of the tree still alive after it ended, and killed
    containment: list[str] = Field(default_factory=list)  # the layers that applied: bwrap, cgroup-memory ...
    signal: int | None = None  # the signal that ended the child (bwrap's 128+N unwrapped)
    cgroup: str | None = None  # the run's cgroup folder name (removed when the run ends)
    job: dict[str, Any] = Field(default_factory=dict)  # the scheduler's job it ran as (Slurm: job_id, state, node)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.killed is None


def scrub_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment without API keys, tokens and provider endpoints."""
    return {k: v for k, v in env.items() if not _SECRET.search(k) and k not in _SECRET_NAMES}


def command_argv(command: str, python: str, **fmt: str) -> list[str]:
    """A manifest command (`python experiment.py --out_dir={out_dir}`) as argv for a given interpreter."""
    argv = [part.format(**fmt) for part in shlex.split(command)]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = python
    return argv


def _proc_tokens() -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    out[int(name)] = fh.read()
            except OSError:
                continue
    return out


def tree_pids(token: str) -> list[int]:
    """Every live process carrying our token: the whole tree, escapees from the group included."""
    needle = f"{TOKEN_VAR}={token}".encode()
    me = os.getpid()
    return [pid for pid, env in _proc_tokens().items() if needle in env and pid != me]


def kill_marked(name: str, value: str) -> int:
    """Kill every process whose environment carries name=value (leftovers of a killed orchestrator)."""
    needle = f"{name}={value}".encode()
    return len(sigkill_until_gone(lambda: [pid for pid, env in _proc_tokens().items() if needle in env.split(b"\0")]))


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def _kill_all(pgid: int | None, token: str) -> int:
    """SIGKILL the group and every token-carrying process; returns how many tree processes were found."""
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(sigkill_until_gone(lambda: tree_pids(token)))


def _files(path: Path):
    """Every file under `path` (symlinks not followed, unreadable entries skipped), with its stat."""
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            yield entry, entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
        except OSError:
            continue


def dir_bytes(path: Path) -> int:
    """Bytes the files under `path` occupy on disk."""
    return sum(st.st_blocks * 512 for _, st in _files(path))


class _CappedSink(threading.Thread):
    """Copy a pipe into a file, keeping the first `cap` bytes and a tail; count what was dropped."""

    def __init__(self, pipe, path: Path, cap: int) -> None:
        super().__init__(daemon=True)
        self.pipe, self.path, self.cap = pipe, path, cap
        self.truncated = False

    def run(self) -> None:
        head_cap = self.cap * 3 // 4
        tail_cap = self.cap - head_cap
        written = 0
        tail = bytearray()
        dropped = 0
        with open(self.path, "wb") as fh:
            for chunk in iter(lambda: self.pipe.read1(65536), b""):
                if written < head_cap:
                    take = chunk[: head_cap - written]
                    fh.write(take)
                    fh.flush()
                    written += len(take)
                    chunk = chunk[len(take) :]
                if chunk:
                    tail += chunk
                    if len(tail) > tail_cap:
                        dropped += len(tail) - tail_cap
                        del tail[: len(tail) - tail_cap]
            if dropped:
                self.truncated = True
                fh.write(f"\n[... {dropped} bytes cut by the orchestrator's log cap ...]\n".encode())
            fh.write(bytes(tail))
        self.pipe.close()


def _user_tasks(uid: int) -> int:
    """How many tasks (threads included) the user runs now: what RLIMIT_NPROC counts against."""
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                n += int(fields["Threads"])
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return n


def _cap(kind: int, soft: int, hard: int) -> None:
    """Lower a limit, never above what this process already has (a user's ulimit may be tighter;
    raising a hard limit needs a privilege we may not have)."""
    _, cur_hard = resource.getrlimit(kind)
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
        soft = min(soft, hard)
    resource.setrlimit(kind, (soft, hard))


def _preexec(limits: Limits | None, join: list[str]):
    uid = os.getuid()
    nproc = limits.max_processes + _user_tasks(uid) if limits is not None and uid != 0 else None
    address_space = limits.address_space_mb if limits is not None else None

    def setup() -> None:
        cgroup.join(join)  # first: every descendant is born inside the run's cgroup
        os.setsid()
        _cap(resource.RLIMIT_CORE, 0, 0)
        if limits is None:
            return
        if limits.cpu_time_s:
            _cap(resource.RLIMIT_CPU, limits.cpu_time_s, limits.cpu_time_s + 5)
        fsize = limits.max_file_mb * 1024 * 1024
        _cap(resource.RLIMIT_FSIZE, fsize, fsize)
        _cap(resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files)
        if nproc is not None:
            _cap(resource.RLIMIT_NPROC, nproc, nproc)
        if address_space:
            _cap(resource.RLIMIT_AS, address_space * 2**20, address_space * 2**20)

    return setup


def _largest_file(path: Path, at_least: int) -> Path | None:
    """A file under `path` of `at_least` bytes (the file-size cap reached), if any."""
    return next((Path(entry.path) for entry, st in _files(path) if st.st_size >= at_least), None)


def _end_reaper(proc: subprocess.Popen) -> None:
    """Tell the subreaper to end every process it holds (SIGTERM), and give it a moment to do so."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _limit_detail(killed: str, limits: Limits | None, timeout_s: float) -> str:
    lim = limits or Limits()
    return {
        "timeout": f"it ran past its time limit of {timeout_s:g} s",
        "memory": f"it used more than its memory limit of {lim.memory_mb} MB of resident memory",
        "processes": f"it tried to run more than {lim.max_processes} processes/threads at once",
        "written-bytes": f"it wrote more than {lim.max_written_mb} MB into the workspace",
        "file-size": f"it wrote a file larger than the limit of {lim.max_file_mb} MB",
        "cpu-time": f"it used more than its CPU time limit of {lim.cpu_time_s} s",
        "interrupted": "the orchestrator was interrupted",
    }.get(killed, killed)


class RunSpec(BaseModel):
    """Everything one run needs, as one value: what to start, where, under which limits and what it may
    write or read. The caller (execution.py, the stages) decides what is read-only or hidden; the runner
    knows nothing of workspaces."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    argv: list[str]
    cwd: Path
    log_dir: Path
    timeout_s: float
    env: dict[str, str] | None = None  # None: ours, scrubbed
    limits: Limits | None = None
    isolation: str = "none"
    writable: list[Path] = Field(default_factory=list)  # besides cwd, which is always writable
    read_only: list[Path] = Field(default_factory=list)  # bound read-only under bwrap (inside writable or not)
    hidden: list[Path] = Field(default_factory=list)  # replaced by an empty read-only folder under bwrap
    rebind: list[Path] = Field(default_factory=list)  # folders inside `hidden` bound writable again (a run's home)
    watch_dir: Path | None = None  # where written bytes and the file-size cap are watched
    key: str = "run"  # names the run (`run_2/attempt_1/full`): job names, re-attaching
    out_dir: str | None = None  # relative to cwd: what a requeued Slurm job clears before it starts again


@dataclass
class _Contained:
    argv: list[str]
    containment: list[str]
    cg: cgroup.RunCgroup | None
    reaper: bool


def _contain(spec: RunSpec, token: str) -> _Contained:
    """The layers that hold the run: bwrap's sealed root, the run's cgroup, else a subreaper."""
    argv = list(spec.argv)
    containment: list[str] = []
    if spec.isolation == "bwrap":
        argv = sandbox.bwrap_argv(argv, cwd=spec.cwd, writable=[spec.cwd, *spec.writable], read_only=spec.read_only,
                                  hidden=spec.hidden, rebind=spec.rebind)
        containment.append("bwrap")
    cg = None
    if spec.limits is not None:
        cg = cgroup.make(token, memory_mb=spec.limits.memory_mb, max_tasks=spec.limits.max_processes)
    containment += [f"cgroup-{c}" for c in (cg.controllers if cg else [])]
    reaper = spec.isolation != "bwrap" and (cg is None or "pids" not in cg.controllers)
    if reaper:  # no pid namespace, no cgroup: a subreaper ends what escaped both the group and the token
        reaped = spec.log_dir / "reaped.txt"
        reaped.unlink(missing_ok=True)
        argv = sandbox.reaper_argv(argv, report=reaped)
        containment.append("subreaper")
    return _Contained(argv, containment, cg, reaper)


def _watch(spec: RunSpec, proc: subprocess.Popen, box: _Contained, token: str, start: float,
           stop: threading.Event | None) -> tuple[str | None, int]:
    """Poll the tree until it ends or a limit ends it; returns (which limit killed it or None, peak RSS kB)."""
    limits, cg = spec.limits, box.cg
    peak_kb = 0
    killed: str | None = None
    mem_cap_kb = limits.memory_mb * 1024 if limits and limits.memory_mb else None
    max_procs = limits.max_processes if limits else None
    written_cap = limits.max_written_mb * 1024 * 1024 if limits else None
    next_du = 0.0
    ended = _ender(proc)
    try:
        while True:
            if ended(_POLL_S):
                break
            now = time.monotonic()
            pids = set(tree_pids(token)) | (cg.pids() if cg else set())
            rss = sum(_rss_kb(p) for p in pids if not (box.reaper and p == proc.pid))
            peak_kb = max(peak_kb, rss)
            if now - start > spec.timeout_s:
                killed = "timeout"
            elif (cg is not None and cg.oom_kills()) or (mem_cap_kb and rss > mem_cap_kb):
                killed = "memory"
            elif (cg is not None and cg.pid_limit_hits()) or (max_procs and len(pids) > max_procs):
                killed = "processes"
            elif stop is not None and stop.is_set():
                killed = "interrupted"
            elif spec.watch_dir is not None and written_cap and now >= next_du:
                used = dir_bytes(spec.watch_dir)
                # as often as a walk of the folder stays cheap (a twentieth of the time), at most every 2 s
                next_du = now + min(2.0, max(_POLL_S, 20 * (time.monotonic() - now)))
                if used > written_cap:
                    killed = "written-bytes"
            if killed:
                if box.reaper:  # first, so that it can end the orphans it holds
                    _end_reaper(proc)
                if cg is not None:
                    cg.kill_all()
                _kill_all(proc.pid, token)
                proc.wait()
                break
    except BaseException:  # Ctrl-C or SIGTERM on the orchestrator, wherever it lands: the tree goes with it
        if box.reaper:
            _end_reaper(proc)
        if cg is not None:
            cg.remove()
        _kill_all(proc.pid, token)
        raise
    finally:
        ended(None)
    return killed, peak_kb


def _ender(proc: subprocess.Popen):
    """`ended(timeout)`: True once `proc` has ended (reaped), waiting up to `timeout` s for it; `ended(None)`
    lets go of what it holds. Woken by the process's pidfd the moment it ends (Popen.wait with a timeout
    sleeps in steps of up to 50 ms: each run's end noticed that much later); Popen.wait where there is none."""
    try:
        fd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or already reaped
        fd = None

    def ended(timeout: float | None) -> bool:
        nonlocal fd
        if timeout is None:
            if fd is not None:
                os.close(fd)
                fd = None
            return proc.returncode is not None
        if fd is None:
            try:
                proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        if select.select([fd], [], [], timeout)[0]:
            proc.wait()
            return True
        return False

    return ended


def _classify(spec: RunSpec, proc: subprocess.Popen, box: _Contained, killed: str | None,
              token: str) -> tuple[str | None, int, int | None]:
    """After the end: sweep leftovers, and name the limit the kernel enforced between two polls (cgroup
    OOM, pids cap, SIGXCPU, SIGXFSZ). Returns (killed, leftover processes killed, the ending signal)."""
    limits, cg = spec.limits, box.cg
    leftover = _kill_all(proc.pid, token)
    if box.reaper:
        try:
            leftover += int((spec.log_dir / "reaped.txt").read_text() or 0)
        except (OSError, ValueError):
            pass
    if cg is not None:
        leftover += cg.kill_all()
        if killed is None and cg.oom_kills():
            killed = "memory"  # the kernel ended a process between two polls
        elif killed is None and cg.pid_limit_hits():
            killed = "processes"
        cg.remove()
    code = proc.returncode
    sig = -code if code is not None and code < 0 else None
    if spec.isolation == "bwrap" and code is not None and code > 128:
        sig = code - 128  # bwrap reports a child's death by signal N as exit code 128+N
    if killed is None and limits is not None:
        if sig == signal.SIGXCPU:
            killed = "cpu-time"
        elif sig == signal.SIGXFSZ or (code and spec.watch_dir is not None
                                       and _largest_file(spec.watch_dir, limits.max_file_mb * 2**20)):
            killed = "file-size"  # Python ignores SIGXFSZ: its write fails (EFBIG) and it exits 1
    return killed, leftover, sig


def run(spec: RunSpec, *, stop: threading.Event | None = None) -> RunRecord:
    """Run a spec to completion or until a limit ends it (or `stop` is set); never raises for the
    child's failures. Three steps: contain (sandbox, cgroup, subreaper), watch (limits, polled),
    classify (which limit ended it, leftovers swept)."""
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    child_env = scrub_env(os.environ if spec.env is None else spec.env)
    child_env[TOKEN_VAR] = token
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    cap = spec.limits.log_cap_bytes if spec.limits else 5_000_000
    box = _contain(spec, token)
    stdout_path, stderr_path = spec.log_dir / "stdout.txt", spec.log_dir / "stderr.txt"
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            box.argv,
            cwd=spec.cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_preexec(spec.limits, box.cg.join_files() if box.cg else []),  # joins the cgroup before exec
            close_fds=True,
        )
    except OSError as exc:
        if box.cg is not None:
            box.cg.remove()
        stdout_path.write_bytes(b"")
        stderr_path.write_text(f"cannot start {box.argv[0]}: {exc.strerror}\n")
        return RunRecord(
            argv=box.argv, cwd=str(spec.cwd), exit_code=127, wall_s=0.0, peak_rss_mb=0.0,
            stdout_path=str(stdout_path), stderr_path=str(stderr_path), isolation=spec.isolation,
            containment=box.containment,
        )
    if box.cg is not None and proc.pid not in box.cg.pids() and proc.poll() is None:
        box.containment = [c for c in box.containment if not c.startswith("cgroup-")]  # the join failed
    sinks = [_CappedSink(proc.stdout, stdout_path, cap), _CappedSink(proc.stderr, stderr_path, cap)]
    for s in sinks:
        s.start()
    box.containment.append("watchdog")
    killed, peak_kb = _watch(spec, proc, box, token, start, stop)
    killed, leftover, sig = _classify(spec, proc, box, killed, token)
    for s in sinks:
        s.join(timeout=5)
    return RunRecord(
        argv=box.argv,
        cwd=str(spec.cwd),
        exit_code=proc.returncode,
        wall_s=round(time.monotonic() - start, 3),
        peak_rss_mb=round(peak_kb / 1024, 1),
        timed_out=killed == "timeout",
        killed=killed,
        limit_detail=_limit_detail(killed, spec.limits, spec.timeout_s) if killed else None,
        stdout_path=str(stdout_path),
        stderr_path=str(stderr_path),
        stdout_truncated=sinks[0].truncated,
        stderr_truncated=sinks[1].truncated,
        isolation=spec.isolation,
        leftover_killed=leftover,
        containment=box.containment,
        signal=sig,
        cgroup=box.cg.name if box.cg is not None else None,
    )


def spawn(argv: Sequence[str], *, log_path: Path, cwd: Path | None = None,
          env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """One of our own long-lived helpers (fleet.py: an orchestrator per idea), started and left running: its own
    session (the caller forwards signals), output appended to `log_path`, environment kept (it calls the model)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(list(argv), cwd=cwd, env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)


class ToolResult(BaseModel):
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str


def tool(argv: Sequence[str], *, cwd: Path | None = None, timeout_s: float = 60, env: Mapping[str, str] | None = None,
         input_text: str | None = None) -> ToolResult:
    """A short helper command (git, pdftotext ...) whose output we need in memory."""
    try:
        cp = subprocess.run(
            list(argv), check=False, cwd=cwd, env=None if env is None else dict(env), input=input_text,
            capture_output=True, text=True, timeout=timeout_s, start_new_session=True,
        )
    except FileNotFoundError:
        return ToolResult(argv=list(argv), exit_code=127, stdout="", stderr=f"{argv[0]}: not found")
    except subprocess.TimeoutExpired:
        return ToolResult(argv=list(argv), exit_code=124, stdout="", stderr=f"{argv[0]}: timed out after {timeout_s}s")
    return ToolResult(argv=list(argv), exit_code=cp.returncode, stdout=cp.stdout, stderr=cp.stderr)
