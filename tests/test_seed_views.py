"""Every view of a multi-seed workspace: the read model's seeds (journal only), notes, show, the HTML report,
results.tex and the claim check in the review, on journals built here with per-seed events (the seeds
contract), in a workspace made of the tiny templates' manifests."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from rich.console import Console

from orchestrator import stats
from orchestrator.events import (
    BaselineRecorded,
    RunFinished,
    RunRecorded,
    RunStarted,
    StageFinished,
    StageStarted,
    WorkspaceCreated,
)
from orchestrator.notes import metric_rows, run_section, run_stats
from orchestrator.paper import integrity
from orchestrator.paper import results_tex as paper_results
from orchestrator.paper import tex as texmod
from orchestrator.readmodel import PhaseView, WorkspaceModel, busy_seconds
from orchestrator.report import render
from orchestrator.show import overview, run_detail
from orchestrator.stages.review import workspace_inputs
from orchestrator.timeline import build
from orchestrator.workspace import Workspace

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BASE_ERR = [0.3647, 0.3652, 0.3641]
RUN1_ERR = [0.0346, 0.0351, 0.0343]  # far below the baseline: a supported "lowers"
BASE_LOSS = [0.1330, 0.1290, 0.1370]
RUN1_LOSS = [0.1300, 0.1350, 0.1290]  # within the baseline's seed noise: "lowers" is not supported


def _metrics(err: float, loss: float, *, evaluated: bool) -> dict:
    m = {"eval.error": err, "eval.score": 1 - err, "training.final_loss": loss, "training.steps_executed": 20}
    if evaluated:  # the evaluator recomputed eval.*: the run's own values are kept under reported.*
        m |= {"reported.eval.error": err, "reported.eval.score": 1 - err}
    return m


def _journal(template: str, *, evaluated: bool) -> list:
    ev = "evaluated" if evaluated else "self-reported"
    out: list = [WorkspaceCreated(idea={"name": "seeds", "title": "Seeds everywhere"}, idea_path="idea.json",
                                  template=template, template_root=str(FIXTURES / template), limits={},
                                  agent="transcript:x")]
    out += [BaselineRecorded(seed=s, metrics=_metrics(BASE_ERR[s], BASE_LOSS[s], evaluated=evaluated), evaluation=ev)
            for s in range(3)]
    out.append(StageStarted(stage="experiments"))
    out += [RunStarted(run=1, attempt=1, phase="smoke", out_dir="smoke", seed=0),
            RunFinished(run=1, attempt=1, phase="smoke", out_dir="smoke", status="ok", seed=0, exit_code=0)]
    for s in range(3):
        out += [RunStarted(run=1, attempt=1, phase="full", out_dir=f"run_1/seed_{s}", seed=s),
                RunFinished(run=1, attempt=1, phase="full", out_dir=f"run_1/seed_{s}", status="ok", seed=s, exit_code=0,
                            metrics=_metrics(RUN1_ERR[s], RUN1_LOSS[s], evaluated=evaluated), evaluation=ev)]
    mean = {k: stats.summarize([_metrics(RUN1_ERR[s], RUN1_LOSS[s], evaluated=evaluated)[k] for s in range(3)]).mean
            for k in _metrics(0, 0, evaluated=evaluated)}
    out.append(RunRecorded(run=1, status="ok", attempts=1, metrics=mean, evaluation=ev))
    for s, status in ((0, "ok"), (1, "failed"), (2, "ok")):  # run 2: one seed of three crashed
        out += [RunStarted(run=2, attempt=1, phase="full", out_dir=f"run_2/seed_{s}", seed=s),
                RunFinished(run=2, attempt=1, phase="full", out_dir=f"run_2/seed_{s}", status=status, seed=s,
                            reasons=[] if status == "ok" else ["exited with code 1"],
                            metrics=_metrics(0.2, 0.1, evaluated=evaluated) if status == "ok" else {}, evaluation=ev)]
    out.append(RunRecorded(run=2, status="failed", attempts=1, reasons=["seed 1: exited with code 1"]))
    out.append(StageFinished(stage="experiments", status="done"))
    return out


def _workspace(tmp: Path, template: str = "tiny_eval", *, evaluated: bool = True) -> Path:
    ws = tmp / "ws"
    shutil.copytree(FIXTURES / template, ws)  # the template's run_0 holds other numbers than the journal's
    (ws / ".orchestrate").mkdir()
    events = _journal(template, evaluated=evaluated)
    (ws / ".orchestrate" / "journal.jsonl").write_text(
        "".join(e.model_copy(update={"seq": i + 1, "ts": 1.0e9 + i}).model_dump_json() + "\n" for i, e in enumerate(events)))
    return ws


def _text(renderable) -> str:
    console = Console(record=True, width=220, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_read_model_gives_each_runs_seed_values_from_the_journal(tmp_path):
    ws = Workspace(_workspace(tmp_path))
    (ws.root / "run_1").mkdir(exist_ok=True)
    (ws.root / "run_1" / "final_info.json").write_text(json.dumps({"eval": {"error": 999.0}}))  # never read
    model = WorkspaceModel.build(ws.journal.events)
    assert model.seed_values(0)["eval.error"] == BASE_ERR
    assert model.seed_values(1)["eval.error"] == RUN1_ERR
    assert model.seeds_ok(1) == [0, 1, 2] and model.seeds_planned(1) == 3
    assert model.seeds_ok(2) == [0, 2] and model.seeds_planned(2) == 3
    assert model.runs[2].attempts[0].verdict == "failed"
    assert model.runs[2].attempts[0].reason == "seed 1: exited with code 1"
    assert [p.seed for p in model.runs[1].attempts[0].phases] == [0, 0, 1, 2]  # smoke, then each seed's full run
    assert model.key_evaluation(1, "eval.error") == "evaluated"
    assert model.key_evaluation(1, "training.final_loss") == "self-reported"  # the evaluator does not compute it
    assert model.key_evaluation(1, "reported.eval.error") == "self-reported"


def test_an_aggregate_verdict_decides_the_ok_seeds_and_min_ok(tmp_path):
    class RunAggregated(BaseModel):  # the seeds contract's event, as branch exec adds it to events.py
        type: Literal["run_aggregated"] = "run_aggregated"
        seq: int = 0
        ts: float = 0.0
        run: int
        attempt: int
        status: str
        seeds_ok: list[int]
        seeds_failed: list[int]
        min_ok: int
        reasons: list[str] = []

    model = WorkspaceModel.build(_journal("tiny_eval", evaluated=True))
    model.apply(RunAggregated(run=2, attempt=1, status="ok", seeds_ok=[0, 2], seeds_failed=[1], min_ok=2))
    assert model.runs[2].attempts[0].verdict == "ok"
    assert model.seeds_ok(2) == [0, 2] and model.seeds_planned(2) == 3 and model.min_ok(2) == 2
    assert model.seed_values(2)["eval.error"] == [0.2, 0.2]


def test_show_report_and_notes_give_every_number_its_interval_and_its_source(tmp_path):
    root = _workspace(tmp_path)
    ws = Workspace(root)
    tl = build(ws)
    row = next(r for r in tl.metric_rows() if r.key == "eval.error")
    expected = stats.format_summary(stats.summarize(RUN1_ERR))
    assert "±" in expected and row.text(1) == expected and row.text(0) == stats.format_summary(stats.summarize(BASE_ERR))
    assert row.diff_text(1) == stats.format_difference(stats.compare(RUN1_ERR, BASE_ERR))
    text = _text(overview(tl))
    assert expected in text and row.diff_text(1) in text and "run 1 (evaluated), 3 seeds" in text
    detail = _text(run_detail(tl, tl.run(1), ws))
    assert expected in detail and "self-reported" in detail and "evaluated" in detail and "3 seeds" in detail
    html = render(ws, root / "report.html")
    assert expected in html and 'class="err"' in html  # the interval as an error bar in the chart
    assert 'class="src src-evaluated"' in html and 'class="src src-self-reported"' in html
    st = run_stats(ws.journal.events, 1)
    keys = ["eval.error", "training.final_loss"]
    rows = {r["key"]: r for r in metric_rows(keys, {"eval.error": 0.03, "training.final_loss": 0.1}, {}, st)}
    assert rows["eval.error"]["value"] == expected and rows["eval.error"]["significant"] == "significant"
    assert rows["training.final_loss"]["significant"] == "not significant"
    rec = next(e for e in ws.journal.events if isinstance(e, RunRecorded) and e.run == 1)
    section = run_section(rec, [], ["eval.error", "training.final_loss"], {}, 3, st)
    assert "Seeds: 3 seeds" in section and f"-> {expected}" in section and "[self-reported]" in section


def test_a_template_without_an_evaluator_says_every_result_is_self_reported(tmp_path):
    root = _workspace(tmp_path, "tiny", evaluated=False)
    ws = Workspace(root)
    tl = build(ws)
    assert tl.self_reported_only and "Every result is self-reported" in tl.evaluation_note
    assert "Every result is self-reported" in _text(overview(tl))
    assert "Every result is self-reported" in render(ws, root / "report.html")
    text, ok, _bad = paper_results.generate(ws, [])
    assert "Every number here is self-reported" in text and "\\setsource" not in text
    inputs, _ = workspace_inputs(ws)
    assert "self-reported" in integrity.check(inputs).notes[0]


def test_results_tex_comes_from_the_journal_with_intervals_differences_and_daggers(tmp_path):
    root = _workspace(tmp_path)
    (root / "run_0" / "final_info.json").unlink()
    (tmp_path / "host.json").write_text(json.dumps({"eval": {"error": 0.777}}))
    (root / "run_0" / "final_info.json").symlink_to(tmp_path / "host.json")  # a link a run left: never followed
    ws = Workspace(root)
    text, ok, bad = paper_results.generate(ws, [])
    values = texmod.setresults(text)
    assert texmod.plain_value(values[("run1", "eval.error")]) == stats.format_summary(stats.summarize(RUN1_ERR))
    assert texmod.plain_value(values[("run0", "eval.error")]) == stats.format_summary(stats.summarize(BASE_ERR))
    diff = texmod.setresults(text, "diff")[("run1", "eval.error")]
    assert texmod.plain_value(diff).replace("\\", "") == stats.format_difference(stats.compare(RUN1_ERR, BASE_ERR))
    assert "\\setsource{run1}{training.final_loss}{self-reported}" in text
    assert "\\setsource{run1}{eval.error}" not in text and "0.777" not in text
    assert "\\resultsprovenance" in text and "except those marked" in text
    assert [r.label for r in ok] == ["run0", "run1"] and [r.label for r in bad] == ["run2"]


def test_review_flags_a_planted_unsupported_claim_and_passes_the_supported_one(tmp_path):
    root = _workspace(tmp_path)
    ws = Workspace(root)
    paper_results.generate(ws, [])
    supported = ("Run 1 lowers the evaluation error from \\result{run0}{eval.error} to \\result{run1}{eval.error} "
                 "(\\diff{run1}{eval.error}).")
    planted = "Run 1 also lowers the final loss, to \\result{run1}{training.final_loss}."
    body = "\\begin{document}\n\\section{Results}\n" + supported + "\n\nPLANT\n\\end{document}\n"
    (root / "latex" / "paper.tex").write_text(body.replace("PLANT", ""))
    inputs, _ = workspace_inputs(ws)
    assert [f for f in integrity.check(inputs).findings if f.kind.startswith("claim")] == []
    (root / "latex" / "paper.tex").write_text(body.replace("PLANT", planted))
    inputs, _ = workspace_inputs(ws)
    claims = [f for f in integrity.check(inputs).findings if f.kind.startswith("claim")]
    assert [(f.kind, f.severity) for f in claims] == [("claim-not-significant", "error")]
    assert "training.final_loss" in claims[0].message and claims[0].where == "paper.tex:5"


def _plot(folder: Path) -> dict[str, bytes]:
    import subprocess
    import sys

    shutil.copy(Path(__file__).resolve().parent.parent / "templates" / "sae" / "plot.py", folder / "plot.py")
    proc = subprocess.run([sys.executable, "plot.py"], cwd=folder, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(folder)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_sae_plot_draws_error_bars_from_seeds_json_and_plain_points_without(tmp_path):
    from orchestrator.figures import check_image

    sae = Path(__file__).resolve().parent.parent / "templates" / "sae" / "run_0" / "final_info.json"
    info = json.loads(sae.read_text())
    figures = {}
    for case in ("single", "seeds"):
        folder = tmp_path / case
        for run in ("run_0", "run_1"):
            (folder / run).mkdir(parents=True)
            (folder / run / "final_info.json").write_text(json.dumps(info))
        if case == "seeds":  # what the orchestrator writes next to the mean over a run's seeds
            flat = {f"{part}.{k}": v for part in ("core", "synthetic") for k, v in info[part].items()
                    if isinstance(v, (int, float))}
            seeds = {k: {"values": [v * 0.9, v, v * 1.1], "mean": v, "n": 3,
                         "ci95": [v - 0.1 * abs(v) - 0.01, v + 0.1 * abs(v) + 0.01]} for k, v in flat.items()}
            (folder / "run_1" / "seeds.json").write_text(json.dumps(seeds))
        figures[case] = _plot(folder)
        for name in ("core_metrics.png", "synthetic_recovery.png", "sparsity_fidelity.png"):
            assert check_image(folder / name).ok, (case, name)
    assert figures["single"].keys() == figures["seeds"].keys()
    assert all(figures["single"][k] != figures["seeds"][k] for k in figures["single"])  # the error bars are drawn


def test_log_and_source_readers_never_follow_a_link_out_of_the_workspace(tmp_path):
    from orchestrator.latex import source_context
    from orchestrator.run_files import log_tail

    secret = tmp_path / "host_secret.txt"
    secret.write_text("api_key = sk-host\n")
    root = tmp_path / "ws"
    (root / "latex").mkdir(parents=True)
    (root / "latex" / "paper.tex").write_text("\\documentclass{article}\n")
    (root / "latex" / "leak.tex").symlink_to(secret)
    (root / "logs").mkdir()
    (root / "logs" / "stderr.txt").symlink_to(secret)
    (root / "logs" / "stdout.txt").write_text("trained\n")
    assert "documentclass" in source_context(root / "latex", "paper.tex", 1)
    assert source_context(root / "latex", "leak.tex", 1) == ""  # a LaTeX log naming a link shows nothing
    assert source_context(root / "latex", str(secret), 1) == ""  # nor a file outside the sources
    assert log_tail(root, str(root / "logs"), "stdout.txt") == "trained"
    assert log_tail(root, str(root / "logs"), "stderr.txt") is None


def test_a_runs_wall_time_counts_seeds_that_ran_side_by_side_once():
    # the hsae tree run's show said run 1 took 4m08s (its three seeds' times added) while it ran 1m33s, and
    # its totals "wall 13m49s (experiments 19m48s)": more time in experiments than on the clock
    def started(seed, ts):
        return RunStarted(run=1, attempt=1, phase="full" if seed is not None else "smoke", seed=seed, ts=ts,
                          out_dir="run_1" if seed is not None else ".smoke/run_1_attempt_1")

    def finished(seed, ts, wall):
        return RunFinished(run=1, attempt=1, phase="full" if seed is not None else "smoke", seed=seed, ts=ts,
                           out_dir="run_1", status="ok", wall_s=wall)

    events = [started(None, 100.0), finished(None, 106.0, 6.0),  # the smoke run, then three seeds together
              started(0, 110.0), started(1, 110.0), started(2, 110.0),
              finished(0, 197.0, 87.0), finished(1, 196.0, 85.5), finished(2, 180.0, 69.5)]
    # a node in flight: the finish is journaled when it lands, long after; its span is from its start
    events += [RunStarted(run=2, attempt=1, phase="full", seed=0, ts=150.0, out_dir="run_2"),
               RunFinished(run=2, attempt=1, phase="full", seed=0, ts=400.0, out_dir="run_2", status="ok", wall_s=60.0)]
    model = WorkspaceModel.build(events)
    run1 = model.runs[1]
    assert run1.attempts[0].wall_s == run1.wall_s == 6.0 + 87.0
    assert model.runs[2].wall_s == 60.0
    every = [p for r in (model.runs[1], model.runs[2]) for p in r.attempts[0].phases]
    assert busy_seconds(every) == 6.0 + (210.0 - 110.0)  # run 2 (150..210) overlaps run 1's seeds (110..197)
    assert busy_seconds([PhaseView(phase="full", out_dir="x", status="ok", wall_s=5.0)]) == 5.0  # no start known
