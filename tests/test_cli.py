"""The command line as a user meets it: resume keeps the run's options, read-only commands never write,
help and the README agree, -q/-v, list/clean/init/completion, and the live view."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DONE, ROOT, blk, cli_subprocess, events, exp, make_idea, only_workspace, run_cli

PY = sys.executable


def _cli(*args, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """The real entry point, with exactly these arguments (no --stages added)."""
    return subprocess.run([PY, "-m", "orchestrator.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _idea(tmp_path: Path, name: str = "tiny") -> Path:
    return make_idea(tmp_path, [exp(1, 1, blk("LR = 0.05", "LR = 0.1")), exp(2, 1, DONE)], max_runs=2, name=name)


def _killed_after_first_run(tmp_path: Path, sb: Path, *extra) -> Path:
    before = set(sb.iterdir()) if sb.is_dir() else set()
    proc = _cli("run", _idea(tmp_path), "--sandbox", sb, *extra, env={"ORCHESTRATE_FAULT": "after:run_recorded:1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (made,) = set(sb.iterdir()) - before
    return made


# -- item 6: resume keeps the run's --stages ------------------------------------------------------
def test_resume_keeps_the_stages_the_run_was_given(tmp_path):
    ws = _killed_after_first_run(tmp_path, tmp_path / "sb", "--stages", "experiments")
    assert events(ws, "workspace_created")[0]["options"]["stages"] == ["experiments"]
    proc = _cli("resume", ws)  # no --stages: the run's own
    assert proc.returncode == 0, proc.stderr
    assert "stages left: experiments" in proc.stdout
    assert {e["stage"] for e in events(ws, "stage_started")} == {"experiments"}
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok"]


def test_a_resumed_conversation_is_the_one_the_model_would_have_seen(tmp_path):
    """The third request's messages after a kill and a resume equal those of an uninterrupted run: the
    restored exchanges keep aider's "I updated the files." / "Ok." pairs, in the same places."""
    lines = [exp(1, 1, blk("LR = 0.05", "LR = 0.1")), exp(2, 1, "I will think about it; no edit this time."),
             exp(2, 2, blk("STEPS = 20", "STEPS = 30")), exp(3, 1, DONE)]

    def messages(ws: Path) -> list[list[tuple[str, str]]]:
        return [[(m["role"], m["content"]) for m in e["messages"]] for e in events(ws, "exchange")]

    straight = tmp_path / "a"
    straight.mkdir()
    assert cli_subprocess("run", make_idea(straight, lines, max_runs=3), "--sandbox", straight / "sb").returncode == 0
    want = messages(only_workspace(straight / "sb"))

    killed = tmp_path / "b"
    killed.mkdir()
    proc = cli_subprocess("run", make_idea(killed, lines, max_runs=3), "--sandbox", killed / "sb",
                          env={"ORCHESTRATE_FAULT": "after:run_recorded:2"})
    assert proc.returncode == -signal.SIGKILL
    ws = only_workspace(killed / "sb")
    assert len(events(ws, "exchange")) == 3
    assert cli_subprocess("resume", ws).returncode == 0
    got = messages(ws)
    assert len(got) == len(want) == 4
    last = got[3]
    assert [c for r, c in last if r == "user"].count("I updated the files.") == 2
    assert ("assistant", "Ok.") in last
    assert [r for r, _ in last] == [r for r, _ in want[3]]
    history = [m for m in last if m[1] in ("I updated the files.", "Ok.") or m[1].startswith("I will think")]
    assert history == [m for m in want[3] if m[1] in ("I updated the files.", "Ok.") or m[1].startswith("I will think")]


