"""Runs as Slurm jobs, through submitit.

The control plane (agent calls, validation, the paper) stays where `orchestrate` runs — a login node,
which usually has the network that compute nodes lack. Each smoke, full and plot run becomes one job
whose Python calls `runner.run` on its node, so logs, caps, tree-kill and bubblewrap (where the node
has it) apply there as they do here; logs and results come back through the shared filesystem into
the same run folders as a local run.

A job's end that is the scheduler's doing — its time limit, `scancel`, a node failure, preemption —
becomes a record with `killed="slurm-..."` and a sentence in `limit_detail`, judged like any other
failure. Job ids go into the journal (`RunStarted.job_id`), so that a resumed orchestrator waits for a
job still running (`wait`) instead of submitting it again.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import threading
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import env as env_names
from .. import runner, sandbox
from ..errors import InputError, OrchestratorError
from ..validation_message import first_problem
from . import Handle

SIGNAL_DELAY_S = 90  # submitit's default: USR2 this long before the time limit
START_MARGIN_S = 60  # for the job to start its Python and the runner before the run's own clock starts
UNKNOWN_JOB_S = 60  # a job that neither squeue nor sacct knows for this long is lost (purged, another cluster)
# srun inside the job, when the node's slurmd does not answer its step launch
_UNREACHABLE = (r"(Communication connection failure|Connection refused|Connection reset|Socket timed out|"
                r"Zero Bytes were transmitted|Unable to send message|Network is unreachable|No route to host)")
SRUN_NODE_UNREACHABLE = re.compile(rf"srun: error: (Task launch for \S+ failed on node \S+: {_UNREACHABLE}|"
                                   rf"Application launch failed: {_UNREACHABLE}|Node failure on \S+)")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}
# Environment the node gives a job that the run needs to see (its GPUs, its allocation).
_NODE_VARS = re.compile(r"^(SLURM_\w+|CUDA_VISIBLE_DEVICES|ROCR_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL|HIP_VISIBLE_DEVICES)$")


class SubmitError(OrchestratorError):
    """sbatch refused a job (an unknown partition, a limit of the site): nothing was started; resume retries."""


class SlurmConfig(BaseModel):
    """What each job asks for. From a TOML file (`--slurm-config`) and the idea's `slurm` settings."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    time: int | None = Field(None, ge=1, description="the job's time limit in minutes, or D-HH:MM:SS / HH:MM:SS; "
                                                      "default: the run's own time limit plus margins")
    cpus: int = Field(1, ge=1, description="CPUs per job")
    mem: str | None = Field(None, pattern=r"^\d+[KMGT]?B?$", description="memory per job, e.g. 8G")
    gpus: int = Field(0, ge=0, description="GPUs per job (as --gpus-per-node); 0 asks for none")
    gres: str | None = Field(None, min_length=1, description="a generic resource string instead of gpus, e.g. gpu:a100:1")
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    python: str | None = Field(None, description="the interpreter on the nodes that can import orchestrator (default: this one)")
    setup: list[str] = Field(default_factory=list, description="shell lines run in the job before the run (module load ...)")
    requeue: bool = Field(False, description="let Slurm requeue a job after a node failure or preemption and follow it, "
                                             "instead of a verdict")
    poll_s: float = Field(0.5, gt=0, le=60, description="how often to look for a job's result")
    additional: dict[str, str | int | bool] = Field(default_factory=dict, description="other sbatch options")

    @field_validator("time", mode="before")
    @classmethod
    def _minutes(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", v.strip())
            if not m:
                raise ValueError("give minutes (an integer), HH:MM:SS or D-HH:MM:SS")
            d, h, mi, s = (int(x or 0) for x in m.groups())
            return max(1, math.ceil(d * 1440 + h * 60 + mi + s / 60))
        return v


def load_config(path: Path | None, idea_settings: Mapping[str, Any] | None = None) -> SlurmConfig:
    """The config file's settings, then the idea's on top. Raises InputError (exit 2) on a bad file."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(path, f"not valid TOML: {exc}") from None
        data = data.get("slurm", data)  # a [slurm] table or top-level keys
    data = {**data, **dict(idea_settings or {})}
    try:
        return SlurmConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, first_problem(path, exc)) from None


class SlurmRecord(runner.RunRecord):
    """A run record with the job it ran as."""

    job_id: str | None = None
    job_state: str | None = None
    node: str | None = None
    job_signal: str | None = None  # USR2 (time limit near, or preemption) or TERM (scancel ...) if Slurm ended the run
    job_restarts: int = 0  # how often Slurm had requeued the job before the start that ran this record's run
    submitted_at: float | None = None  # wall clock: submit, job start on the node, result seen here
    started_at: float | None = None
    finished_at: float | None = None

    @model_validator(mode="after")
    def _job(self) -> SlurmRecord:
        """What the journal keeps of the job (RunFinished.job)."""
        self.job = {k: v for k, v in (("job_id", self.job_id), ("state", self.job_state), ("node", self.node),
                                      ("signal", self.job_signal), ("restarts", self.job_restarts)) if v}
        return self


def run_job(spec_data: dict[str, Any]) -> dict[str, Any]:
    """The job's body, on the node: the same runner as a local run. Returns the record as a dict.

    Slurm's warnings end the run here, cleanly (tree killed, logs flushed, a record returned): SIGUSR2 comes
    `signal_delay_s` before the time limit (or on preemption), SIGTERM on scancel, preemption or node
    shutdown. Which one it was is told by `job_signal`; the submitting side asks accounting what happened."""
    started = time.time()
    spec = runner.RunSpec.model_validate(spec_data)
    child_env = dict(spec.env or {})
    child_env.update({k: v for k, v in os.environ.items() if _NODE_VARS.match(k)})
    # pipeline.reopen ends leftovers of a killed local run by this marker; a job is not a leftover: a resume
    # re-attaches to it (on a one-node cluster, the node is the machine the orchestrator runs on)
    if env_names.WORKSPACE in child_env:
        child_env[env_names.JOB_WORKSPACE] = child_env.pop(env_names.WORKSPACE)
    update: dict[str, Any] = {"env": child_env}
    if spec.isolation == "bwrap" and not sandbox.bwrap_available():
        update["isolation"] = "none"  # the node has no working bubblewrap: Slurm's own confinement is what there is
    spec = spec.model_copy(update=update)
    if spec.out_dir and env_names.slurm_restart_count() > 0:
        import shutil

        shutil.rmtree(spec.cwd / spec.out_dir, ignore_errors=True)  # a requeued job starts its run afresh
    stop = threading.Event()
    got: list[str] = []

    def on_signal(signum, _frame) -> None:
        got.append(signal.Signals(signum).name.removeprefix("SIG"))
        stop.set()

    for sig in (signal.SIGUSR2, signal.SIGTERM):  # instead of submitit's checkpoint-and-requeue handlers
        signal.signal(sig, on_signal)
    rec = runner.run(spec, stop=stop)
    return {**rec.model_dump(), "containment": ["slurm-job", *rec.containment], "node": socket.gethostname(),
            "started_at": started, "job_signal": got[0] if got else None, "job_elapsed_s": round(time.time() - started, 3),
            "job_restarts": env_names.slurm_restart_count()}


def signal_delay_s(time_min: int) -> int:
    """How long before the time limit Slurm warns the job (SIGUSR2): submitit's 90 s, less for short limits,
    so that a one-minute job is not warned the moment it starts."""
    return int(min(SIGNAL_DELAY_S, max(5, time_min * 60 // 4)))


def job_name(cwd: Path | str, key: str) -> str:
    """`orch:<workspace folder>:run_2:attempt_1:full`: findable with `sacct --name` / `squeue -n`."""
    return ":".join(["orch", Path(cwd).name, *key.split("/")]) if str(cwd) else "orch:" + key.replace("/", ":")


def _submitit():
    try:
        import submitit
    except ModuleNotFoundError:
        raise InputError(None, "--executor slurm needs submitit: pip install 'orchestrator[slurm]' "
                               "(or pip install submitit)") from None
    return submitit


def _result_file(log_dir: Path | str, job_id: str) -> Path:
    """Where submitit leaves the job's return value (the run's record), in the run's log folder."""
    return _submitit().SlurmJob(folder=Path(log_dir) / "slurm", job_id=job_id).paths.result_pickle


