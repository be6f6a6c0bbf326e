"""The executor protocol (submit, wait, attach), one verdict for every kind of run, and the journal
migration that made feedback typed and gave stage executions their stage."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from orchestrator import executors
from orchestrator.events import EVENT_ADAPTER, RunFinished
from orchestrator.execution import process_verdict
from orchestrator.executors import LocalExecutor
from orchestrator.migrations import migrate
from orchestrator.runner import RunSpec
from orchestrator.settings import Limits

PY = sys.executable


def _spec(tmp_path: Path, code: str, name: str = "r", **kw) -> RunSpec:
    (tmp_path / f"{name}.py").write_text(code)
    return RunSpec(argv=[PY, f"{name}.py"], cwd=tmp_path, log_dir=tmp_path / f"log_{name}", timeout_s=30, **kw)


def test_local_runs_are_submitted_then_waited_for_and_run_at_once(tmp_path):
    ex = LocalExecutor(slots=2)
    code = "import time; t = time.time(); time.sleep(1.5); print(t, time.time())"
    handles = [ex.submit(_spec(tmp_path, code, name=f"s{i}")) for i in range(2)]
    assert all(h.job_id is None for h in handles)  # nothing outlives the orchestrator, so no job to re-attach
    records = [ex.wait(h) for h in handles]
    assert all(r.ok and r.job == {} for r in records)
    (a0, a1), (b0, b1) = ([float(x) for x in Path(r.stdout_path).read_text().split()] for r in records)
    assert a0 < b1 and b0 < a1  # the two ran side by side, not one after the other
    assert ex.attach(handles[0].spec, "123") is None


def test_a_stop_ends_a_submitted_run_as_interrupted(tmp_path):
    stop = threading.Event()
    ex = LocalExecutor()
    h = ex.submit(_spec(tmp_path, "import time; time.sleep(60)"), stop=stop)
    time.sleep(0.5)
    stop.set()
    rec = ex.wait(h)
    assert rec.killed == "interrupted"
    v = process_verdict(rec, timeout_s=30)
    assert v is not None and (v.status, v.reasons) == ("interrupted", ["interrupted"])


def test_a_memory_limit_reads_the_same_for_every_kind_of_run(tmp_path):
    """plot.py, an experiment and LaTeX are judged by one function: a script stopped at its memory
    limit says so, whatever stage ran it."""
    hog = "x = bytearray(400 * 2**20)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\nimport time; time.sleep(5)\n"
    rec = executors.run(LocalExecutor(), _spec(tmp_path, hog, limits=Limits(memory_mb=128)))
    v = process_verdict(rec, timeout_s=30)
    assert v is not None and v.status == "failed" and v.kinds == ["limit-memory"]
    assert v.reasons == ["stopped: it used more than its memory limit of 128 MB of resident memory"]
    ok = executors.run(LocalExecutor(), _spec(tmp_path, "print(1)", name="fine"))
    assert process_verdict(ok, timeout_s=30) is None


def test_old_journals_get_typed_feedback_and_stage_executions_lose_run_0():
    head = {"type": "workspace_created", "seq": 1, "idea": {}, "idea_path": "i.json", "template": "t",
            "template_root": "/t", "limits": {}, "agent": "transcript:x", "version": 1}
    plot = {"type": "run_finished", "seq": 2, "run": 0, "attempt": 1, "phase": "plot", "out_dir": ".",
            "status": "failed", "feedback": '{"traceback": "Traceback...\\nKeyError: 1", "stderr_tail": "", "stdout_tail": ""}'}
    full = {"type": "run_finished", "seq": 3, "run": 1, "attempt": 1, "phase": "full", "out_dir": "run_1",
            "status": "ok", "feedback": ""}
    latex = {"type": "run_started", "seq": 4, "run": 0, "attempt": 2, "phase": "latex", "out_dir": "latex/build"}
    records = migrate([head, plot, full, latex])
    events = [EVENT_ADAPTER.validate_python(r) for r in records]
    p, f, lx = events[1], events[2], events[3]
    assert isinstance(p, RunFinished) and (p.stage, p.run) == ("plots", None)
    assert p.feedback.traceback.endswith("KeyError: 1")
    assert (f.stage, f.run, f.feedback.traceback) == ("experiments", 1, None)
    assert (lx.stage, lx.run) == ("compile", None)
    assert migrate(records) == records  # a migrated journal stays as it is
