"""The runner: process trees ended however they hide, capped logs, measured memory, scrubbed
environment, limits by layer (sandbox, cgroup, watchdog, rlimits), isolation chosen and recorded."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from io import StringIO
from pathlib import Path

import pytest

from orchestrator import cgroup, runner, sandbox
from orchestrator.errors import InputError
from orchestrator.settings import Limits

PY = sys.executable
BWRAP = sandbox.bwrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP is not None, reason=f"needs bwrap: {BWRAP}")


def _cgroups_work() -> bool:
    cg = cgroup.make("probe" + os.urandom(4).hex(), memory_mb=64, max_tasks=16)
    if cg is None:
        return False
    ok = {"memory", "pids"} <= set(cg.controllers)
    cg.remove()
    return ok


CGROUPS = _cgroups_work()
needs_cgroup = pytest.mark.skipif(not CGROUPS, reason="needs a writable cgroup with memory and pids controllers")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def run_py(tmp_path: Path, code: str, *, timeout_s: float = 10, **kw) -> runner.RunRecord:
    script = tmp_path / "child.py"
    script.write_text(code)
    return run([PY, str(script)], cwd=tmp_path, log_dir=tmp_path / "log", timeout_s=timeout_s, **kw)


def run(argv, *, stop=None, **kw) -> runner.RunRecord:
    """runner.run on a spec made of keyword arguments."""
    return runner.run(runner.RunSpec(argv=list(argv), **kw), stop=stop)


@pytest.fixture(params=["cgroup", "token-only"])
def finder(request, monkeypatch):
    """Escapees are found by the run's cgroup, or (no cgroup) by the token in their environment."""
    if request.param == "cgroup" and not CGROUPS:
        pytest.skip("needs a writable cgroup")
    if request.param == "token-only":
        monkeypatch.setenv(cgroup.SWITCH, "0")
    return request.param


ESCAPEE = """
import os, subprocess, sys, time
if os.fork() == 0:           # the child starts a grandchild in a session of its own, then vanishes
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                         env=ENV)
    open("grandchild.pid", "w").write(str(p.pid))
    os._exit(0)
time.sleep(SLEEP)
"""


def _grandchild(tmp_path: Path) -> int:
    for _ in range(100):
        f = tmp_path / "grandchild.pid"
        if f.exists() and f.read_text():
            return int(f.read_text())
        time.sleep(0.02)
    raise AssertionError("the grandchild never started")


def test_timeout_kills_a_setsid_grandchild_that_would_outlive_its_parent(tmp_path, finder):
    rec = run_py(tmp_path, ESCAPEE.replace("ENV", "dict(os.environ)").replace("SLEEP", "60"), timeout_s=1.5,
                 limits=Limits())
    assert rec.timed_out and rec.killed == "timeout"
    assert 1.4 < rec.wall_s < 8
    assert not alive(_grandchild(tmp_path))
    assert ("cgroup-pids" in rec.containment) == (finder == "cgroup")


def test_a_grandchild_left_behind_by_a_finished_run_is_ended(tmp_path, finder):
    rec = run_py(tmp_path, ESCAPEE.replace("ENV", "dict(os.environ)").replace("SLEEP", "0.5"), limits=Limits())
    assert rec.exit_code == 0 and not rec.timed_out
    assert rec.leftover_killed >= 1
    assert not alive(_grandchild(tmp_path))


@needs_cgroup
def test_a_grandchild_that_wiped_its_environment_is_still_found_by_the_cgroup(tmp_path):
    rec = run_py(tmp_path, ESCAPEE.replace("ENV", "{}").replace("SLEEP", "60"), timeout_s=1.5, limits=Limits())
    assert rec.timed_out
    assert not alive(_grandchild(tmp_path))


@needs_bwrap
def test_a_grandchild_that_wiped_its_environment_dies_with_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv(cgroup.SWITCH, "0")  # the pid namespace alone
    rec = run_py(tmp_path, ESCAPEE.replace("ENV", "{}").replace("SLEEP", "60"), timeout_s=1.5, isolation="bwrap")
    assert rec.timed_out
    time.sleep(0.3)
    # the pid in the file is the sandbox's; none of our processes may be left in the run's folder
    left = [p for p in os.listdir("/proc") if p.isdigit() and _cwd(p) == str(tmp_path)]
    assert left == []


