"""Journal.of and Journal.last: events of one type whose fields match, in order; the latest of them."""

from __future__ import annotations

from orchestrator.events import Message, RunRecorded
from orchestrator.journal import Journal


def test_last_is_the_latest_match_and_of_keeps_the_order(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    for run, status in ((1, "failed"), (2, "ok"), (1, "ok"), (3, "failed")):
        j.append(RunRecorded(run=run, status=status, attempts=1))
        j.append(Message(text=f"run {run}"))
    assert [(e.run, e.status) for e in j.of(RunRecorded, run=1)] == [(1, "failed"), (1, "ok")]
    assert j.last(RunRecorded, run=1).status == "ok" and j.last(RunRecorded, run=1).seq == 5
    assert j.last(RunRecorded, status="failed").run == 3
    assert j.last(RunRecorded).run == 3 and j.last(Message).text == "run 3"
    assert j.last(RunRecorded, run=4) is None and j.last(RunRecorded, run=1, status="degenerate") is None
    again = Journal(tmp_path / "journal.jsonl")  # the same answers from the file
    assert again.last(RunRecorded, run=1).seq == 5 and len(again.of(Message)) == 4
