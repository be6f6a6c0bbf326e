"""readmodel.live: the orchestrator's own journal folded once, event by event, the same as a rebuild."""

from __future__ import annotations

from orchestrator.events import (
    BaselineRecorded,
    Message,
    NodeCreated,
    RunFinished,
    RunRecorded,
    RunStarted,
    StageStarted,
    WorkspaceCreated,
)
from orchestrator.journal import Journal
from orchestrator.readmodel import WorkspaceModel, live


def _shape(m: WorkspaceModel) -> dict:
    """What a reader asks of the model, as plain values."""
    return {
        "runs": {n: [(a.attempt, [(p.phase, p.status, p.seed) for p in a.phases]) for a in r.attempts]
                 for n, r in m.runs.items()},
        "recorded": {n: r.status for n, r in m.recorded().items()},
        "nodes": {n: (e.parent, e.kind, e.plan) for n, e in m.nodes.items()},
        "messages": [e.text for e in m.messages],
        "stages": {k: v.status for k, v in m.stages.items()},
        "seeds": m.seed_values(1), "baseline": m.seed_values(0),
    }


def _node(j: Journal, run: int, loss: float) -> None:
    j.append(NodeCreated(run=run, parent=run - 1, kind="improve" if run > 1 else "draft"))
    j.append(j.last(NodeCreated, run=run).model_copy(update={"plan": f"plan {run}", "seq": 0, "ts": 0.0}))
    j.append(RunStarted(run=run, attempt=1, phase="full", out_dir=f"run_{run}", commit="c" * 40))
    j.append(RunFinished(run=run, attempt=1, phase="full", out_dir=f"run_{run}", status="ok", metrics={"loss": loss}))
    j.append(RunRecorded(run=run, status="ok", attempts=1))


def test_live_folds_only_what_was_appended_and_matches_a_rebuild(tmp_path, monkeypatch):
    j = Journal(tmp_path / "journal.jsonl")
    j.append(WorkspaceCreated(idea={"name": "x"}, idea_path="x.json", template="tiny", template_root=".",
                              limits={}, agent="transcript:x"))
    j.append(StageStarted(stage="experiments"))
    j.append(BaselineRecorded(metrics={"loss": 1.0}))
    model = live(j)
    assert _shape(model) == _shape(WorkspaceModel.build(j.events))
    applied: list[str] = []
    real = WorkspaceModel.apply

    def counted(self, e):
        applied.append(e.type)
        real(self, e)

    monkeypatch.setattr(WorkspaceModel, "apply", counted)
    for run, loss in ((1, 0.9), (2, 0.5), (3, 0.7)):
        _node(j, run, loss)
        j.append(Message(stage="experiments", text=f"node {run} done"))
        applied.clear()
        again = live(j)
        assert again is model  # the same model, folded further
        assert applied == ["node_created", "node_created", "run_started", "run_finished", "run_recorded", "message"]
        assert _shape(again) == _shape(WorkspaceModel.build(j.events))
    assert live(j).nodes[2].plan == "plan 2" and live(j).recorded()[3].status == "ok"


def test_live_folds_anew_when_the_events_are_not_the_ones_it_folded(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    j.append(WorkspaceCreated(idea={"name": "x"}, idea_path="x.json", template="tiny", template_root=".",
                              limits={}, agent="transcript:x"))
    _node(j, 1, 0.9)
    first = live(j)
    assert set(first.nodes) == {1}
    j.events = j.events[:1]  # replaced by a shorter list (a reread journal)
    assert live(j) is not first and live(j).nodes == {}
    other = Journal(tmp_path / "other.jsonl")
    assert live(other).runs == {} and live(j) is not live(other)
