"""The ablations stage on the tiny template: each change on the best path taken out in turn, each variant its own
run with the right code, recorded and marked, resumed without rerunning; a change that no longer comes out is
recorded as not applicable; the paper's results.tex holds the path and ablation tables as macros."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, blk, cli_subprocess, events, exp, make_idea, only_workspace, run_cli

from orchestrator.workspace import Workspace

LR_UP = exp(1, 1, "Raise the learning rate.\n\n" + blk("LR = 0.05", "LR = 0.1"))
STEPS_UP = exp(2, 1, "More steps.\n\n" + blk("STEPS = 20", "STEPS = 40"))
DONE_3 = exp(3, 1, 'Done.\n\n```json\n{"orchestrate": "done", "reason": "two results"}\n```\n')


def _run(tmp_path: Path, lines: list[dict], stages: str = "experiments,ablations") -> Path:
    idea = make_idea(tmp_path, lines, max_runs=3)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb", "--stages", stages) == 0
    return only_workspace(tmp_path / "sb")


def _show(ws: Path, commit: str, rel: str = "experiment.py") -> str:
    return Workspace(ws).git("show", f"{commit}:{rel}")


def _ablation_nodes(ws: Path) -> dict[int, dict]:
    return {e["run"]: e for e in events(ws, "node_created") if e["kind"] == "ablation"}


def test_one_run_per_change_with_the_right_code_recorded_and_marked(tmp_path):
    ws = _run(tmp_path, [LR_UP, STEPS_UP, DONE_3])
    nodes = _ablation_nodes(ws)
    assert sorted((n["run"], n["parent"], n["ablates"]) for n in nodes.values()) == [(4, 2, 1), (5, 2, 2)]
    recorded = {e["run"]: e for e in events(ws, "run_recorded")}
    assert recorded[4]["status"] == recorded[5]["status"] == "ok", recorded
    full = {e["run"]: e for e in events(ws, "run_started") if e["phase"] == "full"}
    without_lr = _show(ws, full[4]["commit"])
    assert "LR = 0.05" in without_lr and "STEPS = 40" in without_lr  # run 2 less run 1's change
    without_steps = _show(ws, full[5]["commit"])
    assert "LR = 0.1" in without_steps and "STEPS = 20" in without_steps  # run 2 less its own change
    # run 5's code is run 1's, so are its metrics: a finding, not a degenerate run
    assert recorded[5]["metrics"]["eval.error"] == recorded[1]["metrics"]["eval.error"]
    assert recorded[4]["metrics"]["eval.error"] != recorded[2]["metrics"]["eval.error"]
    assert json.loads((ws / "run_4" / "final_info.json").read_text())["config"] == {"lr": 0.05, "steps": 40, "smoke": False}
    notes = (ws / "notes.txt").read_text()
    assert "## Run 4 (ablation, not a search result: run 2 without the change of run 1): OK" in notes
    assert "experiment.py" in (ws / "experiment.py").name and "LR = 0.1" in (ws / "experiment.py").read_text()
    assert "STEPS = 40" in (ws / "experiment.py").read_text()  # the tree ends at the best node's code
    done = next(e for e in events(ws, "stage_finished") if e["stage"] == "ablations")
    assert done["status"] == "done" and done["summary"] == "2 ablation(s) of run 2: 2 result(s)"
    # MLflow's records (no server needed): each ablation's diff is against the best node's code, not the run before
    from orchestrator.exporters.mlflow import KIND_TAG, records

    recs = {r.key[0]: r for r in records(Workspace(ws))[2] if not r.key[1]}
    assert recs["4"].tags[KIND_TAG] == recs["5"].tags[KIND_TAG] == "ablation"
    changed = [ln for ln in recs["5"].texts["code/diff.patch"].splitlines() if ln.startswith(("-LR", "+LR", "-STEPS", "+STEPS"))]
    assert changed == ["-STEPS = 40", "+STEPS = 20"], changed  # against run 2 (LR 0.1), not ablation run 4 (LR 0.05)


def test_resume_neither_loses_nor_reruns_a_finished_ablation(tmp_path):
    ws = _run(tmp_path, [LR_UP, STEPS_UP, DONE_3])
    journal = ws / ".orchestrate" / "journal.jsonl"
    rows = journal.read_text().splitlines(keepends=True)
    # cut the journal as a kill -9 would have, just after the second ablation's node was made
    cut = next(i for i, r in enumerate(rows) if json.loads(r)["type"] == "node_created" and json.loads(r)["run"] == 5)
    journal.write_text("".join(rows[:cut + 1]))
    before = [e for e in events(ws, "run_started") if e["run"] == 4]
    assert run_cli("resume", ws, "--stages", "experiments,ablations") == 0
    assert [e for e in events(ws, "run_started") if e["run"] == 4] == before  # the finished one is not run again
    assert sorted(_ablation_nodes(ws)) == [4, 5]  # the second keeps its number
    assert [e["status"] for e in events(ws, "run_recorded") if e["run"] == 5] == ["ok"]
    assert len([e for e in events(ws, "run_started") if e["run"] == 5 and e["phase"] == "full"]) == 1
    assert run_cli("resume", ws, "--stages", "experiments,ablations") == 0  # finished: nothing again
    assert len([e for e in events(ws, "run_recorded") if e["run"] in (4, 5)]) == 2


def test_a_change_that_no_longer_comes_out_is_recorded_not_applicable(tmp_path):
    lr_again = exp(2, 1, "Even higher.\n\n" + blk("LR = 0.1", "LR = 0.2"))
    ws = _run(tmp_path, [LR_UP, lr_again, DONE_3])
    nodes = _ablation_nodes(ws)
    assert sorted((n["run"], n["ablates"]) for n in nodes.values()) == [(4, 1), (5, 2)]
    recorded = {e["run"]: e for e in events(ws, "run_recorded")}
    assert recorded[4]["status"] == "failed" and recorded[4]["attempts"] == 0
    assert recorded[4]["reasons"][0].startswith("not applicable: the change of run 1 does not come out of run 2's code")
    assert not [e for e in events(ws, "run_started") if e["run"] == 4]  # nothing ran for it
    assert recorded[5]["status"] == "ok"
    assert "LR = 0.1" in _show(ws, next(e for e in events(ws, "run_started") if e["run"] == 5)["commit"])
    notes = (ws / "notes.txt").read_text()
    assert "## Run 4 (ablation, not a search result: run 2 without the change of run 1): NOT APPLICABLE" in notes
    assert "Not applicable, not a failure: nothing was run for it." in notes
    done = next(e for e in events(ws, "stage_finished") if e["stage"] == "ablations")
    assert done["summary"] == "2 ablation(s) of run 2: 1 result(s), 1 not applicable"
    _views_read_it_as_not_applicable(ws, tmp_path)
    _the_paper_reads_it_as_not_applicable(ws)


def _views_read_it_as_not_applicable(ws: Path, tmp_path: Path) -> None:
    """show and report over the real workspace: run 4 reads as not applicable (never failed), run 5's numbers are
    against the best node 2 in the ablations table, and neither is a search result."""
    from test_search_views import text_of

    from orchestrator import stats
    from orchestrator.report import render
    from orchestrator.show import overview
    from orchestrator.timeline import build

    tl = build(ws)
    assert [r.run for r in tl.results] == [1, 2] and "failed" not in tl.counts
    assert tl.ablation_counts == {"not applicable": 1, "ok": 1}
    assert tl.run(5).attempts and tl.attempts == sum(len(r.attempts) for r in tl.runs if r.run not in (4, 5))
    text = text_of(overview(tl), width=220)
    abl = text[text.index("Ablations of run 2 (the best node): not search results"):]
    (row4,) = [ln for ln in abl.splitlines() if "step 1 (draft, run 1)" in ln]
    assert "not applicable" in row4 and "--" in row4
    (row5,) = [ln for ln in abl.splitlines() if "step 2 (improve, run 2)" in ln]
    rec = {e["run"]: e["metrics"] for e in events(ws, "run_recorded")}
    against_2 = stats.format_difference(stats.compare([rec[5]["eval.error"]], [rec[2]["eval.error"]]))
    against_0 = stats.format_difference(stats.compare([rec[5]["eval.error"]], tl.seed_values(0)["eval.error"]))
    assert against_2 != against_0 and f"(Δ {against_2}, " in row5, row5  # against the best node, not the baseline
    metrics = text[text.index("Key metrics (search results only, ablations apart)"):text.index("Ablations of run 2")]
    assert "run 2" in metrics and "run 4" not in metrics and "run 5" not in metrics
    assert "2 ablation(s) (1 not applicable, 1 ok)" in text and "failed" not in text.split("Totals:")[1]
    html = render(ws, tmp_path / "r.html")
    run4 = html[html.index('<details class="run" id="run-4"'):html.index('<details class="run" id="run-5"')]
    assert '<span class="badge s-not-applicable">not applicable</span>' in run4 and "s-failed" not in run4


def _the_paper_reads_it_as_not_applicable(ws_root: Path) -> None:
    """results.tex and the integrity check over the real workspace: run 4 is kept apart as not applicable (never a
    failed run), run 5 is an ablation (never a search result), and prose that says what run 4 is passes while prose
    presenting it as a result is still caught, as not applicable."""
    from orchestrator.paper import integrity
    from orchestrator.paper import results_tex as paper_results
    from orchestrator.paper import tex as texmod
    from orchestrator.readmodel import WorkspaceModel

    ws = Workspace(ws_root)
    text, ok, bad = paper_results.generate(ws, [])
    assert [(r.run, r.status, r.is_ablation) for r in bad] == [(4, "not applicable", True)]
    assert [r.label for r in paper_results.search_results(ok)] == ["run1", "run2"]
    assert "runs recorded ok: run1, run2; ablations (not search results): run5; run0 = baseline" in text
    search = paper_results.search_paper(WorkspaceModel.build(ws.journal.events), None, ws.manifest.key_metrics)
    assert [(a.run, a.status, a.applicable) for a in search.ablations] == [(4, "not applicable", False), (5, "ok", True)]
    assert "step 1 (draft) & -- & not applicable & -- \\\\" in text[text.index("\\newcommand{\\ablationtable}"):]
    tex = ("\\begin{document}\nRun 4 is not applicable: step 2 rewrote the line step 1 changed.\n"
           "Without step 1, run 4 reaches \\result{run4}{eval.error}.\n\\end{document}\n")
    rep = integrity.check(integrity.PaperInputs(text=texmod.source_text(tex, text), tex=tex, runs=ok, failed=bad,
                                                results_tex=text))
    presented = sorted(f.message for f in rep.findings if f.kind == "failed-run-presented")
    assert presented == [
        "\\result{run4}{eval.error}: run4 is not applicable, not a result",
        "run 4 is not applicable, not a result, but is mentioned without saying so: "
        "'Without step 1, run 4 reaches ??'"], presented


def test_skipped_in_one_line_for_a_linear_run_not_asked_for_it(tmp_path):
    ws = _run(tmp_path, [LR_UP, STEPS_UP, DONE_3], stages="experiments")
    ctx_stages = [e["stage"] for e in events(ws, "stage_finished")]
    assert ctx_stages == ["experiments"]
    from orchestrator.pipeline import RunOptions, reopen
    from orchestrator.stages import ablations

    ctx, _ = reopen(ws, RunOptions())
    try:
        assert ablations.run_stage(ctx, None) == "skipped: the linear strategy (ask for it with --stages ...,ablations)"
    finally:
        ctx.ws.unlock()


def test_results_tex_has_the_path_and_ablation_tables_as_macros(tmp_path):
    from orchestrator.paper import integrity
    from orchestrator.paper import results_tex as paper_results
    from orchestrator.paper import tex as texmod

    ws_root = _run(tmp_path, [LR_UP, STEPS_UP, DONE_3])
    ws = Workspace(ws_root)
    text, ok, bad = paper_results.generate(ws, [])
    assert {r.run: (r.kind, r.parent, r.ablates) for r in ok if r.is_ablation} == {4: ("ablation", 2, 1), 5: ("ablation", 2, 2)}
    table = text[text.index("\\newcommand{\\resultstable}"):text.index("\\newcommand{\\searchpathtable}")]
    assert "Run 2" in table and "Run 4" not in table and "Run 5" not in table  # ablations are not search results
    path = text[text.index("\\newcommand{\\searchpathtable}"):text.index("\\newcommand{\\ablationtable}")]
    assert "1 & Run 1 & draft from the template & \\result{run1}{eval.error} & \\stepdiff{run1}{eval.error}" in path
    assert "2 & Run 2 & improve from step 1 & \\result{run2}{eval.error} & \\stepdiff{run2}{eval.error}" in path
    abl = text[text.index("\\newcommand{\\ablationtable}"):]
    assert "none (the best node) & Run 2 & \\result{run2}{eval.error}" in abl
    assert "step 1 (draft) & Run 4 & \\result{run4}{eval.error} & \\stepdiff{run4}{eval.error}" in abl
    assert "step 2 (improve) & Run 5 & \\result{run5}{eval.error} & \\stepdiff{run5}{eval.error}" in abl
    steps = texmod.setresults(text, "stepdiff")
    rec = {e["run"]: e["metrics"] for e in events(ws_root, "run_recorded")}
    d = rec[4]["eval.error"] - rec[2]["eval.error"]  # one seed: the signed difference from the best node
    assert abs(float(texmod.plain_value(steps[("run4", "eval.error")])) - d) <= 1e-3 * abs(d)
    assert ("run1", "eval.error") in steps and ("run2", "eval.error") in steps
    # the integrity check reads every number of the tables from the macros, and still flags a typed one
    paper = "\\begin{document}\n\\searchpathtable\n\\ablationtable\nWithout it the error is 0.123456.\n\\end{document}\n"
    tables = path + abl
    rendered = texmod.source_text(paper.replace("\\searchpathtable\n\\ablationtable", _body(tables)), text)
    rep = integrity.check(integrity.PaperInputs(text=rendered, runs=ok, failed=bad, results_tex=text))
    unmatched = [f for f in rep.findings if f.kind == "unmatched-number"]
    assert [f.message.split()[0] for f in unmatched] == ["0.123456"], unmatched
    assert rep.numbers_matched >= 6


def _body(tables: str) -> str:
    """The rows of the generated tables, as the paper typesets them (the \\newcommand wrappers off)."""
    return "\n".join(ln for ln in tables.splitlines() if "&" in ln)


HAVE_TEX = all(shutil.which(t) for t in ("latexmk", "pdflatex", "bibtex"))


@pytest.mark.skipif(not HAVE_TEX, reason="latexmk/pdflatex/bibtex not installed")
def test_the_scripted_paper_with_ablations_compiles_and_its_integrity_check_is_clean(tmp_path):
    """The paper transcript (two changes), the ablations before the plots: the writeup transcript still fits,
    the paper compiles with the path and ablation tables, and the review finds no number without a run."""
    env = {"HOME": str(tmp_path / "home"), "ORCHESTRATE_HOME": str(tmp_path / "orch"), "ORCHESTRATE_MODEL": ""}
    proc = cli_subprocess("run", FIXTURES / "paper_idea.json", "--sandbox", tmp_path / "sb", "--stages",
                          "experiments,ablations,plots,writeup,compile,review", env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 of 2 run(s) are results, 2 of 2 ablation(s) are results" in proc.stdout
    ws = only_workspace(tmp_path / "sb")
    assert (ws / "paper.pdf").read_bytes()[:5] == b"%PDF-"
    plots = next(e for e in events(ws, "exchange") if e["stage"] == "plots")
    assert "run_4/final_info.json — ablation of run 2: run 2 without the change of run 1 (not a search result)" in plots["prompt"]
    context = next(e for e in events(ws, "exchange") if e["stage"] == "writeup")["prompt"]
    assert "The best node is run2" in context and "- step 1: run1, draft from the template" in context
    assert "- run4: without the change of step 1 (run1)" in context
    review = json.loads((ws / "review.json").read_text())
    kinds = [f["kind"] for f in review["integrity"]["findings"] if f.get("severity", "error") == "error"]
    assert not [k for k in kinds if k in ("unmatched-number", "undefined-result", "failed-run-number")], kinds
    text = (ws / "latex" / "results.tex").read_text()
    assert "\\label{tab:ablations}" in text and "\\result{run4}{eval.error}" in text


def test_a_claim_written_with_stepdiff_is_held_to_its_reference_not_the_baseline():
    from orchestrator.paper.integrity import ClaimInputs, PaperInputs, check

    seeds = {"run0": {"eval.error": [0.36, 0.37, 0.35]}, "run2": {"eval.error": [0.0004, 0.0005, 0.0003]},
             "run4": {"eval.error": [0.044, 0.045, 0.043]}}

    def kinds(sentence: str, references: dict[str, str]) -> list[str]:
        tex = f"\\begin{{document}}\n{sentence}\n\\end{{document}}\n"
        claims = ClaimInputs(seeds=seeds, goals={"eval.error": "min"}, key_metrics=["eval.error"], references=references)
        return [f.kind for f in check(PaperInputs(tex=tex, claims=claims)).findings if f.kind.startswith("claim-")]

    higher = "Without the first change the error is higher (\\stepdiff{run4}{eval.error})."
    assert kinds(higher, {"run4": "run2"}) == []  # run 4 against run 2, the node it ablates: higher, significant
    assert kinds(higher, {}) == ["claim-wrong-direction"]  # with no reference known it falls back to the baseline's
    lower = "Without the first change the error is lower (\\stepdiff{run4}{eval.error})."
    assert kinds(lower, {"run4": "run2"}) == ["claim-wrong-direction"]


def test_the_tree_strategy_ablates_its_best_path_by_default(tmp_path):
    """The tiny tree transcript (drafts 1 and 2, 2 fails, 3 debugs it, 4 improves 1, 5 improves 4): the best node
    5's path is 1 -> 4 -> 5; node 1's change (LR 0.05 -> 0.1) no longer comes out (node 5 rewrote that line)."""
    from orchestrator.pipeline import RunOptions, execute, reopen

    assert run_cli("run", FIXTURES / "tiny_tree_idea.json", "--sandbox", tmp_path / "sb", "--stages", "experiments") == 0
    ws = only_workspace(tmp_path / "sb")
    ctx, _ = reopen(ws, RunOptions())
    try:
        assert ctx.strategy == "tree" and ctx.stages_asked == ["experiments"]
        execute(ctx, ["ablations"])  # not asked for by name: the tree strategy runs it
    finally:
        ctx.ws.unlock()
    nodes = _ablation_nodes(ws)
    assert sorted((n["run"], n["parent"], n["ablates"]) for n in nodes.values()) == [(6, 5, 1), (7, 5, 4), (8, 5, 5)]
    recorded = {e["run"]: e for e in events(ws, "run_recorded")}
    assert recorded[6]["attempts"] == 0 and recorded[6]["reasons"][0].startswith("not applicable")
    full = {e["run"]: e for e in events(ws, "run_started") if e["phase"] == "full"}
    without_steps = _show(ws, full[7]["commit"])
    assert "LR = 0.2" in without_steps and "STEPS = 20" in without_steps
    assert _show(ws, full[8]["commit"]) == _show(ws, recorded[4]["commit"])  # node 5 less its own change: node 4's code
    assert recorded[7]["status"] == recorded[8]["status"] == "ok"


def test_a_debugged_step_is_compared_with_the_baseline_and_a_failed_ablation_names_its_run(tmp_path):
    """A tree whose best path starts with a failed draft (2) that a debug node (3) fixed: the path table gives
    run 3's difference from the baseline (no ancestor is a result), not "--"; taking the fix out crashes, and the
    ablation table names that run as not a result. Under seed 0 node 3 must debug node 2: no result yet."""
    from orchestrator.paper import results_tex as paper_results
    from orchestrator.paper import tex as texmod

    broken = exp(1, 1, "Broken.\n\n" + blk("LR = 0.05", "LR = 0.1\nBROKEN = undefined_name"))
    broken_too = exp(2, 1, "More steps.\n\n" + blk("STEPS = 20", "STEPS = 40\nBROKEN = undefined_name"))
    fixed = exp(3, 1, "Fix node 2.\n\n" + blk("STEPS = 40\nBROKEN = undefined_name", "STEPS = 40"))
    done = exp(4, 1, "Done.\n\n```json\n{\"orchestrate\": \"done\", \"reason\": \"one result\"}\n```\n")
    idea = make_idea(tmp_path, [broken, broken_too, fixed, done], max_runs=4)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb", "--strategy", "tree", "--stages",
                   "experiments,ablations") == 0
    ws_root = only_workspace(tmp_path / "sb")
    nodes = {e["run"]: (e["parent"], e["kind"]) for e in events(ws_root, "node_created")}
    assert {n: nodes[n] for n in (1, 2, 3)} == {1: (0, "draft"), 2: (0, "draft"), 3: (2, "debug")}
    recorded = {e["run"]: e["status"] for e in events(ws_root, "run_recorded")}
    assert (recorded[2], recorded[3]) == ("failed", "ok")
    abl = {e["ablates"]: e["run"] for e in events(ws_root, "node_created") if e["kind"] == "ablation"}
    assert recorded[abl[3]] == "failed"  # node 3's fix taken out: the crash again
    text, ok, _bad = paper_results.generate(Workspace(ws_root), [])
    path = text[text.index("\\newcommand{\\searchpathtable}"):text.index("\\newcommand{\\ablationtable}")]
    assert "1 & Run 2 & draft from the template & not a result (failed) & --" in path
    assert "2 & Run 3 & debug from step 1 & \\result{run3}{eval.error} & \\stepdiff{run3}{eval.error}" in path
    assert "from the baseline when none is" in path
    steps = texmod.setresults(text, "stepdiff")
    assert steps[("run3", "eval.error")] == texmod.setresults(text, "diff")[("run3", "eval.error")]  # = vs run 0
    assert paper_results.references_of(ok)["run3"] == "run0"
    table = text[text.index("\\newcommand{\\ablationtable}"):]
    assert f"step 2 (debug) & Run {abl[3]} & not a result (failed) & --" in table
