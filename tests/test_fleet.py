"""Many ideas at once on one machine: parallel workspaces, GPU slots never shared, Ctrl-C then resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, events

from orchestrator.executors.gpus import GpuSlotExecutor, gpu_slots
from orchestrator.fleet import expand_ideas

SLEEP_TEMPLATE = FIXTURES / "fleet_sleep"
# Per idea: what each run's final verdict must be, and the verdict of every smoke/full run in order.
EXPECTED = {
    "fleet_ok": {"recorded": [(1, "ok", 1), (2, "ok", 2)],
                 "finished": [(1, 1, "smoke", "ok"), (1, 1, "full", "ok"), (2, 1, "smoke", "failed"),
                              (2, 2, "smoke", "ok"), (2, 2, "full", "ok")]},
    "fleet_degenerate": {"recorded": [(1, "ok", 2)],
                         "finished": [(1, 1, "smoke", "ok"), (1, 1, "full", "degenerate"), (1, 2, "smoke", "ok"),
                                      (1, 2, "full", "ok")]},
}


def _ideas(tmp_path: Path, sleep_s: float, names=("fleet_a", "fleet_b", "fleet_c", "fleet_d")) -> Path:
    """An ideas list on the fixed-time template: a and c take the ok transcript, b and d the degenerate one."""
    for t in ("fleet_ok", "fleet_degenerate"):
        shutil.copy(FIXTURES / f"{t}.transcript.jsonl", tmp_path / f"{t}.transcript.jsonl")
    ideas = []
    for i, name in enumerate(names):
        kind = "fleet_ok" if i % 2 == 0 else "fleet_degenerate"
        ideas.append({"name": name, "title": f"Fleet idea {name}", "template": str(SLEEP_TEMPLATE),
                      "experiment": "Tune the learning rate and steps.", "max_runs": 3,
                      "transcript": f"{kind}.transcript.jsonl", "template_config": {"sleep_s": sleep_s},
                      "limits": {"isolation": "none"}})
    path = tmp_path / "ideas.json"
    path.write_text(json.dumps(ideas, indent=2))
    return path


def _kind(ws: Path) -> str:
    name = events(ws, "workspace_created")[0]["idea"]["name"]
    return "fleet_ok" if name in ("fleet_a", "fleet_c") else "fleet_degenerate"


def _check_verdicts(ws: Path) -> None:
    want = EXPECTED[_kind(ws)]
    got = [(e["run"], e["status"], e["attempts"]) for e in events(ws, "run_recorded")]
    assert got == want["recorded"], (ws, got)
    fin = [(e["run"], e["attempt"], e["phase"], e["status"]) for e in events(ws, "run_finished")]
    assert fin == want["finished"], (ws, fin)


def _workspaces(sandbox: Path) -> list[Path]:
    return sorted(p for p in sandbox.iterdir() if p.is_dir() and not p.name.startswith("."))


def _runs_seen(ws: Path) -> list[dict]:
    """Every experiment's own report of its GPU and its start and end (results, smoke runs, set-aside runs)."""
    out = []
    for p in [*ws.glob("run_[1-9]*/final_info.json"), *ws.glob(".smoke/*/final_info.json"),
              *ws.glob(".orchestrate/runs/*/*/out/final_info.json")]:
        env = json.loads(p.read_text())["env"]
        out.append({**env, "where": f"{ws.name}/{p.parent.name}"})
    return out


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT, **kw)


def _fleet_cmd(ideas: Path, sandbox: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "run", str(ideas), "--all", "--sandbox", str(sandbox),
            "--stages", "experiments", "--python", sys.executable, *extra]


