"""`orchestrate show`: the terminal timeline on finished, failed, interrupted and imported workspaces,
each made here by running the real pipeline on scripted transcripts (or importing the reference log)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli import main as cli
from orchestrator.show import overview, run_detail
from orchestrator.timeline import build
from orchestrator.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
REFERENCE = ROOT.parent / "shared" / "reference" / "aider-chat-history-hsae.md"


def _run_pipeline(tmp: Path, idea: Path) -> Path:
    """Run the experiments stage on a scripted transcript; returns the workspace."""
    sandbox = tmp / "sandbox"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp / "home"))
        mp.setenv("ORCHESTRATE_HOME", str(tmp / "orch_home"))
        for var in ("ORCHESTRATE_MODEL", "ORCHESTRATE_FAULT", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            mp.delenv(var, raising=False)
        rc = cli(["run", str(idea), "--sandbox", str(sandbox), "--stages", "experiments", "--isolation", "none"])
    assert rc == 0
    (ws,) = [p for p in sandbox.iterdir() if not p.name.startswith(".")]
    return ws


def interrupt(finished: Path, dest: Path, *, after_run_started: int) -> Path:
    """A copy of a workspace whose journal ends right after its n-th run_started (a kill -9 mid-run)."""
    shutil.copytree(finished, dest)
    journal = dest / ".orchestrate" / "journal.jsonl"
    keep, seen = [], 0
    for line in journal.read_text().splitlines(keepends=True):
        keep.append(line)
        if '"type":"run_started"' in line.replace(" ", ""):
            seen += 1
            if seen == after_run_started:
                break
    journal.write_text("".join(keep))
    return dest


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("views")
    finished = _run_pipeline(tmp / "f", FIXTURES / "tiny_idea.json")
    failed = _run_pipeline(tmp / "x", FIXTURES / "views_failed_idea.json")
    out = {"finished": finished, "failed": failed,
           "interrupted": interrupt(finished, tmp / "interrupted", after_run_started=3)}
    if REFERENCE.is_file():
        rc = cli(["import", str(REFERENCE), "--sandbox", str(tmp / "imported")])
        assert rc == 0
        (out["imported"],) = list((tmp / "imported").iterdir())
    return out


def render(renderable, width: int = 140) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_finished_overview(workspaces):
    tl = build(workspaces["finished"])
    assert tl.state == "finished"
    assert [r.status for r in tl.runs] == ["ok", "ok", "not run"]
    assert [a.verdict for a in tl.run(2).attempts] == ["failed", "ok"]
    assert tl.run(2).attempts[0].exit_code == 1
    text = render(overview(tl))
    assert "Faster descent" in text and "finished" in text
    assert "smoke: exited with code 1" in text
    assert "eval.error" in text and "0.3647" in text  # key metric and its baseline
    assert "-90.5%" in text  # run 1 against the baseline
    assert "experiments" in text and "Totals:" in text and "cost $0.0000" in text


def test_failed_overview(workspaces):
    tl = build(workspaces["failed"])
    assert tl.state == "finished"
    assert [r.status for r in tl.runs] == ["degenerate", "failed"]
    r1, r2 = tl.runs
    assert [a.verdict for a in r1.attempts] == ["failed", "degenerate"]
    assert [a.verdict for a in r2.attempts] == ["no edit", "failed"]
    assert r2.attempts[0].reason == "edit blocks did not apply"
    text = render(overview(tl))
    assert "No run is a result" in text
    assert "training.steps_executed = 0 is below its minimum" in text
    assert "degenerate" in text and "failed" in text


def test_run_detail_shows_diff_logs_and_results(workspaces):
    ws = Workspace(workspaces["failed"])
    tl = build(ws)
    text = render(run_detail(tl, tl.run(2), ws))
    assert "+        raise RuntimeError('diverged: loss went to inf')" in text  # the diff
    assert "RuntimeError: diverged: loss went to inf" in text  # stderr's tail
    assert "stderr.txt" in text
    text1 = render(run_detail(tl, tl.run(1), ws))
    assert "-STEPS = 20" in text1 and "+STEPS = 0" in text1
    assert "NameError" in text1  # attempt 1's smoke log
    assert "training.steps_executed" in text1 and "not a result" in text1


def test_interrupted_overview(workspaces):
    tl = build(workspaces["interrupted"])
    assert tl.state == "interrupted"
    assert "run 2 attempt 1 (smoke run)" in tl.state_detail
    run2 = tl.run(2)
    assert run2.status == "unfinished" and run2.attempts[-1].verdict == "unfinished"
    assert tl.stages[0].status == "running"
    text = render(overview(tl))
    assert "interrupted" in text and "orchestrate resume" in text


def test_imported_overview(workspaces):
    if "imported" not in workspaces:
        pytest.skip(f"reference log not found at {REFERENCE}")
    tl = build(workspaces["imported"])
    assert tl.state == "imported"
    text = render(overview(tl))
    assert "degenerate" in text and "training_steps = 0" in text
    assert "$0.3400" in text


@pytest.mark.parametrize("kind", ["finished", "failed", "interrupted", "imported"])
def test_cli_show(workspaces, kind, capsys):
    if kind not in workspaces:
        pytest.skip("reference log missing")
    assert cli(["show", str(workspaces[kind]), "--width", "120"]) == 0
    out = capsys.readouterr().out
    assert "Runs" in out and "Totals:" in out
    assert cli(["show", str(workspaces[kind]), "--run", "1", "--width", "120"]) == 0
    assert "Run 1" in capsys.readouterr().out


def test_cli_show_errors(workspaces, tmp_path, capsys):
    assert cli(["show", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a workspace" in err[0]
    assert cli(["show", str(workspaces["finished"]), "--run", "9"]) == 2
    assert "no such run" in capsys.readouterr().err


def test_text_from_the_journal_is_not_markup(workspaces, tmp_path):
    """Reasons and messages are shown as written: `[...]` in them is text, not rich markup."""
    from orchestrator.events import Message
    from orchestrator.journal import Journal

    ws = shutil.copytree(workspaces["failed"], tmp_path / "ws")
    Journal(ws / ".orchestrate" / "journal.jsonl").append(
        Message(level="warning", text="disk full: [Errno 28] No space left [/red] [bold]x"))
    text = render(overview(build(ws)))
    assert "[Errno 28] No space left [/red] [bold]x" in text