def _cwd(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def test_log_cap_keeps_head_and_tail(tmp_path):
    code = "import sys\nfor i in range(200000):\n    print(f'line {i:06d}')\nprint('THE END', file=sys.stdout)\n"
    rec = run_py(tmp_path, code, limits=Limits(log_cap_bytes=20_000))
    text = Path(rec.stdout_path).read_text()
    assert rec.stdout_truncated and not rec.stderr_truncated
    assert len(text) < 21_000
    assert text.startswith("line 000000") and text.rstrip().endswith("THE END")
    assert "cut by the orchestrator's log cap" in text


def test_peak_resident_memory_of_the_tree_is_recorded(tmp_path):
    code = "import time\nx = b'\\x01' * (120 << 20)\ntime.sleep(0.8)\n"
    rec = run_py(tmp_path, code)
    assert rec.exit_code == 0
    assert 100 <= rec.peak_rss_mb < 400


def test_environment_is_scrubbed_of_secrets(tmp_path):
    env = {**os.environ, "OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-y", "HF_TOKEN": "hf", "MY_SECRET": "s",
           "OPENAI_API_BASE": "http://x", "AWS_ACCESS_KEY_ID": "a", "KEEP_ME": "yes"}
    code = "import json, os\nprint(json.dumps(dict(os.environ)))\n"
    rec = run_py(tmp_path, code, env=env)
    seen = json.loads(Path(rec.stdout_path).read_text())
    for k in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "MY_SECRET", "OPENAI_API_BASE", "AWS_ACCESS_KEY_ID"):
        assert k not in seen
    assert seen["KEEP_ME"] == "yes" and seen["PATH"] == os.environ["PATH"]
    assert len(seen[runner.TOKEN_VAR]) == 32


@needs_cgroup
def test_memory_cap_acts_on_resident_memory_through_the_cgroup(tmp_path):
    code = "hoard = []\nwhile len(hoard) < 48:\n    hoard.append(b'\\x01' * (32 << 20))\nimport time; time.sleep(5)\n"
    rec = run_py(tmp_path, code, limits=Limits(memory_mb=128))
    assert rec.killed == "memory" and "128 MB" in rec.limit_detail
    assert "cgroup-memory" in rec.containment
    assert rec.wall_s < 5
    assert not (Path("/sys/fs/cgroup") / rec.cgroup).exists()
    assert all(p.name != rec.cgroup for p in cgroup.leftovers())


def test_memory_cap_without_a_cgroup_is_the_watchdog(tmp_path, monkeypatch):
    monkeypatch.setenv(cgroup.SWITCH, "0")
    code = ("import time\nhoard = []\nwhile len(hoard) < 48:\n    hoard.append(b'\\x01' * (32 << 20)); time.sleep(0.01)\n"
            "time.sleep(5)\n")
    rec = run_py(tmp_path, code, limits=Limits(memory_mb=128))
    assert rec.killed == "memory" and not any(c.startswith("cgroup") for c in rec.containment)
    assert rec.wall_s < 5


def test_no_address_space_limit_by_default(tmp_path):
    code = "import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY)\n"
    assert Path(run_py(tmp_path, code, limits=Limits()).stdout_path).read_text().strip() == "True"
    rec = run_py(tmp_path, code.replace("== resource.RLIM_INFINITY", ">> 20"), limits=Limits(address_space_mb=4096))
    assert Path(rec.stdout_path).read_text().strip() == "4096"


@pytest.mark.parametrize("mode", ["cgroup", "watchdog"])
def test_process_cap_ends_a_fork_storm_even_for_root(tmp_path, monkeypatch, mode):
    if mode == "cgroup" and not CGROUPS:
        pytest.skip("needs a writable cgroup")
    if mode == "watchdog":
        monkeypatch.setenv(cgroup.SWITCH, "0")
    code = ("import os, time\nfor _ in range(1500):\n    try:\n        if os.fork() == 0:\n"
            "            time.sleep(2); os._exit(0)\n"
            "    except OSError:\n        time.sleep(0.001)\ntime.sleep(5)\n")
    rec = run_py(tmp_path, code, limits=Limits(max_processes=32))
    assert rec.killed == "processes"
    assert rec.wall_s < 5
    time.sleep(0.2)
    assert [p for p in os.listdir("/proc") if p.isdigit() and _cwd(p) == str(tmp_path)] == []
    assert runner.tool(["true"]).exit_code == 0  # the test runner can still start processes


def test_file_size_cap_is_reported_as_such(tmp_path):
    code = ("import os\nos.makedirs('out', exist_ok=True)\nwith open('out/ckpt.bin', 'wb') as fh:\n"
            "    for _ in range(64):\n        fh.write(b'\\x01' * (1 << 20))\n")
    rec = run_py(tmp_path, code, limits=Limits(max_file_mb=8), watch_dir=tmp_path)
    assert rec.killed == "file-size" and "8 MB" in rec.limit_detail
    assert (tmp_path / "out" / "ckpt.bin").stat().st_size == 8 << 20