def test_four_ideas_two_at_a_time_on_two_gpus_never_share_one(tmp_path):
    ideas = _ideas(tmp_path, sleep_s=1.0)
    sandbox = tmp_path / "sb"
    cp = _run(_fleet_cmd(ideas, sandbox, "--parallel", "2", "--gpus", "0,1"), timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "done: 4 of 4 idea(s) finished; 6 of 6 run(s) are results" in cp.stdout
    wss = _workspaces(sandbox)
    assert len(wss) == 4
    for ws in wss:
        _check_verdicts(ws)
        assert events(ws, "workspace_created")[0]["executor"]["gpus"] == ["0", "1"]
    seen = [r for ws in wss for r in _runs_seen(ws)]
    assert len(seen) == 4 * 4  # every smoke and full run that wrote results (a crashed smoke run writes none)
    assert {r["cuda_visible_devices"] for r in seen} <= {"0", "1"}
    overlapping = 0
    for i, a in enumerate(seen):
        for b in seen[i + 1:]:
            if a["started"] < b["ended"] and b["started"] < a["ended"]:  # ran at the same time
                overlapping += 1
                assert a["cuda_visible_devices"] != b["cuda_visible_devices"], (a, b)
    assert overlapping > 0, "two ideas at a time should have run experiments concurrently"


def test_cpu_machine_runs_ideas_on_cpu_slots(tmp_path):
    ideas = _ideas(tmp_path, sleep_s=0.0, names=("fleet_a", "fleet_b"))
    sandbox = tmp_path / "sb"
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = "/usr/bin:/bin"  # no nvidia-smi: a CPU machine
    cp = _run(_fleet_cmd(ideas, sandbox, "--parallel", "2"), timeout=300, env=env)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "CPU slots (no GPU)" in cp.stdout
    for ws in _workspaces(sandbox):
        _check_verdicts(ws)
        assert events(ws, "workspace_created")[0]["executor"] == {}
        assert all(r["cuda_visible_devices"] is None for r in _runs_seen(ws))


def _alive_experiments(wss: list[Path]) -> list[int]:
    """Processes still running with one of these workspaces as their cwd."""
    roots = {str(ws.resolve()) for ws in wss}
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink(f"/proc/{pid}/cwd") in roots:
                    found.append(int(pid))
            except OSError:
                continue
    return found


def test_ctrl_c_stops_every_idea_and_each_resumes_on_its_own(tmp_path):
    ideas = _ideas(tmp_path, sleep_s=4.0)
    sandbox = tmp_path / "sb"
    with open(tmp_path / "fleet.out", "w") as log:
        fleet = subprocess.Popen(_fleet_cmd(ideas, sandbox, "--parallel", "2", "--gpus", "0,1"), stdout=log,
                                 stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # two ideas are in a full run (4 s each)
            wss = _workspaces(sandbox) if sandbox.exists() else []
            busy = [ws for ws in wss if any(e["phase"] == "full" for e in events(ws, "run_started"))]
            if len(busy) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the fleet never got two ideas running: " + (tmp_path / "fleet.out").read_text())
        time.sleep(0.5)
        fleet.send_signal(signal.SIGINT)
        rc = fleet.wait(timeout=60)
    finally:
        if fleet.poll() is None:
            fleet.kill()
    out = (tmp_path / "fleet.out").read_text()
    assert rc == 130, out
    wss = _workspaces(sandbox)
    assert len(wss) == 4  # all made up front, the two queued ones untouched
    for ws in wss:
        assert f"orchestrate resume {ws}" in out
    started = [ws for ws in wss if events(ws, "stage_started")]
    assert len(started) == 2
    for ws in started:
        assert any(e["text"] == "interrupted by the user" for e in events(ws, "message")), ws
        unfinished = [e for e in events(ws, "run_started")
                      if not any(f["run"] == e["run"] and f["attempt"] == e["attempt"] and f["phase"] == e["phase"]
                                 for f in events(ws, "run_finished"))]
        assert unfinished, "the interrupted full run has no verdict: a resume runs it again"
    time.sleep(0.5)
    assert _alive_experiments(wss) == [], "an experiment outlived Ctrl-C"

    # Each workspace is resumable on its own, all at once.
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "resume", str(ws), "--stages", "experiments"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT) for ws in wss]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o
    for ws in wss:
        _check_verdicts(ws)
        if ws in started:
            assert any(e["text"].startswith("resumed") for e in events(ws, "message"))


def test_gpu_slots_are_leased_one_experiment_each(tmp_path):
    ex = GpuSlotExecutor(["0", "1"], tmp_path / "locks", poll_s=0.02)
    a = ex.lease()
    b = ex.lease()
    assert {a[0], b[0]} == {"0", "1"}
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    assert ex.lease(stop) is None  # both taken: it waits, and gives up only when stopped
    assert time.monotonic() - t0 >= 0.25
    a[1].close()
    c = ex.lease()
    assert c[0] == a[0]
    shared = GpuSlotExecutor(["0", "0"], tmp_path / "locks2")  # two experiments on GPU 0, as asked
    assert [shared.lease()[0], shared.lease()[0]] == ["0", "0"]


def test_gpu_argument_and_visible_gpus(monkeypatch):
    assert gpu_slots("0,1") == ["0", "1"]
    assert gpu_slots("0,0") == ["0", "0"]
    assert gpu_slots("none") == []
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu_slots(None) == ["2", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_slots(None) == []


def test_all_expands_every_idea_of_a_list(tmp_path):
    ideas = _ideas(tmp_path, sleep_s=0)
    assert [n for _, n in expand_ideas([ideas], all_=True, idea_name=None)] == ["fleet_a", "fleet_b", "fleet_c", "fleet_d"]
    assert expand_ideas([ideas, ideas], all_=False, idea_name="fleet_a") == [(ideas, "fleet_a"), (ideas, "fleet_a")]


def test_duplicate_names_stop_before_anything_is_made(tmp_path):
    ideas = _ideas(tmp_path, sleep_s=0)
    sandbox = tmp_path / "sb"
    cp = _run([sys.executable, "-m", "orchestrator.cli", "run", str(ideas), str(ideas), "--idea", "fleet_a",
               "--sandbox", str(sandbox), "--stages", "experiments"], timeout=120)
    assert cp.returncode == 2
    assert "several ideas are named fleet_a" in cp.stderr
    assert not sandbox.exists() or not _workspaces(sandbox)


def test_the_live_view_counts_the_search_results_and_ablations_apart(tmp_path):
    """A tree search's journal with its ablations (one ok, one whose change no longer comes out), read as the view
    tails it: the results column counts the search's runs only, the ablations beside them, and the line for the
    inapplicable one says so instead of FAILED."""
    import io

    from rich.console import Console
    from test_search_views import ablated_events, journal_workspace

    from orchestrator.fleet.view import FleetView, IdeaState

    st = IdeaState(name="tree", ws=journal_workspace(tmp_path / "ws", *ablated_events()))
    lines = st.poll_journal()
    assert (st.results, st.runs) == (3, 5)  # runs 1-5: 3 ok, 1 failed, 1 degenerate; 6 and 7 (one ok) are ablations
    assert st.ablations == 2
    assert st.tally == "3/5 +2 ablation(s)"
    assert [ln for ln in lines if ln.startswith("[tree] run 6:")] == [
        "[tree] run 6: NOT APPLICABLE, nothing was run: the change of run 1 does not come out of run 4's code "
        "(patch does not apply)"]
    out = io.StringIO()
    Console(file=out, width=200).print(FleetView([st], slots="cpu", stream=out, live=False).table())
    (row,) = [ln for ln in out.getvalue().splitlines() if "│ tree " in ln]
    assert "3/5 +2 ablation(s)" in row