def slurm_available() -> bool:
    """True when a Slurm controller answers here."""
    return runner.tool(["sinfo", "-h", "-o", "%P"], timeout_s=20).exit_code == 0


def check_cluster(config: SlurmConfig) -> None:
    """Before any workspace is made: a controller answers, and the partition asked for exists."""
    res = runner.tool(["sinfo", "-h", "-o", "%P"], timeout_s=20)
    if res.exit_code != 0:
        raise InputError(None, "--executor slurm: no Slurm controller answers `sinfo` here "
                               "(scripts/slurm-cluster start makes a local one)")
    names = [p.rstrip("*") for p in res.stdout.split()]
    if config.partition and config.partition not in names:
        raise InputError(None, f"--executor slurm: no partition {config.partition!r} (have: {', '.join(names)})")


class SlurmExecutor:
    """Each run is a Slurm job: `submit` sends it, `wait` follows it, `attach` re-attaches by job id."""

    name = "slurm"

    def __init__(self, config: SlurmConfig | None = None) -> None:
        self.config = config or SlurmConfig()

    def spec(self) -> dict[str, Any]:
        """What the journal keeps to rebuild this executor on resume."""
        return {"name": self.name, "config": self.config.model_dump(exclude_defaults=True)}

    # -- submission ----------------------------------------------------------------------------------
    def time_limit_min(self, timeout_s: float) -> int:
        """The configured limit, else one that lets the run's own timeout fire first (submitit signals
        SIGNAL_DELAY_S before the end)."""
        if self.config.time:
            return self.config.time
        return max(1, math.ceil((timeout_s + SIGNAL_DELAY_S + START_MARGIN_S) / 60))

    def parameters(self, timeout_s: float, key: str, cwd: Path | str = "") -> dict[str, Any]:
        c = self.config
        p: dict[str, Any] = {
            "job_name": job_name(cwd, key),
            "time": self.time_limit_min(timeout_s),
            "cpus_per_task": c.cpus,
            "ntasks_per_node": 1,
            "signal_delay_s": signal_delay_s(self.time_limit_min(timeout_s)),
        }
        for name in ("partition", "mem", "account", "qos", "constraint"):
            value = getattr(c, name)
            if value:
                p[name] = value
        if c.gres:  # never an empty gres string: some sites reject it, others read it as "no GPU"
            p["gres"] = c.gres
        elif c.gpus:
            p["gpus_per_node"] = c.gpus
        if c.setup:
            p["setup"] = list(c.setup)
        extra: dict[str, Any] = {} if c.requeue else {"no_requeue": True}
        extra.update(c.additional)
        p["additional_parameters"] = extra
        return p

    def submit(self, spec: runner.RunSpec, *, stop: threading.Event | None = None) -> Handle:
        """Submit one run as a job; the handle carries its job id."""
        submitit = _submitit()
        folder = Path(spec.log_dir) / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=0, python=self.config.python)
        ex.update_parameters(**self.parameters(spec.timeout_s, spec.key, spec.cwd))
        submitted = time.time()
        sent = spec.model_copy(update={"env": runner.scrub_env(spec.env or {})})
        try:
            job = ex.submit(run_job, sent.model_dump(mode="json"))
        except (submitit.core.utils.FailedSubmissionError, submitit.core.utils.FailedJobError, OSError) as exc:
            msg = " ".join(str(exc).split())[-400:]
            raise SubmitError(f"Slurm refused the job for {spec.key} ({self._summary()}): {msg}") from None
        (folder / f"{job.job_id}.submitted_at").write_text(f"{submitted:.6f}\n")
        return self.attach(spec, str(job.job_id), stop=stop)

    def attach(self, spec: runner.RunSpec, job_id: str, *, stop: threading.Event | None = None) -> Handle:
        """A job submitted before the orchestrator stopped: followed, never submitted twice. The handle is
        done once the job's result is there (`wait` then returns at once, or follows a requeued job on)."""
        result = _result_file(spec.log_dir, job_id)
        return Handle(spec=spec, job_id=job_id, stop=stop or threading.Event(), ended=result.exists)

    def _summary(self) -> str:
        c = self.config.model_dump(exclude_defaults=True, include={"partition", "time", "cpus", "mem", "gpus", "gres",
                                                                   "account", "qos", "constraint"})
        return ", ".join(f"{k}={v}" for k, v in c.items()) or "default settings"

    def cancel(self, job_id: str) -> None:
        runner.tool(["scancel", job_id], timeout_s=30)

    # -- waiting ------------------------------------------------------------------------------------
    def job_state(self, job_id: str) -> tuple[str | None, str | None, str | None]:
        """(state, exit code "N:S", node list) of the job's allocation from accounting, else squeue."""
        res = runner.tool(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State,ExitCode,NodeList"], timeout_s=30)
        if res.exit_code == 0:
            rows = [r.split("|") for r in res.stdout.strip().splitlines() if r.strip()]
            if rows and len(rows[-1]) >= 3:
                state, code, nodes = rows[-1][:3]
                return state.split()[0] if state else None, code or None, nodes or None
        res = runner.tool(["squeue", "-h", "-j", job_id, "-o", "%T|%N"], timeout_s=30)
        if res.exit_code == 0 and res.stdout.strip():
            state, _, nodes = res.stdout.strip().splitlines()[0].partition("|")
            return state.strip(), None, nodes.strip() or None
        return None, None, None

    def wait(self, handle: Handle) -> SlurmRecord:
        """Follow a submitted job to its end; the record of what happened (never raises for the job's failures).

        Used right after `submit`, and by a resumed orchestrator for a job it had submitted before it stopped."""
        assert handle.job_id is not None
        job_id, stop, spec = handle.job_id, handle.stop, handle.spec
        argv, cwd, log_dir, timeout_s = spec.argv, spec.cwd, spec.log_dir, spec.timeout_s
        folder = Path(log_dir) / "slurm"
        result_file = _result_file(log_dir, job_id)
        t0 = time.monotonic()
        stale: int | None = None  # the mtime of a result from an earlier start of a requeued job: not this one's
        while True:
            state = nodes = None
            next_check = 0.0
            final_seen: float | None = None
            while not self._fresh(result_file, stale):
                if stop is not None and stop.is_set():
                    self.cancel(job_id)
                    return self._record(job_id, argv, cwd, log_dir, "interrupted", "the orchestrator was interrupted",
                                        state="CANCELLED", nodes=nodes, t0=t0)
                now = time.monotonic()
                if now >= next_check:
                    state, _code, nodes = self.job_state(job_id)
                    next_check = now + max(2.0, self.config.poll_s)
                    if state in FINAL_STATES or state is None:  # None: Slurm knows no such job (any more)
                        final_seen = final_seen or now
                        if now - final_seen > (5 if state else UNKNOWN_JOB_S):  # its result has had time to reach us
                            break
                    else:
                        final_seen = None
                time.sleep(self.config.poll_s)
            value: Any = None
            trace = ""
            if self._fresh(result_file, stale):
                mtime = result_file.stat().st_mtime_ns
                outcome, value = self._load_result(result_file)
                if outcome != "success" or not isinstance(value, dict):
                    trace, value = str(value), None
                if self.config.requeue and self._requeued_since(job_id, value):
                    stale = mtime  # Slurm requeued the job after this start ended: follow its next start
                    continue
            if value is not None and value.get("job_signal") is None and value.get("exit_code") == 0:
                return self._completed(job_id, folder, value)  # the run ended on its own: the usual case
            state, code, nodes = self._settled_state(job_id, state)
            if state not in FINAL_STATES and self.config.requeue and state in ("PENDING", "REQUEUED", "RUNNING"):
                stale = result_file.stat().st_mtime_ns if result_file.exists() else None  # Slurm runs it again
                continue
            if value is not None and state in ("COMPLETED", "FAILED", None) and value.get("job_signal") is None:
                return self._completed(job_id, folder, value)  # the run failed by itself: judged like a local run
            return self._failure(job_id, argv, cwd, log_dir, state, code, nodes, trace, timeout_s, t0, value)

    @staticmethod
    def _fresh(result_file: Path, stale: int | None) -> bool:
        """A result is there, and not the one of an earlier start (a requeued job writes it again)."""
        try:
            return result_file.stat().st_mtime_ns != stale
        except FileNotFoundError:
            return False

    def _requeued_since(self, job_id: str, value: dict[str, Any] | None) -> bool:
        """Whether the controller has restarted the job more often than the start that returned `value` had been
        (its SLURM_RESTART_COUNT): that start's result is not the job's last. Read from the controller, not
        accounting (which lags): `scontrol show job`, known until the job is purged (MinJobAge)."""
        res = runner.tool(["scontrol", "-o", "show", "job", job_id], timeout_s=30)
        m = re.search(r"\bRestarts=(\d+)", res.stdout) if res.exit_code == 0 else None
        if m is None:
            return False
        return int(m.group(1)) > int((value or {}).get("job_restarts") or 0)

    def _completed(self, job_id: str, folder: Path, value: dict[str, Any]) -> SlurmRecord:
        fields = {k: v for k, v in value.items() if k in SlurmRecord.model_fields}
        fields.update(job_id=job_id, job_state="COMPLETED", submitted_at=self._submitted_at(folder, job_id),
                      finished_at=time.time())
        return SlurmRecord(**fields)

    # -- helpers ------------------------------------------------------------------------------------
    def _settled_state(self, job_id: str, state: str | None = None):
        """Accounting can lag the job's end by a moment: ask again until the state is final (a few seconds)."""
        code = nodes = None
        for i in range(20):
            if i or state is None or state in FINAL_STATES:
                state, code, nodes = self.job_state(job_id)
            if state in FINAL_STATES:
                break
            time.sleep(0.5)
        return state, code, nodes

    @staticmethod
    def _load_result(path: Path) -> tuple[str, Any]:
        from submitit.core.utils import pickle_load

        for _ in range(10):
            try:
                return pickle_load(path)
            except (EOFError, OSError):
                time.sleep(0.5)
        return "error", f"unreadable job result {path}"

    @staticmethod
    def _submitted_at(folder: Path, job_id: str) -> float | None:
        try:
            return float((folder / f"{job_id}.submitted_at").read_text())
        except (OSError, ValueError):
            return None

    def _failure(self, job_id, argv, cwd, log_dir, state, code, nodes, trace, timeout_s, t0,
                 value: dict[str, Any] | None = None) -> SlurmRecord:
        """Why the scheduler ended the run, in words; `value` is the run's own record if the job returned one."""
        where = f" on {nodes}" if nodes and nodes != "None assigned" else ""
        job = f"Slurm job {job_id}{where}"
        signal_name = (value or {}).get("job_signal")
        limit = self.time_limit_min(timeout_s)
        if state == "COMPLETED" and signal_name == "USR2":
            # our own handler ended the run on Slurm's warning: near the time limit, or preempted earlier.
            # Slurm's event resolution may send the warning up to 60 s before it is due (sbatch --signal), so
            # only a warning more than that early is taken for a preemption (a 1-minute job's is never)
            elapsed = float((value or {}).get("job_elapsed_s") or 0)
            state = "TIMEOUT" if elapsed >= limit * 60 - signal_delay_s(limit) - 60 else "PREEMPTED"
        elif state == "COMPLETED" and signal_name == "TERM":
            state = "CANCELLED"
        kw = {"state": state, "nodes": nodes, "t0": t0, "code": code, "value": value}
        if state == "TIMEOUT" or "timed-out" in trace:
            return self._record(job_id, argv, cwd, log_dir, "slurm-timeout",
                                f"the {job} ran into its Slurm time limit of {limit} min: "
                                "Slurm warned it and the run was stopped", **kw)
        if state == "CANCELLED":
            return self._record(job_id, argv, cwd, log_dir, "slurm-cancelled",
                                f"the {job} was cancelled (scancel or an administrator) before the run finished", **kw)
        tail = (trace or self._job_log_tail(log_dir, job_id)).strip()
        if state != "NODE_FAIL" and value is None and state in ("FAILED", "CANCELLED", None) and \
                self._node_daemon_down(nodes, tail):
            # the node's daemon stopped before or while the run's step was launched: srun could not reach it,
            # and the job ended FAILED (e.g. exit 105) before the controller declared the node down
            state = "NODE_FAIL"
            kw["state"] = state
        if state == "NODE_FAIL":
            return self._record(job_id, argv, cwd, log_dir, "slurm-node-failure",
                                f"the node of the {job} failed (its Slurm daemon stopped answering); the run did not finish",
                                **kw)
        if state == "PREEMPTED":
            return self._record(job_id, argv, cwd, log_dir, "slurm-preempted",
                                f"the {job} was preempted by a higher-priority job before the run finished", **kw)
        if state == "OUT_OF_MEMORY":
            return self._record(job_id, argv, cwd, log_dir, "slurm-memory",
                                f"the {job} exceeded its Slurm memory allocation ({self.config.mem or 'the default'})", **kw)
        detail = (f"the {job} ended ({state}, exit {code or '?'}) without a result from the run" if state else
                  f"Slurm does not know the {job} (purged from its records, or another cluster) and it left no result")
        return self._record(job_id, argv, cwd, log_dir, "slurm-failed", detail, stderr_extra=tail, **kw)

    @staticmethod
    def _node_daemon_down(nodes: str | None, log_tail: str) -> bool:
        """Whether the job's node stopped answering: srun's own words in the job's log (it could not launch
        the step there), else the controller's node state (NOT_RESPONDING, DOWN, FAIL)."""
        if SRUN_NODE_UNREACHABLE.search(log_tail):
            return True
        if not nodes or nodes == "None assigned":
            return False
        res = runner.tool(["sinfo", "-h", "-N", "-n", nodes, "-o", "%T"], timeout_s=30)
        states = res.stdout.split() if res.exit_code == 0 else []
        return any(st.endswith("*") or st.rstrip("*~#$@^-!%") in ("down", "fail", "failing")
                   or "not_responding" in st.lower() for st in states)

    @staticmethod
    def _job_log_tail(log_dir: Path, job_id: str) -> str:
        for name in (f"{job_id}_0_log.err", f"{job_id}_0_log.out"):
            p = Path(log_dir) / "slurm" / name
            if p.is_file():
                return "\n".join(p.read_text(errors="replace").splitlines()[-40:])
        return ""

    def _record(self, job_id, argv, cwd, log_dir, killed, detail, *, state, nodes, t0, code=None, value=None,
                stderr_extra="") -> SlurmRecord:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        out, err = log_dir / "stdout.txt", log_dir / "stderr.txt"
        out.touch()
        with open(err, "a", encoding="utf-8") as fh:  # whatever the run wrote before the end stays above this
            if stderr_extra:
                fh.write(stderr_extra + "\n")
            fh.write(f"[orchestrator] {detail}\n")
        exit_code = None
        if code and ":" in code:
            rc, sig = code.split(":", 1)
            exit_code = int(rc) if rc.isdigit() and int(rc) else (-int(sig) if sig.isdigit() and int(sig) else None)
        fields: dict[str, Any] = {k: v for k, v in (value or {}).items() if k in SlurmRecord.model_fields}
        fields.update(
            argv=fields.get("argv") or list(argv), cwd=str(cwd), exit_code=fields.get("exit_code", exit_code),
            wall_s=fields.get("wall_s", round(time.monotonic() - t0, 3)), peak_rss_mb=fields.get("peak_rss_mb", 0.0),
            timed_out=False, killed=killed, limit_detail=detail, stdout_path=str(out), stderr_path=str(err),
            isolation=fields.get("isolation", "slurm"), containment=fields.get("containment") or ["slurm-job"],
            job_id=job_id, job_state=state, node=fields.get("node") or nodes,
            submitted_at=self._submitted_at(log_dir / "slurm", job_id), finished_at=time.time(),
        )
        return SlurmRecord(**fields)