def test_cpu_time_cap(tmp_path):
    rec = run_py(tmp_path, "while True:\n    pass\n", timeout_s=20, limits=Limits(cpu_time_s=1))
    assert rec.killed == "cpu-time" and rec.wall_s < 10


def test_written_bytes_cap(tmp_path):
    code = ("import os, time\nos.makedirs('out', exist_ok=True)\nfor i in range(64):\n"
            "    open(f'out/{i}.bin', 'wb').write(b'\\x01' * (2 << 20)); time.sleep(0.02)\ntime.sleep(5)\n")
    rec = run_py(tmp_path, code, limits=Limits(max_written_mb=16), watch_dir=tmp_path)
    assert rec.killed == "written-bytes" and rec.wall_s < 5


# -- isolation -------------------------------------------------------------------------------------


def _workspace_like(root: Path) -> None:
    (root / ".orchestrate").mkdir(parents=True)
    (root / ".orchestrate" / "journal.jsonl").write_text("{}\n")
    (root / ".orchestrate" / "protected.json").write_text(json.dumps({"harness.py": "x"}))
    (root / ".git").mkdir()
    (root / "harness.py").write_text("# yardstick\n")
    (root / "experiment.py").write_text("# editable\n")


PROBE = """
import json
out = {}
for path in [".orchestrate/journal.jsonl", ".orchestrate/new", ".git/HEAD", "harness.py", "experiment.py",
             "run_1/final_info.json", "/tmp/scratch", "../outside.txt", "/var/tmp/orchestrate-probe.txt"]:
    try:
        import os
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a") as fh:
            fh.write("x")
        out[path] = "written"
    except OSError as exc:
        out[path] = exc.strerror
print(json.dumps(out))
"""


@needs_bwrap
def test_bwrap_keeps_the_record_and_the_yardstick_read_only_and_outputs_writable(tmp_path):
    ws = tmp_path / "ws"
    _workspace_like(ws)
    (ws / "probe.py").write_text(PROBE)
    ro = [ws / ".orchestrate", ws / ".git", ws / "harness.py"]  # what execution.sandbox_read_only names
    rec = run([PY, "probe.py"], cwd=ws, log_dir=tmp_path / "log", timeout_s=10, isolation="bwrap", read_only=ro,
              hidden=[ws / ".orchestrate"])
    got = json.loads(Path(rec.stdout_path).read_text())
    for path in (".orchestrate/journal.jsonl", ".orchestrate/new", ".git/HEAD", "harness.py", "/var/tmp/orchestrate-probe.txt"):
        assert got[path] != "written", path
    for path in ("experiment.py", "run_1/final_info.json", "/tmp/scratch"):
        assert got[path] == "written", path
    assert (ws / ".orchestrate/journal.jsonl").read_text() == "{}\n"
    assert (ws / "harness.py").read_text() == "# yardstick\n"
    # beside the workspace (here under /tmp) the write went to the sandbox's private /tmp, and vanished
    assert not (tmp_path / "outside.txt").exists() and not Path("/tmp/scratch").exists()
    assert not Path("/var/tmp/orchestrate-probe.txt").exists()
    assert rec.containment[0] == "bwrap"


@needs_bwrap
def test_bwrap_has_no_network_not_even_loopback(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('connected')\n"
            "except OSError as e:\n    print('refused')\n")
    try:
        rec = run_py(tmp_path, code, isolation="bwrap")
        assert Path(rec.stdout_path).read_text().strip() == "refused"
        rec = run_py(tmp_path, code, isolation="none")
        assert Path(rec.stdout_path).read_text().strip() == "connected"  # the listener is real
    finally:
        srv.close()


def test_resolve_auto_and_explicit_levels(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    assert sandbox.resolve("auto") == "none"
    assert sandbox.resolve("none") == "none"
    with pytest.raises(InputError, match="bwrap was asked for"):
        sandbox.resolve("bwrap")
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: None)
    assert sandbox.resolve("auto") == "bwrap"


def test_read_only_binds_come_after_the_writable_ones(tmp_path):
    _workspace_like(tmp_path / "ws")
    ro = [tmp_path / "ws" / ".orchestrate", tmp_path / "ws" / "harness.py"]
    argv = sandbox.bwrap_argv(["python"], cwd=tmp_path / "ws", writable=[tmp_path / "ws"], read_only=ro)
    assert argv.index("--bind") < argv.index("--ro-bind", argv.index("--bind"))  # read-only binds come last


