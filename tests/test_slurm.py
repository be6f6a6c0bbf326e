"""The Slurm executor. Settings are checked everywhere submitit is installed; the rest runs real jobs on a
real cluster (CI: `scripts/slurm-cluster start`, a single-node cluster on loopback) and is skipped
with the reason when no Slurm controller answers `sinfo`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, events

from orchestrator.errors import InputError
from orchestrator.executors.slurm import SlurmConfig, SlurmExecutor, load_config, signal_delay_s
from orchestrator.runner import RunSpec

submitit = pytest.importorskip("submitit", reason="submitit is not installed (pip install 'orchestrator[slurm]')")

SLEEP_TEMPLATE = FIXTURES / "fleet_sleep"
CLUSTER_SCRIPT = ROOT / "scripts" / "slurm-cluster"


def _sbatch_text(ex: SlurmExecutor, tmp_path: Path, timeout_s: float = 60) -> str:
    from submitit.slurm.slurm import _make_sbatch_string

    return _make_sbatch_string(command="python -m x", folder=tmp_path, **ex.parameters(timeout_s, "run_1/attempt_1/full",
                                                                                         tmp_path / "ws"))


# -- settings: no cluster needed -------------------------------------------------------------------------
def test_no_gpu_asked_means_no_gres_line_at_all(tmp_path):
    text = _sbatch_text(SlurmExecutor(SlurmConfig()), tmp_path)
    assert "--gres" not in text and "--gpus" not in text
    assert "#SBATCH --no-requeue" in text
    assert "#SBATCH --job-name=orch:ws:run_1:attempt_1:full" in text


def test_gpus_and_resources_when_asked(tmp_path):
    cfg = SlurmConfig(partition="gpu", time="01:30:00", cpus=8, mem="32G", gpus=2, account="lab", requeue=True)
    text = _sbatch_text(SlurmExecutor(cfg), tmp_path)
    for line in ("--partition=gpu", "--time=90", "--cpus-per-task=8", "--mem=32G", "--gpus-per-node=2", "--account=lab"):
        assert f"#SBATCH {line}" in text
    assert "--no-requeue" not in text and "--gres" not in text
    gres = _sbatch_text(SlurmExecutor(SlurmConfig(gres="gpu:a100:1")), tmp_path)
    assert "#SBATCH --gres=gpu:a100:1" in gres and "--gpus-per-node" not in gres


def test_bad_settings_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="gres"):
        load_config(None, {"gres": ""})  # never an empty gres string
    with pytest.raises(InputError, match="time"):
        load_config(None, {"time": "soon"})
    bad = tmp_path / "slurm.toml"
    bad.write_text("partition = [")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(bad)


def test_config_file_then_the_ideas_settings(tmp_path):
    f = tmp_path / "slurm.toml"
    f.write_text('[slurm]\npartition = "cpu"\ntime = "2-00:00:00"\nmem = "4G"\n')
    cfg = load_config(f, {"mem": "16G", "gpus": 1})
    assert (cfg.partition, cfg.time, cfg.mem, cfg.gpus) == ("cpu", 2880, "16G", 1)


def test_time_limit_lets_the_runs_own_timeout_fire_first():
    ex = SlurmExecutor()
    limit = ex.time_limit_min(30)
    assert limit * 60 - signal_delay_s(limit) > 30 + 30
    assert signal_delay_s(1) == 15  # a one-minute job is not warned the moment it starts
    assert signal_delay_s(600) == 90


# -- a real cluster --------------------------------------------------------------------------------------
def _cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        cp = subprocess.run(["sinfo", "-h", "-o", "%t"], check=False, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return cp.returncode == 0 and any(s.strip("*~#") in ("idle", "mix", "alloc") for s in cp.stdout.split())


cluster = pytest.mark.skipif(not _cluster_up(), reason="no Slurm cluster answers sinfo (CI: scripts/slurm-cluster start)")

LR_EDIT = ("Raise the learning rate.\n\nexperiment.py\n```python\n<<<<<<< SEARCH\nLR = 0.05\n=======\nLR = 0.1\n"
           ">>>>>>> REPLACE\n```\n")
DONE = 'Done.\n\n```json\n{"orchestrate": "done", "reason": "finished"}\n```\n'


def _idea(tmp_path: Path, name: str, *, sleep_s: float, max_runs: int = 1, slurm: dict | None = None) -> Path:
    lines = [{"transcript": 1, "template": "fleet_sleep", "note": "scripted: slurm test"},
             {"stage": "experiments", "run": 1, "attempt": 1, "response": LR_EDIT}]
    if max_runs > 1:
        lines.append({"stage": "experiments", "run": 2, "attempt": 1, "response": DONE})
    tr = tmp_path / f"{name}.transcript.jsonl"
    tr.write_text("".join(json.dumps(x) + "\n" for x in lines))
    idea = {"name": name, "title": "Slurm test", "template": str(SLEEP_TEMPLATE), "experiment": "Run on the cluster.",
            "max_runs": max_runs, "transcript": tr.name, "template_config": {"sleep_s": sleep_s},
            "limits": {"max_attempts": 1, "full_timeout_s": 900}, "slurm": slurm or {}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(idea))
    return path


def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *map(str, args), "--stages", "experiments"]


def _run(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), check=False, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def _start(tmp_path: Path, idea: Path, sandbox: Path) -> subprocess.Popen:
    log = tmp_path / "orchestrate.out"
    with open(log, "w") as fh:
        return subprocess.Popen(_cmd("run", idea, "--executor", "slurm", "--sandbox", sandbox), stdout=fh,
                                stderr=subprocess.STDOUT, cwd=ROOT)


def _workspace(sandbox: Path) -> Path:
    found = [p for p in sandbox.iterdir() if p.is_dir() and not p.name.startswith(".")] if sandbox.exists() else []
    assert len(found) <= 1
    return found[0] if found else None


def _full_run_job(sandbox: Path, timeout: float = 120, running: bool = True) -> tuple[Path, str]:
    """Wait until the full run's job is submitted (and, with `running`, running); its workspace and job id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws = _workspace(sandbox)
        if ws is not None:
            started = [e for e in events(ws, "run_started") if e["phase"] == "full" and e["job_id"]]
            if started and (not running or _squeue_state(started[-1]["job_id"]) == "RUNNING"):
                return ws, started[-1]["job_id"]
        time.sleep(0.3 if running else 0.01)
    pytest.fail("the full run's job never started")


