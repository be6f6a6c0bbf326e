"""A workspace made today still opens after an event changes: the journal names its version and is migrated
when read. tests/fixtures/workspace_v1 is a real workspace (without its .git), made by running the tiny idea
with the code of journal version 1; every reader must keep opening it."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES
from rich.console import Console

from orchestrator import migrations
from orchestrator.cli import main as cli
from orchestrator.errors import WorkspaceError
from orchestrator.events import WorkspaceCreated
from orchestrator.paper.results_tex import collect_runs
from orchestrator.readmodel import WorkspaceModel
from orchestrator.show import overview
from orchestrator.timeline import build
from orchestrator.workspace import Workspace

V1 = FIXTURES / "workspace_v1"


@pytest.fixture
def v1(tmp_path) -> Path:
    dest = tmp_path / "ws_v1"
    shutil.copytree(V1, dest)
    return dest


def _rewrite_head(ws: Path, **change) -> None:
    journal = ws / ".orchestrate" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    head = json.loads(lines[0])
    for k, v in change.items():
        if v is None:
            head.pop(k, None)
        else:
            head[k] = v
    lines[0] = json.dumps(head)
    journal.write_text("\n".join(lines) + "\n")


def _check_opens(ws: Path) -> None:
    w = Workspace(ws)
    head = w.journal.events[0]
    assert isinstance(head, WorkspaceCreated) and head.version == migrations.JOURNAL_VERSION
    model = WorkspaceModel.build(w.journal.events, ws)
    assert {n: r.status for n, r in model.recorded().items()} == {1: "ok", 2: "ok"}
    assert [len(r.attempts) for r in model.run_list()] == [1, 2, 1]  # run 3: the agent ended the stage there
    tl = build(w)
    assert tl.state == "finished" and [r.run for r in tl.results] == [1, 2]
    assert tl.baseline and tl.metric_rows()
    ok, bad = collect_runs(w)
    assert [r.run for r in ok] == [0, 1, 2] and ok[0].baseline and not bad
    out = io.StringIO()
    Console(file=out, width=160).print(overview(tl))
    assert "Faster descent" in out.getvalue() and "finished" in out.getvalue()


def test_the_committed_workspace_is_of_the_current_version():
    head = json.loads((V1 / ".orchestrate" / "journal.jsonl").read_text().splitlines()[0])
    assert head["type"] == "workspace_created" and head["version"] == 1


def test_a_version_1_workspace_opens_with_every_reader(v1, capsys):
    _check_opens(v1)
    assert cli(["show", str(v1), "--width", "160"]) == 0
    assert "Faster descent" in capsys.readouterr().out
    assert cli(["show", str(v1), "--run", "2", "--width", "160"]) == 0
    assert "Run 2" in capsys.readouterr().out
    assert cli(["report", str(v1), "--pdf-pages", "0"]) == 0
    assert (v1 / "report.html").is_file()


def test_a_journal_from_before_versions_is_migrated_when_read_and_the_file_is_left_alone(v1):
    _rewrite_head(v1, version=None)
    before = (v1 / ".orchestrate" / "journal.jsonl").read_bytes()
    assert migrations.version_of([json.loads(before.splitlines()[0])]) == 0
    _check_opens(v1)
    assert (v1 / ".orchestrate" / "journal.jsonl").read_bytes() == before


def test_a_journal_newer_than_the_orchestrator_is_refused_in_one_line(v1, capsys):
    _rewrite_head(v1, version=migrations.JOURNAL_VERSION + 1)
    with pytest.raises(WorkspaceError, match="upgrade"):
        Workspace(v1)
    assert cli(["show", str(v1)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "journal.jsonl" in err[0] and "upgrade" in err[0]


def test_migrations_run_in_order_from_the_journal_s_version(v1, monkeypatch):
    """A later change to an event: a field renamed (on a record before the last: an unreadable last record
    reads as torn). Old journals get the rename, journals already renamed
    (and records appended after a migration) are left as they are."""

    def m002_rename_attempts(records):
        for r in records:
            if r.get("type") == "run_recorded" and "tries" in r:
                r["attempts"] = r.pop("tries")
        return records

    # the journal as an older orchestrator would have written it: version 1, the field under its old name
    journal = v1 / ".orchestrate" / "journal.jsonl"
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    for r in rows:
        if r["type"] == "run_recorded":
            r["tries"] = r.pop("attempts")
    journal.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(WorkspaceError, match="corrupt record"):  # unreadable without the migration
        Workspace(v1)
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m002_rename_attempts])
    monkeypatch.setattr(migrations, "JOURNAL_VERSION", 2)
    w = Workspace(v1)
    assert w.journal.events[0].version == 2
    assert [(e.run, e.attempts) for e in w.journal.events if e.type == "run_recorded"] == [(1, 1), (2, 2)]
    assert journal.read_text().count('"tries"') == 2  # migrated in memory only
    assert migrations.migrate([{"type": "workspace_created", "version": 2}, {"type": "run_recorded", "attempts": 1}]
                              )[1] == {"type": "run_recorded", "attempts": 1}