@pytest.mark.parametrize("level", ["none", "bwrap"])
def test_isolation_is_set_per_idea_and_recorded_in_the_journal_and_progress(tmp_path, level):
    if level == "bwrap" and BWRAP is not None:
        pytest.skip(f"needs bwrap: {BWRAP}")
    from conftest import make_idea

    from orchestrator.events import WorkspaceCreated
    from orchestrator.pipeline import RunOptions, start
    from orchestrator.progress import Progress

    idea = make_idea(tmp_path, [], limits={"isolation": level})
    ctx, _ = start(idea, RunOptions(sandbox=tmp_path / "sb", python=PY, stages=["experiments"]), log=lambda *_: None)
    head = ctx.journal.events[0]
    assert isinstance(head, WorkspaceCreated) and head.isolation == level == ctx.isolation
    out = StringIO()
    prog = Progress(max_runs=1, max_attempts=1, isolation=ctx.isolation, stream=out, live=False)
    prog.console.print(prog._panel())
    assert f"isolation  {level}" in out.getvalue()


def test_without_namespace_or_cgroup_a_subreaper_ends_a_grandchild_that_wiped_its_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cgroup.SWITCH, "0")
    for sleep, timeout in (("60", 1.5), ("0.3", 10)):  # killed at the timeout; left behind by a finished run
        (tmp_path / "grandchild.pid").unlink(missing_ok=True)
        rec = run_py(tmp_path, ESCAPEE.replace("ENV", "{}").replace("SLEEP", sleep), timeout_s=timeout, limits=Limits())
        assert "subreaper" in rec.containment
        assert rec.timed_out == (sleep == "60")
        assert not alive(_grandchild(tmp_path))


def test_the_subreaper_passes_exit_codes_and_signals_through(tmp_path, monkeypatch):
    monkeypatch.setenv(cgroup.SWITCH, "0")
    assert run_py(tmp_path, "import sys; sys.exit(3)", limits=Limits()).exit_code == 3
    rec = run_py(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGXCPU)", limits=Limits())
    assert rec.exit_code == -24 and rec.killed == "cpu-time"
    rec = run(["/no/such/program"], cwd=tmp_path, log_dir=tmp_path / "log", timeout_s=5, limits=Limits())
    assert rec.exit_code == 127 and "cannot start" in Path(rec.stderr_path).read_text()


def test_ctrl_c_on_the_orchestrator_ends_the_tree_and_its_cgroup(tmp_path, finder):
    import signal
    import threading

    before = set(cgroup.leftovers())
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        run_py(tmp_path, ESCAPEE.replace("ENV", "{}").replace("SLEEP", "60"), timeout_s=30, limits=Limits())
    assert not alive(_grandchild(tmp_path))
    ours = [p for p in set(cgroup.leftovers()) - before if not (p / "cgroup.procs").read_text().strip()]
    assert ours == []  # (a concurrent run elsewhere would hold processes)


def test_stale_run_cgroups_left_by_a_killed_orchestrator_are_swept(monkeypatch):
    if not CGROUPS:
        pytest.skip("needs a writable cgroup")
    cg = cgroup.make("stale" + os.urandom(6).hex(), memory_mb=None, max_tasks=16)
    stale = cg.dirs["pids"]
    monkeypatch.setattr(cgroup, "STALE_S", -1.0)
    fresh = cgroup.make("fresh" + os.urandom(6).hex(), memory_mb=None, max_tasks=16)
    assert not stale.exists()
    fresh.remove()


@pytest.mark.skipif(not __import__("orchestrator.sandbox", fromlist=["x"]).bwrap_available(), reason="bwrap unavailable")
def test_interpreter_under_tmp_still_runs_inside_the_private_tmp(tmp_path):
    """bwrap gives the run a private /tmp; an interpreter there (--python /tmp/env/bin/python) is bound back."""
    import sys
    import tempfile


    env_root = Path(tempfile.mkdtemp(prefix="pyenv_", dir="/tmp"))
    (env_root / "bin").mkdir()
    (env_root / "bin" / "python").symlink_to(sys.executable)
    work = tmp_path / "ws"
    work.mkdir()
    rec = run([str(env_root / "bin" / "python"), "-c", "print('inside')"], cwd=work, log_dir=tmp_path / "logs",
                     timeout_s=30, isolation="bwrap", read_only=[])
    assert rec.exit_code == 0, Path(rec.stderr_path).read_text()
    assert Path(rec.stdout_path).read_text().strip() == "inside"