def _squeue_state(job_id: str) -> str:
    cp = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False, capture_output=True, text=True, timeout=30)
    return cp.stdout.strip()


def _sacct(*args: str) -> list[list[str]]:
    """Accounting rows; slurmctld hands a job's end to slurmdbd a moment after it happens, so ask until they come."""
    rows: list[list[str]] = []
    for _ in range(40):
        cp = subprocess.run(["sacct", "-n", "-P", "-X", *args], check=False, capture_output=True, text=True, timeout=30)
        rows = [r.split("|") for r in cp.stdout.strip().splitlines() if r.strip()]
        if rows and not any(c in ("RUNNING", "PENDING", "COMPLETING") for r in rows for c in r):
            break
        time.sleep(0.5)
    return rows


def _full_verdict(ws: Path) -> dict:
    fin = [e for e in events(ws, "run_finished") if e["phase"] == "full"]
    assert len(fin) == 1, fin
    return fin[0]


@cluster
def test_an_unknown_partition_stops_before_anything_is_made(tmp_path):
    idea = _idea(tmp_path, "slurm_bad", sleep_s=0, slurm={"partition": "no-such-partition"})
    cp = _run("run", idea, "--executor", "slurm", "--sandbox", tmp_path / "sb")
    assert cp.returncode == 2 and "no partition 'no-such-partition'" in cp.stderr, cp.stderr
    assert _workspace(tmp_path / "sb") is None


@cluster
def test_a_job_slurm_refuses_is_an_error_that_starts_nothing(tmp_path):
    from orchestrator.executors.slurm import SubmitError

    ex = SlurmExecutor(SlurmConfig(mem="100000G"))  # more than any node here
    with pytest.raises(SubmitError, match="Slurm refused the job for run_1/attempt_1/full .*mem=100000G"):
        ex.submit(RunSpec(argv=[sys.executable, "-c", "pass"], cwd=tmp_path, log_dir=tmp_path / "logs", timeout_s=60,
                          env={}, key="run_1/attempt_1/full"))


