"""The backbone end to end on the tiny template: real aider edit path, real subprocesses, real git."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import DONE, blk, cli_subprocess, events, exp, make_idea, only_workspace, run_cli

CRASH = blk("STEPS = 20", "STEPS = 20\nBROKEN = undefined_name")
FIX = blk("STEPS = 20\nBROKEN = undefined_name", "STEPS = 20")


def test_multi_run_idea_succeeds_with_notes_and_commits(tmp_path, capsys):
    idea = make_idea(tmp_path, [
        exp(1, 1, "Plan: faster rate, then more steps.\n\n" + blk("LR = 0.05", "LR = 0.1")),
        exp(2, 1, blk("STEPS = 20", "STEPS = 40")),
        exp(3, 1, blk("LR = 0.1", "LR = 0.2")),
    ])
    sandbox = tmp_path / "sb"
    assert run_cli("run", idea, "--sandbox", sandbox) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("replaying the scripted (hand-written) transcript")
    ws = only_workspace(sandbox)
    recs = events(ws, "run_recorded")
    assert [(r["run"], r["status"]) for r in recs] == [(1, "ok"), (2, "ok"), (3, "ok")]
    errors = [json.loads((ws / f"run_{i}" / "final_info.json").read_text())["eval"]["error"] for i in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]  # each change really changed the result
    notes = (ws / "notes.txt").read_text()
    assert "## Run 1: OK" in notes and "## Run 3: OK" in notes and "eval.error" in notes
    log = subprocess.run(["git", "log", "--format=%s"], cwd=ws, capture_output=True, text=True).stdout
    assert log.count("agent edit") == 3 and log.count("full run is a result") == 3
    # every run's exact code is recoverable from its commit
    commit = recs[1]["commit"]
    code = subprocess.run(["git", "show", f"{commit}:experiment.py"], cwd=ws, capture_output=True, text=True).stdout
    assert "STEPS = 40" in code and "LR = 0.1" in code


def test_crash_is_fed_back_and_fixed_next_attempt(tmp_path):
    idea = make_idea(tmp_path, [exp(1, 1, CRASH), exp(1, 2, FIX + blk("LR = 0.05", "LR = 0.07")), exp(2, 1, DONE)])
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    smoke = [e for e in events(ws, "run_finished") if e["phase"] == "smoke"]
    assert smoke[0]["status"] == "failed" and smoke[1]["status"] == "ok"
    feedback = [e for e in events(ws, "exchange") if e["run"] == 1 and e["attempt"] == 2][0]["prompt"]
    assert "NameError: name 'undefined_name' is not defined" in feedback
    assert "Traceback (most recent call last):" in feedback and len(feedback) < 2500
    # the crash was caught by the smoke run: no full run was spent on it
    assert not [e for e in events(ws, "run_started") if e["attempt"] == 1 and e["phase"] == "full"]
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok"]


def test_timeout_kills_the_whole_process_tree(tmp_path, tiny_copy):
    pidfile = tmp_path / "grandchild.pid"
    spawn = (
        "import subprocess, sys, time\n"
        f"PIDFILE = {str(pidfile)!r}\n"
        "if not __import__('os').environ.get('ORCHESTRATE_SMOKE'):\n"
        "    code = 'import os, time; os.setsid(); open(PIDFILE, \"w\").write(str(os.getpid())); time.sleep(120)'\n"
        "    subprocess.Popen([sys.executable, '-c', 'PIDFILE=' + repr(PIDFILE) + '\\n' + code])\n"
        "    time.sleep(120)\n"
    )
    idea = make_idea(tmp_path, [exp(1, 1, blk("STEPS = 20", "STEPS = 25\n" + spawn.rstrip("\n"))), exp(2, 1, DONE)],
                     max_runs=1, limits={"max_attempts": 1, "full_timeout_s": 3}, template=tiny_copy)
    t0 = time.monotonic()
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    assert time.monotonic() - t0 < 30
    ws = only_workspace(tmp_path / "sb")
    full = [e for e in events(ws, "run_finished") if e["phase"] == "full"][0]
    assert full["status"] == "timeout" and full["timed_out"]
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert events(ws, "run_recorded")[0]["status"] == "timeout"


def test_degenerate_run_is_caught_and_never_reported(tmp_path):
    zero = blk("STEPS = 20", "STEPS = 0")
    idea = make_idea(tmp_path, [exp(1, 1, zero), exp(1, 2, blk("STEPS = 0", "STEPS = 30"))], max_runs=1)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    full = [e for e in events(ws, "run_finished") if e["phase"] == "full"]
    assert full[0]["status"] == "degenerate"
    assert any("training.steps_executed" in r and "below its minimum" in r for r in full[0]["reasons"])
    retry_prompt = [e for e in events(ws, "exchange") if e["attempt"] == 2][0]["prompt"]
    assert "no training step was executed" in retry_prompt
    # the degenerate output never became run_1; it is kept aside for inspection
    info = json.loads((ws / "run_1" / "final_info.json").read_text())
    assert info["training"]["steps_executed"] == 30
    assert (ws / ".orchestrate/runs/run_1/attempt_1/out/final_info.json").is_file()


def test_degenerate_only_run_stays_out_of_notes(tmp_path):
    zero = blk("STEPS = 20", "STEPS = 0")
    idea = make_idea(tmp_path, [exp(1, 1, zero)], max_runs=1, limits={"max_attempts": 1})
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert events(ws, "run_recorded")[0]["status"] == "degenerate"
    assert not (ws / "run_1").exists()
    notes = (ws / "notes.txt").read_text()
    assert "## Run 1: DEGENERATE" in notes and "Validated results" not in notes


def test_exhausted_attempts_do_not_lose_earlier_runs(tmp_path):
    crash2 = blk("STEPS = 20", "STEPS = 20\nBROKEN = 1 / 0")
    idea = make_idea(tmp_path, [
        exp(1, 1, blk("LR = 0.05", "LR = 0.1")),
        exp(2, 1, crash2),
        exp(2, 2, blk("BROKEN = 1 / 0", "BROKEN = 2 / 0")),
        exp(3, 1, blk("STEPS = 20\nBROKEN = 2 / 0", "STEPS = 30\nBROKEN = 2 / 1")),
    ], max_runs=3, limits={"max_attempts": 2})
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert [(r["run"], r["status"], r["attempts"]) for r in events(ws, "run_recorded")] == [
        (1, "ok", 1), (2, "failed", 2), (3, "ok", 1)]
    assert (ws / "run_1" / "final_info.json").is_file() and (ws / "run_3" / "final_info.json").is_file()
    assert not (ws / "run_2").exists()
    run3_prompt = [e for e in events(ws, "exchange") if e["run"] == 3][0]["prompt"]
    assert "Run 2 did not give a result (failed)" in run3_prompt
    assert "## Run 2: FAILED" in (ws / "notes.txt").read_text()


def test_search_block_that_does_not_apply_is_fed_back(tmp_path):
    idea = make_idea(tmp_path, [exp(1, 1, blk("LR = 0.5", "LR = 0.1")), exp(1, 2, blk("LR = 0.05", "LR = 0.1"))], max_runs=1)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    edit = events(ws, "edit_applied")[0]
    assert edit["files"] == [] and "SEARCH/REPLACE block failed to match" in edit["failed"]
    second = [e for e in events(ws, "exchange") if e["attempt"] == 2][0]["prompt"]
    assert "failed to match" in second
    assert events(ws, "run_recorded")[0]["status"] == "ok"


def test_edit_to_a_protected_file_is_refused_and_reported(tmp_path):
    hack = blk("    err = abs(w - 3.0)", "    err = 0.0", fname="harness.py") + "\n" + blk("LR = 0.05", "LR = 0.1")
    idea = make_idea(tmp_path, [exp(1, 1, hack)], max_runs=1)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    edit = events(ws, "edit_applied")[0]
    assert edit["refused"] == ["harness.py"] and edit["files"] == ["experiment.py"]
    assert "abs(w - 3.0)" in (ws / "harness.py").read_text()


# -- crash safety -----------------------------------------------------------------------------------

SLOW_FULL = "import os, time\nif not os.environ.get('ORCHESTRATE_SMOKE'):\n    time.sleep(3)"


def _crash_idea(tmp_path):
    return make_idea(tmp_path, [
        exp(1, 1, blk("LR = 0.05", "LR = 0.1")),
        exp(2, 1, blk("STEPS = 20", "STEPS = 40\n" + SLOW_FULL)),
        exp(3, 1, DONE),
    ])


def _reference(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    assert run_cli("run", _crash_idea(ref), "--sandbox", ref / "sb") == 0
    ws = only_workspace(ref / "sb")
    return {i: json.loads((ws / f"run_{i}" / "final_info.json").read_text()) for i in (1, 2)}


@pytest.mark.parametrize("point", ["during_agent_edit", "during_full_run", "between_runs"])
def test_kill_9_then_resume_ends_with_the_same_runs_none_twice(tmp_path, point):
    idea = _crash_idea(tmp_path)
    sandbox = tmp_path / "sb"
    args = ["run", idea, "--sandbox", sandbox]
    if point == "during_agent_edit":  # the reply is on disk, its edit applied but not committed
        proc = cli_subprocess(*args, env={"ORCHESTRATE_FAULT": "after:exchange:2"})
        assert proc.returncode == -signal.SIGKILL
    elif point == "between_runs":
        proc = cli_subprocess(*args, env={"ORCHESTRATE_FAULT": "after:run_recorded:1"})
        assert proc.returncode == -signal.SIGKILL
    else:
        import sys

        p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ws_list = [d for d in sandbox.glob("*_tiny")] if sandbox.exists() else []
            if ws_list and any(e["phase"] == "full" and e["run"] == 2 for e in events(ws_list[0], "run_started")):
                break
            time.sleep(0.05)
        time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
    ws = only_workspace(sandbox)
    assert cli_subprocess("resume", ws).returncode == 0
    recs = events(ws, "run_recorded")
    assert [(r["run"], r["status"]) for r in recs] == [(1, "ok"), (2, "ok")]
    # no exchange asked twice, no full run judged twice
    keys = [(e["stage"], e["run"], e["attempt"], e["step"]) for e in events(ws, "exchange")]
    assert len(keys) == len(set(keys)) == 3
    fulls = [(e["run"], e["attempt"]) for e in events(ws, "run_finished") if e["phase"] == "full"]
    assert len(fulls) == len(set(fulls))
    ref = _reference(tmp_path)
    for i in (1, 2):
        got = json.loads((ws / f"run_{i}" / "final_info.json").read_text())
        assert got["eval"] == ref[i]["eval"] and got["training"] == ref[i]["training"]
    assert "resumed" in " ".join(e["text"] for e in events(ws, "message"))


def test_torn_last_journal_line_is_not_fatal(tmp_path):
    idea = make_idea(tmp_path, [exp(1, 1, blk("LR = 0.05", "LR = 0.1")), exp(2, 1, DONE)], max_runs=2)
    proc = cli_subprocess("run", idea, "--sandbox", tmp_path / "sb", env={"ORCHESTRATE_FAULT": "after:run_recorded:1"})
    assert proc.returncode == -signal.SIGKILL
    ws = only_workspace(tmp_path / "sb")
    with open(ws / ".orchestrate/journal.jsonl", "ab") as fh:
        fh.write(b'{"type": "run_started", "run": 2, "att')  # a write cut by a power failure
    assert cli_subprocess("resume", ws).returncode == 0
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok"]
    assert (ws / ".orchestrate/journal.torn").read_bytes().startswith(b'{"type": "run_started"')


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path):
    import sys

    idea = _crash_idea(tmp_path)
    sandbox = tmp_path / "sb"
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(idea), "--sandbox", str(sandbox),
                          "--stages", "experiments"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    ws = None
    while time.monotonic() < deadline:
        found = list(sandbox.glob("*_tiny")) if sandbox.exists() else []
        if found and any(e["phase"] == "full" and e["run"] == 2 for e in events(found[0], "run_started")):
            ws = found[0]
            break
        time.sleep(0.05)
    assert ws is not None
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and f"orchestrate resume {ws}" in err
    leftovers = subprocess.run(["pgrep", "-f", f"ORCHESTRATE_WORKSPACE={ws}"], capture_output=True, text=True)
    from orchestrator.runner import kill_marked

    assert kill_marked("ORCHESTRATE_WORKSPACE", str(ws)) == 0, leftovers.stdout
    assert cli_subprocess("resume", ws).returncode == 0
    assert [(r["run"], r["status"]) for r in events(ws, "run_recorded")] == [(1, "ok"), (2, "ok")]
    assert "interrupted by the user" in " ".join(e["text"] for e in events(ws, "message"))


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG, as on a full disk
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from orchestrator.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_full_disk_stops_cleanly_and_resume_finishes(tmp_path):
    import sys

    idea = _crash_idea(tmp_path)
    sandbox = tmp_path / "sb"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, "40000", "run", str(idea), "--sandbox", str(sandbox),
                           "--stages", "experiments"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    assert "File too large" in proc.stderr.strip().splitlines()[-1]
    ws = only_workspace(sandbox)
    before = events(ws)  # the journal is whole records only
    assert before and cli_subprocess("resume", ws).returncode == 0
    assert [(r["run"], r["status"]) for r in events(ws, "run_recorded")] == [(1, "ok"), (2, "ok")]


def test_a_reason_over_several_lines_stays_inside_its_runs_notes_section(tmp_path):
    # a tree node whose edit does not apply is failed with aider's SEARCH/REPLACE error as its reason, many
    # lines long; one of them began "## SearchReplaceNoExactMatch", a section of its own in notes.txt
    missing = exp(1, 1, "Plan.\n\n" + blk("NO_SUCH_LINE = 1", "NO_SUCH_LINE = 2"))
    works = exp(2, 1, "Plan.\n\n" + blk("LR = 0.05", "LR = 0.1"))
    done = exp(3, 1, "Done.\n\n" + DONE)
    idea = make_idea(tmp_path, [missing, works, done], max_runs=3)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb", "--strategy", "tree") == 0
    ws = only_workspace(tmp_path / "sb")
    rec = {e["run"]: e for e in events(ws, "run_recorded")}
    assert rec[1]["status"] == "failed" and any("\n" in r for r in rec[1]["reasons"])
    notes = (ws / "notes.txt").read_text()
    assert [ln for ln in notes.splitlines() if ln.startswith("#") and not ln.startswith("# ")] == [
        "## Run 1: FAILED", "## Run 2: OK"]
    section = notes[notes.index("## Run 1: FAILED"):notes.index("## Run 2: OK")]
    assert "  - edit not applied: " in section and "    NO_SUCH_LINE = 1" in section
    assert not [ln for ln in section.splitlines()[1:] if ln.strip() and not ln.startswith(("  ", "Attempts", "What",
                                                                                           "Code", "Not a result"))]
