"""The one module that starts processes.

Every child gets its own process group and a unique token in its environment, so that a timeout
kills the whole tree — grandchildren that left the group (setsid, double fork) included. Output
goes to capped files in the run's log folder; wall time, exit code and peak resident memory (of
the whole tree) are measured; the environment is scrubbed of secrets.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from . import sandbox
from .settings import Limits

TOKEN_VAR = "ORCHESTRATE_RUN_TOKEN"
_SECRET = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|SESSION|COOKIE|PRIVATE)", re.I)
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
    killed: str | None = None  # why we killed it: timeout, memory, written-bytes, interrupted
    stdout_path: str
    stderr_path: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    isolation: str = "none"
    leftover_killed: int = 0  # processes of the tree still alive after it ended, and killed

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
    found = 0
    for _ in range(20):  # a fork storm can outrun one sweep: sweep until nothing is left
        pids = tree_pids(token)
        if not pids:
            break
        found += len(pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
    return found


def dir_bytes(path: Path) -> int:
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


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


def _preexec(limits: Limits | None):
    def setup() -> None:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if limits is None:
            return
        if limits.cpu_time_s:
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_time_s, limits.cpu_time_s + 5))
        fsize = limits.max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))

    return setup


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_dir: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    isolation: str = "none",
    writable: Sequence[Path] = (),
    watch_dir: Path | None = None,
    stop: threading.Event | None = None,
) -> RunRecord:
    """Run argv to completion or until a limit ends it; never raises for the child's failures."""
    log_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    child_env = scrub_env(os.environ if env is None else env)
    child_env[TOKEN_VAR] = token
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    cap = limits.log_cap_bytes if limits else 5_000_000
    full_argv = list(argv)
    if isolation == "bwrap":
        full_argv = sandbox.bwrap_argv(full_argv, cwd=cwd, writable=[cwd, *writable])
    stdout_path, stderr_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            full_argv,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_preexec(limits),
            close_fds=True,
        )
    except OSError as exc:
        stdout_path.write_bytes(b"")
        stderr_path.write_text(f"cannot start {full_argv[0]}: {exc.strerror}\n")
        return RunRecord(
            argv=full_argv, cwd=str(cwd), exit_code=127, wall_s=0.0, peak_rss_mb=0.0,
            stdout_path=str(stdout_path), stderr_path=str(stderr_path), isolation=isolation,
        )
    sinks = [_CappedSink(proc.stdout, stdout_path, cap), _CappedSink(proc.stderr, stderr_path, cap)]
    for s in sinks:
        s.start()
    pgid = proc.pid
    peak_kb = 0
    killed: str | None = None
    mem_cap_kb = limits.memory_mb * 1024 if limits and limits.memory_mb else None
    written_cap = limits.max_written_mb * 1024 * 1024 if limits else None
    next_du = 0.0
    while True:
        try:
            proc.wait(timeout=_POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        rss = sum(_rss_kb(p) for p in tree_pids(token))
        peak_kb = max(peak_kb, rss)
        if now - start > timeout_s:
            killed = "timeout"
        elif mem_cap_kb and rss > mem_cap_kb:
            killed = "memory"
        elif stop is not None and stop.is_set():
            killed = "interrupted"
        elif watch_dir is not None and written_cap and now >= next_du:
            next_du = now + 1.0
            if dir_bytes(watch_dir) > written_cap:
                killed = "written-bytes"
        if killed:
            _kill_all(pgid, token)
            proc.wait()
            break
    leftover = _kill_all(pgid, token)
    for s in sinks:
        s.join(timeout=5)
    wall = time.monotonic() - start
    code = proc.returncode
    return RunRecord(
        argv=full_argv,
        cwd=str(cwd),
        exit_code=code,
        wall_s=round(wall, 3),
        peak_rss_mb=round(peak_kb / 1024, 1),
        timed_out=killed == "timeout",
        killed=killed,
        stdout_path=str(stdout_path),
        stderr_path=str(stderr_path),
        stdout_truncated=sinks[0].truncated,
        stderr_truncated=sinks[1].truncated,
        isolation=isolation,
        leftover_killed=leftover,
    )


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
            list(argv), cwd=cwd, env=None if env is None else dict(env), input=input_text,
            capture_output=True, text=True, timeout=timeout_s, start_new_session=True,
        )
    except FileNotFoundError:
        return ToolResult(argv=list(argv), exit_code=127, stdout="", stderr=f"{argv[0]}: not found")
    except subprocess.TimeoutExpired:
        return ToolResult(argv=list(argv), exit_code=124, stdout="", stderr=f"{argv[0]}: timed out after {timeout_s}s")
    return ToolResult(argv=list(argv), exit_code=cp.returncode, stdout=cp.stdout, stderr=cp.stderr)