# -- item 10: read-only commands never write; a live holder is "running" ----------------------------
def test_readers_leave_a_torn_journal_and_the_lock_alone(tmp_path):
    sb = tmp_path / "sb"
    ws = _killed_after_first_run(tmp_path, sb, "--stages", "experiments")
    journal = ws / ".orchestrate" / "journal.jsonl"
    with open(journal, "ab") as fh:
        fh.write(b'{"type": "run_started", "run": 2, "att')  # a record still being written
    before = journal.read_bytes()
    for argv in (["show", ws], ["report", ws, "-o", tmp_path / "r.html"], ["export", ws], ["list", sb]):
        proc = _cli(*argv)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert journal.read_bytes() == before, argv
        assert not (ws / ".orchestrate" / "journal.torn").exists(), argv

    # a live orchestrator holds the lock (the real Workspace.lock, in another process)
    holder = subprocess.Popen([PY, "-c", "import sys, time\nfrom orchestrator.workspace import Workspace\n"
                               "w = Workspace(sys.argv[1]); w.lock(); print('locked', flush=True); time.sleep(120)", str(ws)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = ws / ".orchestrate" / "lock"
        assert lock.read_text() == str(holder.pid)
        shown = _cli("show", ws, "--width", "200")
        assert f"running now (pid {holder.pid})" in shown.stdout and "resume" not in shown.stdout.split("running now")[1][:40]
        refused = _cli("resume", ws)
        assert refused.returncode == 2
        assert f"another orchestrator is working in this workspace (pid {holder.pid})" in refused.stderr
        assert lock.read_text() == str(holder.pid)  # the refused resume left the holder's pid there
        listed = _cli("list", sb)
        assert f"running (pid {holder.pid})" in listed.stdout
    finally:
        holder.kill()
        holder.wait()
    # the writer repairs it: resume moves the torn record aside and finishes
    assert _cli("resume", ws).returncode == 0
    assert (ws / ".orchestrate" / "journal.torn").read_bytes().startswith(b'{"type": "run_started", "run": 2')


# -- item 13: help, defaults, the README's synopsis, -q and -v -------------------------------------
def _subparsers(parser):
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_flag_has_help_and_shows_its_default():
    from orchestrator.cli import build_parser

    parser = build_parser()
    for name, sub in _subparsers(parser).items():
        text = sub.format_help()
        for action in sub._actions:
            assert action.help, (name, action.dest)
            if action.option_strings and action.default not in (None, False) and action.dest != "help":
                if action.dest == "root_parser":
                    continue
                assert "(default: " in (sub._get_formatter()._expand_help(action)), (name, action.dest)
        assert "--help" in text
    assert "(default: sandbox)" in _subparsers(parser)["run"].format_help()


def test_the_readme_synopsis_is_the_parsers_usage():
    sys.path.insert(0, str(ROOT / "scripts"))
    import readme_commands

    readme = (ROOT / "README.md").read_text()
    assert readme_commands.block() in readme, "README's commands differ from --help: run scripts/readme_commands.py --write"
    # and each usage line is what `orchestrate CMD --help` prints
    proc = _cli("show", "--help", env={"COLUMNS": "100"})
    first = proc.stdout.split("\n\n")[0].removeprefix("usage: ")
    assert first in readme


def test_quiet_and_verbose_change_the_progress_output(tmp_path):
    quiet = _cli("-q", "run", _idea(tmp_path, "q"), "--sandbox", tmp_path / "q", "--stages", "experiments")
    loud = _cli("-v", "run", _idea(tmp_path, "v"), "--sandbox", tmp_path / "v", "--stages", "experiments")
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert quiet.stderr == ""
    assert len(quiet.stdout.splitlines()) == 1 and quiet.stdout.startswith("done: 1 of 1 run(s)")
    assert "stage experiments: started" in loud.stderr
    started = [ln for ln in loud.stderr.splitlines() if "(run_started: " in ln]  # shown as state only by default
    assert any("run=1" in ln and "attempt=1" in ln and "phase=smoke" in ln for ln in started), started


# -- item 14: list, clean, init, completion ------------------------------------------------------
def test_list_shows_state_results_cost_and_age(tmp_path, capsys):
    sb = tmp_path / "sb"
    assert run_cli("run", _idea(tmp_path), "--sandbox", sb) == 0
    (tmp_path / "k").mkdir()
    time.sleep(1.1)  # workspace folders are named by the second they were made in
    _killed_after_first_run(tmp_path / "k", sb)
    capsys.readouterr()
    assert run_cli("list", sb) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "_tiny" in line]
    assert len(rows) == 2
    assert any("finished" in r and "1 of 2" in r and "$0.0000" in r for r in rows), out
    assert any("interrupted" in r for r in rows), out


def test_clean_is_safe(tmp_path, capsys):
    sb = tmp_path / "sb"
    for n in ("a", "b"):
        assert run_cli("run", _idea(tmp_path, n), "--sandbox", sb) == 0
    a, b = sorted(p for p in sb.iterdir() if p.is_dir())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    (a / "link_out").symlink_to(outside)  # an agent's symlink out of the workspace
    (sb / "link_ws").symlink_to(outside)  # a symlink in the sandbox itself
    capsys.readouterr()

    assert run_cli("clean", sb, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"would remove {a.name} (finished)" in out and f"would remove {b.name} (finished)" in out
    assert a.exists() and b.exists()

    assert run_cli("clean", sb) == 2  # not a terminal and no --yes: refused, nothing removed
    assert "pass --yes" in capsys.readouterr().err and a.exists()

    holder = subprocess.Popen([PY, "-c", "import sys, time\nfrom orchestrator.workspace import Workspace\n"
                               "w = Workspace(sys.argv[1]); w.lock(); print('locked', flush=True); time.sleep(120)", str(b)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_cli("clean", sb, "--yes", "--state", "finished", "--older-than", "0") == 0
        out = capsys.readouterr().out
        assert f"keep    {b.name}: running (pid {holder.pid})" in out
        assert not a.exists() and b.exists()  # the running one stays
        assert (outside / "keep.txt").read_text() == "precious" and (sb / "link_ws").is_symlink()
    finally:
        holder.kill()
        holder.wait()
    assert run_cli("clean", sb, "--yes", "--older-than", "30d") == 0
    assert b.exists() and "nothing to remove" in capsys.readouterr().out


def test_init_makes_a_template_that_passes_check_and_runs(tmp_path, capsys):
    d = tmp_path / "mytpl"
    assert run_cli("init", d) == 0
    assert run_cli("check", d / "idea.json") == 0
    assert "ok: idea 'first' on template 'mytpl'" in capsys.readouterr().out
    # and it really runs: a scripted agent that changes the learning rate gets a validated result
    tr = tmp_path / "t.jsonl"
    tr.write_text("\n".join(json.dumps(x) for x in [
        {"transcript": 1, "idea": "first", "template": "mytpl", "note": "scripted: init test"},
        exp(1, 1, blk("LR = 0.05", "LR = 0.1")), exp(2, 1, DONE)]) + "\n")
    idea = json.loads((d / "idea.json").read_text())
    idea.update(transcript=str(tr), template=str(d), limits={"isolation": "none"})
    (tmp_path / "first.json").write_text(json.dumps(idea))
    assert run_cli("run", tmp_path / "first.json", "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok"]
    fulls = [e for e in events(ws, "run_finished") if e["phase"] == "full"]
    assert fulls and all(e["evaluation"] == "evaluated" for e in fulls)  # its harness's sealed evaluator ran


def test_completion_scripts_source_and_complete(tmp_path):
    script = _cli("completion", "bash").stdout
    (tmp_path / "c.bash").write_text(script)
    probe = (f"source {tmp_path / 'c.bash'}\n"
             "COMP_WORDS=(orchestrate re); COMP_CWORD=1; _orchestrate; echo \"${COMPREPLY[*]}\"\n"
             "COMP_WORDS=(orchestrate clean --dr); COMP_CWORD=2; _orchestrate; echo \"${COMPREPLY[*]}\"\n")
    res = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["resume", "replay", "report", "review"]
    assert lines[1] == "--dry-run"
    zsh = _cli("completion", "zsh").stdout
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit") and "complete -o filenames -F _orchestrate" in zsh


# -- item 15: the live view ticks and ends true -----------------------------------------------------
def test_the_live_clock_ticks_without_events_and_the_end_is_true():
    from orchestrator.events import RunFinished, RunRecorded, RunStarted, StageFinished, StageStarted
    from orchestrator.progress import Progress

    buf = io.StringIO()
    prog = Progress(max_runs=3, max_attempts=2, isolation="none", stream=buf, live=True)
    with prog:
        prog(StageStarted(stage="experiments"))
        deadline = time.monotonic() + 10
        while not re.search(r"elapsed\s+1s", buf.getvalue()) and time.monotonic() < deadline:
            time.sleep(0.1)  # no event meanwhile: only the refresh can move the clock
        assert re.search(r"elapsed\s+1s", buf.getvalue())
        prog(RunStarted(run=1, attempt=1, phase="full", out_dir="x"))
        prog(RunFinished(run=1, attempt=1, phase="full", out_dir="x", status="ok", wall_s=1.0, exit_code=0))
        prog(RunRecorded(run=1, status="ok", attempts=1))
        prog(RunStarted(run=2, attempt=1, phase="full", out_dir="x"))
        prog(RunFinished(run=2, attempt=1, phase="full", out_dir="x", status="ok", wall_s=1.0, exit_code=0))
        prog(RunRecorded(run=2, status="ok", attempts=1))
        prog(StageFinished(stage="experiments", status="done"))
    final = buf.getvalue().rsplit("stage ", 1)[-1]
    assert "the agent ended before run 3" in final and "phase" not in final
    assert "2/3" in final


@pytest.mark.parametrize("stopped", [True])
def test_the_final_panel_names_an_interruption(stopped):
    from orchestrator.events import RunStarted, StageStarted
    from orchestrator.progress import Progress

    buf = io.StringIO()
    prog = Progress(max_runs=3, max_attempts=2, isolation="none", stream=buf, live=True)
    with pytest.raises(KeyboardInterrupt), prog:
        prog(StageStarted(stage="experiments"))
        prog(RunStarted(run=2, attempt=1, phase="smoke", out_dir="x"))
        raise KeyboardInterrupt
    assert "stopped during run 2 attempt 1 (smoke)" in buf.getvalue().rsplit("stage ", 1)[-1]


# -- item 9: a template that checks nothing must say so, and then every view does --------------------
def test_an_unverified_template_is_accepted_only_when_it_says_so_and_views_say_it(tmp_path, capsys, tiny_copy):
    toml = tiny_copy / "template.toml"
    text = toml.read_text().replace('required_keys = ["training.steps_executed", "training.final_loss", "eval.error"]', "")
    text = text.split("[[checks]]")[0] + "[goals]" + text.split("[goals]")[1]
    toml.write_text("unverified = true\n" + text)
    idea = make_idea(tmp_path, [exp(1, 1, blk("LR = 0.05", "LR = 0.1")), exp(2, 1, DONE)], max_runs=2, template=tiny_copy)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    capsys.readouterr()
    assert run_cli("show", ws, "--width", "250") == 0
    assert "UNVERIFIED: the template checks nothing" in capsys.readouterr().out
    assert run_cli("report", ws, "-o", tmp_path / "r.html") == 0
    assert "UNVERIFIED: the template checks nothing" in (tmp_path / "r.html").read_text()
    assert run_cli("list", tmp_path / "sb") == 0
    assert "finished (unverified)" in capsys.readouterr().out


# -- item 17: memory and process limits by default, from the template, the idea and the command line --
def test_memory_and_process_limits_by_default_and_overridden(tmp_path, tiny_copy):
    from orchestrator.machine import probe

    idea = _idea(tmp_path)
    proc = _cli("run", idea, "--sandbox", tmp_path / "a", "--stages", "experiments")
    assert proc.returncode == 0, proc.stderr
    ws = only_workspace(tmp_path / "a")
    want = probe().memory_cap_mb
    head = events(ws, "workspace_created")[0]["limits"]
    assert head["memory_mb"] == want and 64 <= head["max_processes"] <= 512
    assert f"limits: memory {want} MB (the machine's share" in proc.stdout
    assert any(m["text"].startswith(f"limits: memory {want} MB") for m in events(ws, "message"))

    # the template declares what it needs; a run that grows past it is stopped and told why
    with open(tiny_copy / "template.toml", "a") as fh:
        fh.write("\n[resources]\nmemory_mb = 200\npids = 64\n")
    (tmp_path / "h").mkdir()
    hog = make_idea(tmp_path / "h", [
        exp(1, 1, blk("STEPS = 20", "STEPS = 20\nHOG = b'x' * (600 * 2**20)")), exp(2, 1, DONE)],
        max_runs=2, template=tiny_copy, limits={"max_attempts": 1})
    proc = _cli("run", hog, "--sandbox", tmp_path / "b", "--stages", "experiments")
    ws = only_workspace(tmp_path / "b")
    assert events(ws, "workspace_created")[0]["limits"]["memory_mb"] == 200
    assert events(ws, "workspace_created")[0]["limits"]["max_processes"] == 64
    assert "limits: memory 200 MB (template.toml [resources]), processes 64 (template.toml [resources])" in proc.stdout
    smoke = [e for e in events(ws, "run_finished") if e["run"] == 1]
    assert smoke and smoke[0]["status"] == "failed" and "memory limit of 200 MB" in " ".join(smoke[0]["reasons"])

    # the idea changes it, the command line changes that
    over = json.loads(hog.read_text())
    over["limits"]["memory_mb"] = 150
    hog.write_text(json.dumps(over))
    assert run_cli("check", hog) == 0
    proc = _cli("run", hog, "--sandbox", tmp_path / "c", "--stages", "experiments", "--memory-mb", "120")
    assert "limits: memory 120 MB (the command line)" in proc.stdout
    assert events(only_workspace(tmp_path / "c"), "workspace_created")[0]["limits"]["memory_mb"] == 120


def test_a_template_that_needs_more_memory_than_the_machine_has_is_refused(tmp_path, tiny_copy, capsys):
    with open(tiny_copy / "template.toml", "a") as fh:
        fh.write("\n[resources]\nmemory_mb = 100000000\n")
    idea = make_idea(tmp_path, [exp(1, 1, DONE)], template=tiny_copy)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 2
    err = capsys.readouterr().err
    assert "template.toml: [resources] memory_mb = 100000000: more than this machine has" in err
    assert not (tmp_path / "sb").exists() or not any((tmp_path / "sb").iterdir())


# -- item 12: messages that say what was looked for, and where ------------------------------------
def test_unknown_template_names_every_place_searched(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ideas").mkdir()
    idea = make_idea(tmp_path / "ideas", [exp(1, 1, DONE)])
    data = json.loads(idea.read_text())
    data["template"] = "nosuch"
    idea.write_text(json.dumps(data))
    assert run_cli("check", idea) == 2
    err = capsys.readouterr().err
    near = idea.parent
    for place in (tmp_path / "nosuch", near / "templates" / "nosuch", near.parent / "templates" / "nosuch",
                  near / "nosuch", tmp_path / "templates" / "nosuch", ROOT / "templates" / "nosuch"):
        assert str(place) in err, (place, err)