@cluster
def test_an_ideas_runs_go_through_real_jobs(tmp_path):
    idea = _idea(tmp_path, "slurm_ok", sleep_s=0.5, max_runs=2)
    cp = _run("run", idea, "--executor", "slurm", "--sandbox", tmp_path / "sb")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    ws = _workspace(tmp_path / "sb")
    assert events(ws, "workspace_created")[0]["executor"]["name"] == "slurm"
    assert [(e["run"], e["status"]) for e in events(ws, "run_recorded")] == [(1, "ok")]
    started = events(ws, "run_started")
    ids = [e["job_id"] for e in started]
    assert [e["phase"] for e in started] == ["smoke", "full"] and all(ids) and len(set(ids)) == 2
    for e in started:  # each run is exactly one real job, named after its workspace and run
        rows = _sacct("--name", f"orch:{ws.name}:run_1:attempt_1:{e['phase']}", "-o", "JobID,State")
        assert rows == [[e["job_id"], "COMPLETED"]], rows
    info = json.loads((ws / "run_1" / "final_info.json").read_text())  # written on the node, read here
    assert info["env"]["slurm_job_id"] == started[1]["job_id"]
    assert (ws / ".orchestrate/runs/run_1/attempt_1/full/stdout.txt").is_file()


@cluster
def test_a_run_past_its_slurm_time_limit_gets_a_clear_verdict(tmp_path):
    idea = _idea(tmp_path, "slurm_timeout", sleep_s=600, slurm={"time": 1})
    cp = _run("run", idea, "--executor", "slurm", "--sandbox", tmp_path / "sb", timeout=240)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    ws = _workspace(tmp_path / "sb")
    fin = _full_verdict(ws)
    assert fin["status"] == "failed"
    assert "Slurm time limit of 1 min" in fin["reasons"][0], fin["reasons"]
    assert fin["wall_s"] < 70
    assert [(e["run"], e["status"]) for e in events(ws, "run_recorded")] == [(1, "failed")]
    fb = fin["feedback"]
    assert "Slurm time limit" in fb["stderr_tail"]  # what the agent is told


@cluster
def test_a_cancelled_job_gets_a_clear_verdict(tmp_path):
    idea = _idea(tmp_path, "slurm_cancel", sleep_s=600)
    proc = _start(tmp_path, idea, tmp_path / "sb")
    try:
        ws, job_id = _full_run_job(tmp_path / "sb")
        subprocess.run(["scancel", job_id], check=True, timeout=30)
        assert proc.wait(timeout=120) == 0, (tmp_path / "orchestrate.out").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    fin = _full_verdict(ws)
    assert fin["status"] == "failed"
    assert f"Slurm job {job_id}" in fin["reasons"][0] and "was cancelled" in fin["reasons"][0], fin["reasons"]
    assert (fin["job"]["job_id"], fin["job"]["state"]) == (job_id, "CANCELLED")


def _node_cpus() -> int:
    cp = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], check=False, capture_output=True, text=True, timeout=30)
    return int(cp.stdout.split()[0])


@cluster
def test_a_preempted_job_gets_a_clear_verdict(tmp_path):
    cp = subprocess.run(["sinfo", "-h", "-p", "urgent", "-o", "%P"], check=False, capture_output=True, text=True, timeout=30)
    if "urgent" not in cp.stdout:
        pytest.skip("needs a partition 'urgent' that preempts the default one (scripts/slurm-cluster makes it)")
    cpus = _node_cpus()
    idea = _idea(tmp_path, "slurm_preempt", sleep_s=600, slurm={"cpus": cpus})  # the whole node
    proc = _start(tmp_path, idea, tmp_path / "sb")
    urgent = None
    try:
        ws, job_id = _full_run_job(tmp_path / "sb")
        urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", str(cpus), "-o", "/dev/null",
                                 "--wrap", "sleep 2"], check=True, capture_output=True, text=True, timeout=30).stdout.strip()
        assert proc.wait(timeout=120) == 0, (tmp_path / "orchestrate.out").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        if urgent:
            subprocess.run(["scancel", urgent], check=False, timeout=30)
    fin = _full_verdict(ws)
    assert fin["status"] == "failed"
    assert f"Slurm job {job_id}" in fin["reasons"][0] and "was preempted" in fin["reasons"][0], fin["reasons"]
    assert fin["job"]["state"] == "PREEMPTED"


@cluster
def test_a_killed_orchestrator_is_resumed_and_reattaches_to_its_job(tmp_path):
    idea = _idea(tmp_path, "slurm_reattach", sleep_s=12, max_runs=2)
    proc = _start(tmp_path, idea, tmp_path / "sb")
    try:
        ws, job_id = _full_run_job(tmp_path / "sb")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _squeue_state(job_id) == "RUNNING"  # the job outlives the orchestrator
    assert not [e for e in events(ws, "run_finished") if e["phase"] == "full"]
    cp = _run("resume", ws)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    fulls = [e for e in events(ws, "run_started") if e["phase"] == "full"]
    assert [e["job_id"] for e in fulls] == [job_id]  # waited for, not submitted again
    jobs = _sacct("--name", f"orch:{ws.name}:run_1:attempt_1:full", "-o", "JobID,State")
    assert jobs == [[job_id, "COMPLETED"]]
    assert len(list((ws / ".orchestrate/runs/run_1/attempt_1/full/slurm").glob("*_submitted.pkl"))) == 1
    assert _full_verdict(ws)["status"] == "ok"
    info = json.loads((ws / "run_1" / "final_info.json").read_text())
    assert info["env"]["slurm_job_id"] == job_id


def _job_started(ws: Path, job_id: str, when: str, timeout: float = 120) -> None:
    """Wait until the job's batch script has begun (its log exists: srun is about to launch the run's step)
    or until the run itself runs on the node (its stdout exists: the step is up)."""
    full = ws / ".orchestrate" / "runs" / "run_1" / "attempt_1" / "full"
    target = full / "slurm" / f"{job_id}_0_log.err" if when == "launching" else full / "stdout.txt"
    deadline = time.monotonic() + timeout
    while not target.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{target} never appeared")
        time.sleep(0.005)


@cluster
@pytest.mark.parametrize("when", ["launching", "running"])
def test_a_job_whose_node_daemon_stops_gets_a_clear_verdict(tmp_path, when):
    """The daemon stops while srun launches the run's step (the job ends FAILED, exit 105, before the
    controller declares the node down: the race of issue 14), or while the run runs (NODE_FAIL)."""
    pidfile = Path(os.environ.get("SLURM_CLUSTER_DIR", "/var/lib/orchestrate-slurm")) / "slurmd.pid"
    if not pidfile.is_file() or os.geteuid() != 0:
        pytest.skip("needs the cluster of scripts/slurm-cluster, as root, to stop and restart its slurmd")
    idea = _idea(tmp_path, "slurm_node", sleep_s=600)
    proc = _start(tmp_path, idea, tmp_path / "sb")
    try:
        ws, job_id = _full_run_job(tmp_path / "sb", running=False)
        _job_started(ws, job_id, when)
        os.kill(int(pidfile.read_text()), signal.SIGTERM)  # the node's daemon stops: Slurm declares the node failed
        assert proc.wait(timeout=180) == 0, (tmp_path / "orchestrate.out").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([str(CLUSTER_SCRIPT), "start"], check=False, capture_output=True, timeout=120)
    fin = _full_verdict(ws)
    assert fin["status"] == "failed"
    assert "failed (its Slurm daemon stopped answering)" in fin["reasons"][0], fin["reasons"]
    # Slurm's own record depends on when the daemon stopped: after the run's step started, the controller
    # declares the node down (NODE_FAIL); while srun was launching it, srun fails first (FAILED, exit 105)
    (state,) = _sacct("-j", job_id, "-o", "State")
    assert state == ["NODE_FAIL"] or (state == ["FAILED"] and "Task launch for" in _job_err(ws, job_id)), state
    assert _cluster_up()


def _job_err(ws: Path, job_id: str) -> str:
    found = list((ws / ".orchestrate").rglob(f"slurm/{job_id}_0_log.err"))
    return found[0].read_text(errors="replace") if found else ""


def test_a_job_whose_step_launch_could_not_reach_its_node_is_a_node_failure(tmp_path):
    """The race of issue 14: slurmd stopped while srun launched the run's step; the job ended FAILED (105:0)
    before the controller declared the node down. srun's words in the job's log name the node failure."""
    log_dir = tmp_path / "logs"
    (log_dir / "slurm").mkdir(parents=True)
    (log_dir / "slurm" / "30_0_log.err").write_text(
        "srun: error: Task launch for StepId=30.0 failed on node vm: Communication connection failure\n"
        "srun: error: Application launch failed: Communication connection failure\nsrun: Job step aborted\n")
    rec = SlurmExecutor()._failure("30", ["python"], tmp_path, log_dir, "FAILED", "105:0", "vm", "", 60, 0.0)
    assert rec.killed == "slurm-node-failure" and rec.job_state == "NODE_FAIL"
    assert "the node of the Slurm job 30 on vm failed (its Slurm daemon stopped answering)" in rec.limit_detail
    # a job that failed by itself, its node well, keeps its own verdict
    (log_dir / "slurm" / "31_0_log.err").write_text("Traceback (most recent call last):\nImportError: no module\n")
    rec = SlurmExecutor()._failure("31", ["python"], tmp_path, log_dir, "FAILED", "1:0", None, "", 60, 0.0)
    assert rec.killed == "slurm-failed" and "ended (FAILED, exit 1:0) without a result" in rec.limit_detail
