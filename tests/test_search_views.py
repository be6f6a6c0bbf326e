"""The search tree in `show` and in the HTML report: over hand-built journals (node_created events as the tree
strategy writes them) and over a real workspace whose runs are made nodes, so each node's diff comes from git
against its parent's code."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from test_report import CHROMIUM, _chromium, assert_self_contained
from test_show import FIXTURES, _run_pipeline

from orchestrator.cli import main as cli
from orchestrator.events import (
    BaselineRecorded,
    NodeCreated,
    RunRecorded,
    StageFinished,
    StageStarted,
    WorkspaceCreated,
)
from orchestrator.journal import Journal
from orchestrator.report import render as report
from orchestrator.report import write
from orchestrator.show import overview, run_detail
from orchestrator.timeline import build
from orchestrator.workspace import Workspace

OBJECTIVE = {"metric": "m", "goal": "max", "constraints": ["l0 <= 30"]}


def text_of(renderable, width: int = 140) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def journal_workspace(root: Path, *events, objective: dict | None = OBJECTIVE) -> Path:
    """A workspace folder holding only a journal of `events` (after its header and a baseline)."""
    (root / ".orchestrate").mkdir(parents=True)
    j = Journal(root / ".orchestrate" / "journal.jsonl")
    idea = {"name": "t", "title": "Tree test"} | ({"objective": objective} if objective else {})
    for e in (WorkspaceCreated(idea=idea, idea_path="i.json", template="t", template_root="/t", limits={}, agent="x"),
              StageStarted(stage="experiments"), BaselineRecorded(metrics={"m": 1.0, "l0": 10}), *events,
              StageFinished(stage="experiments", status="done")):
        j.append(e)
    return root


def tree_events():
    """Two drafts (one fails and its debug fails too), two improvements (the higher one breaks the constraint),
    and an ablation of the best node: the best node is 4, reached by 1 → 4."""
    return (
        NodeCreated(run=1, parent=0, kind="draft", plan="Raise the learning rate.\nThen see."),
        RunRecorded(run=1, status="ok", attempts=1, metrics={"m": 2, "l0": 5}),
        NodeCreated(run=2, parent=0, kind="draft", plan="[bold red]markup[/] stays text"),
        RunRecorded(run=2, status="failed", attempts=1, reasons=["smoke: exited with code 1"]),
        NodeCreated(run=3, parent=2, kind="debug"),
        RunRecorded(run=3, status="degenerate", attempts=1, reasons=["training.steps_executed = 0"]),
        NodeCreated(run=4, parent=1, kind="improve", plan="[link=file:///etc]more steps[/link]"),
        RunRecorded(run=4, status="ok", attempts=1, metrics={"m": 3, "l0": 9}),
        NodeCreated(run=5, parent=4, kind="improve"),
        RunRecorded(run=5, status="ok", attempts=1, metrics={"m": 9, "l0": 99}),
        NodeCreated(run=6, parent=4, kind="ablation", ablates=1),
    )


def _line(text: str, start: str) -> str:
    """The tree's line for node `start` ("4 improve"), whatever the guides before it."""
    (line,) = [ln for ln in text.splitlines() if re.search(rf"[★ ]\s{re.escape(start)}\b", ln)]
    return line


def test_show_draws_the_tree_with_its_best_path(tmp_path):
    tl = build(journal_workspace(tmp_path / "ws", *tree_events()))
    text = text_of(overview(tl))
    assert "Search tree" in text
    assert "objective: max m subject to l0 <= 30; baseline 1; 6 node(s) (2 draft, 1 debug, 2 improve, 1 ablation)" in text
    assert "best: node 4 — m 3 (+200.0%), path 1 → 4" in text
    assert "★" in _line(text, "1 draft") and "★" in _line(text, "4 improve") and "best" in _line(text, "4 improve")
    for node in ("2 draft", "3 debug", "5 improve", "6 ablation"):
        assert "★" not in _line(text, node)
    assert "9 (+800.0%) infeasible" in _line(text, "5 improve")
    assert "smoke: exited with code 1" in _line(text, "2 draft")
    assert "degenerate" in _line(text, "3 debug") and "ablation of node 1" in _line(text, "6 ablation")
    assert "Raise the learning rate." in _line(text, "1 draft") and "Then see." not in text
    # children are drawn under their parents: 4 under 1, 3 under 2, 5 and 6 under 4 (deeper indentation)
    indent = {n: _line(text, n).index(n) for n in ("1 draft", "4 improve", "5 improve", "2 draft", "3 debug")}
    assert indent["1 draft"] == indent["2 draft"] < indent["4 improve"] == indent["3 debug"] < indent["5 improve"]
    lines = text.splitlines()
    order = [lines.index(_line(text, n)) for n in ("1 draft", "4 improve", "5 improve", "6 ablation", "2 draft", "3 debug")]
    assert order == sorted(order)
    # the journal's text is shown as text, never as rich markup
    assert "[link=file:///etc]more steps[/link]" in text


def test_show_run_detail_names_the_node_and_its_parent(tmp_path):
    ws = journal_workspace(tmp_path / "ws", *tree_events())
    tl = build(ws)
    text = text_of(run_detail(tl, tl.run(4), Workspace(ws)))
    assert "improve from node 1" in text and "more steps" in text
    assert "Change to the code against node 1 (its parent)" in text
    text = text_of(run_detail(tl, tl.run(2), Workspace(ws)))
    assert "Change to the code against the template (its parent)" in text


def test_a_tree_without_an_objective_takes_the_last_result(tmp_path):
    tl = build(journal_workspace(tmp_path / "ws", *tree_events(), objective=None))
    text = text_of(overview(tl))
    assert "objective: none declared (the best node is the last result)" in text
    assert "best: node 5, path 1 → 4 → 5" in text


def test_a_tree_without_a_result_says_so(tmp_path):
    events = (NodeCreated(run=1, parent=0, kind="draft"), RunRecorded(run=1, status="failed", attempts=2, reasons=["x"]))
    text = text_of(overview(build(journal_workspace(tmp_path / "ws", *events))))
    assert "best: none yet (no node is a result with a score)" in text and "★" not in text


def test_a_linear_workspace_shows_no_tree(tmp_path):
    events = (RunRecorded(run=1, status="ok", attempts=1, metrics={"m": 2, "l0": 5}),
              RunRecorded(run=2, status="ok", attempts=1, metrics={"m": 1.5, "l0": 5}))
    text = text_of(overview(build(journal_workspace(tmp_path / "a", *events))))
    assert "Search tree" not in text and "★" not in text
    assert "best under the objective (max m subject to l0 <= 30): run 1 — 2 (+100.0%)" in text
    text = text_of(overview(build(journal_workspace(tmp_path / "b", *events, objective=None))))
    assert "Search tree" not in text and "best under the objective" not in text
    html = report(tmp_path / "b", tmp_path / "r.html")
    assert 'id="tree"' not in html and 'href="#tree"' not in html


def test_report_draws_the_tree(tmp_path):
    ws = journal_workspace(tmp_path / "ws", *tree_events())
    html = report(ws, tmp_path / "r.html")
    assert_self_contained(html)
    assert '<a href="#tree">Search tree</a>' in html and '<section id="tree"' in html
    assert "best: node 4 — m 3 (+200.0%), path 1 → 4" in html
    nodes = dict(re.findall(r'<a class="(tnode[^"]*)" href="#run-(\d+)"', html))
    by_run = {int(run): cls.split() for cls, run in nodes.items()}
    assert set(by_run) == {1, 2, 3, 4, 5, 6}
    assert "v-ok" in by_run[1] and "v-failed" in by_run[2] and "v-degenerate" in by_run[3] and "v-unfinished" in by_run[6]
    assert [n for n, c in sorted(by_run.items()) if "on-path" in c] == [1, 4]
    assert [n for n, c in sorted(by_run.items()) if "best" in c] == [4]
    # nesting: node 4's item holds nodes 5 and 6; node 2's holds 3 and not 4
    item4 = html[html.index('id="node-4"'):html.index('id="node-2"')]
    assert 'href="#run-5"' in item4 and 'href="#run-6"' in item4
    item2 = html[html.index('id="node-2"'):]
    assert 'href="#run-3"' in item2 and 'href="#run-4"' not in item2[:item2.index("</section>")]
    # each node's run section says where it came from and holds its results, one click from the tree
    assert '<details class="run" id="run-4"' in html
    assert 'improve from <a href="#run-1">node 1</a>' in html
    assert "Change to the code against node 1 (its parent)" in html
    assert "[bold red]markup[/] stays text" in html  # the plan, escaped as text
    assert "<script>alert" not in html


def test_report_escapes_the_plan(tmp_path):
    events = (NodeCreated(run=1, parent=0, kind="draft", plan='<script>alert(1)</script>"><img src=x>'),
              RunRecorded(run=1, status="ok", attempts=1, metrics={"m": 2, "l0": 5}))
    html = report(journal_workspace(tmp_path / "ws", *events), tmp_path / "r.html")
    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """The tiny template's scripted run (run 1: LR 0.05 → 0.1; run 2: STEPS 20 → 40 after a failed attempt),
    the workspace as the linear strategy left it, with real git history."""
    return _run_pipeline(tmp_path_factory.mktemp("views-tree"), FIXTURES / "tiny_idea.json")


def _as_tree(src: Path, dest: Path, run2_parent: int) -> Path:
    """A copy of the linear workspace whose runs are nodes: 1 a draft, 2 an improve of 1 or a second draft."""
    ws = Path(shutil.copytree(src, dest))
    w = Workspace(ws)
    tl = build(ws)
    root = w.git("rev-list", "--max-parents=0", "HEAD").split()[0]
    base2 = tl.run(1).code_commit if run2_parent == 1 else root
    journal = ws / ".orchestrate" / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    head = json.loads(lines[0])
    head["idea"]["objective"] = {"metric": "eval.error", "goal": "min"}
    journal.write_text(json.dumps(head) + "\n" + "".join(lines[1:]))
    j = Journal(journal)
    j.append(NodeCreated(run=1, parent=0, kind="draft", base_commit=root, plan="raise the learning rate"))
    j.append(NodeCreated(run=2, parent=run2_parent, kind="improve" if run2_parent else "draft", base_commit=base2,
                         plan="more steps"))
    return ws


def test_a_real_workspace_diffs_each_node_against_its_parent(real, tmp_path):
    linear = report(real, tmp_path / "l.html")
    assert 'id="tree"' not in linear and "against the previous run" in linear
    improve = _as_tree(real, tmp_path / "improve", run2_parent=1)
    html = report(improve, tmp_path / "i.html")
    run2 = html[html.index('id="run-2"'):html.index('id="run-3"')]
    assert '<span class="add">+STEPS = 40</span>' in run2 and "+LR = 0.1" not in run2
    assert "against node 1 (its parent)" in run2
    draft = _as_tree(real, tmp_path / "draft", run2_parent=0)
    html = report(draft, tmp_path / "d.html")
    run2 = html[html.index('id="run-2"'):html.index('id="run-3"')]
    assert '<span class="add">+STEPS = 40</span>' in run2 and '<span class="add">+LR = 0.1</span>' in run2
    assert "notes.txt" not in run2  # the orchestrator's notes are not the node's change
    # the tree: both drafts under the template, the best under min eval.error is run 2 (more steps)
    tl = build(draft)
    text = text_of(overview(tl))
    assert "objective: min eval.error" in text and "best: node 2" in text
    assert "★" in _line(text, "2 draft") and "★" not in _line(text, "1 draft")
    text = text_of(run_detail(tl, tl.run(2), Workspace(draft)))
    assert "+LR = 0.1" in text and "+STEPS = 40" in text


def test_cli_show_and_report_on_a_tree(real, tmp_path, capsys):
    ws = _as_tree(real, tmp_path / "t", run2_parent=1)
    assert cli(["show", str(ws), "--width", "160"]) == 0
    out = capsys.readouterr().out
    assert "Search tree" in out and "best: node 2" in out and "path 1 → 2" in out
    assert cli(["show", str(ws), "--run", "2", "--width", "160"]) == 0
    assert "against node 1 (its parent)" in capsys.readouterr().out
    assert cli(["report", str(ws), "-o", str(tmp_path / "r.html")]) == 0
    assert 'class="tnode v-ok on-path best" href="#run-2"' in (tmp_path / "r.html").read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_the_tree_report_in_headless_chromium(real, tmp_path):
    ws = _as_tree(real, tmp_path / "t", run2_parent=1)
    url = write(ws, tmp_path / "report.html").resolve().as_uri()
    res = _chromium(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--dump-dom", url], tmp_path / "p1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert re.search(r'<html[^>]*data-report-ready="\d+"', res.stdout), "the report's script did not run"
    assert not [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert 'class="tnode v-ok on-path best" href="#run-2"' in res.stdout
    # a link from the tree opens the node's run section (the report's script opens the target <details>)
    res = _chromium(["--virtual-time-budget=3000", "--dump-dom", url + "#run-2"], tmp_path / "p2")
    assert re.search(r'<details class="run" id="run-2"[^>]* open', res.stdout)
    res = _chromium(["--window-size=390,844", "--dump-dom", url], tmp_path / "p3")
    assert 'data-fits-width="true"' in res.stdout  # at a phone's width the tree scrolls in its own region


def test_the_objective_a_search_recorded_wins(tmp_path):
    ws = journal_workspace(tmp_path / "ws", *tree_events())
    journal = ws / ".orchestrate" / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    head = json.loads(lines[0])
    head["options"] = {"strategy": "tree", "objective": {"metric": "l0", "goal": "min"}}
    journal.write_text(json.dumps(head) + "\n" + "".join(lines[1:]))
    text = text_of(overview(build(ws)))
    assert "objective: min l0;" in text and "best: node 1 — l0 5 (-50.0%), path 1" in text


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """The tiny template's scripted tree search (`--strategy tree`, the engine's own fixture): node 1 a draft,
    node 2 a draft that crashes, node 3 its debug, nodes 4 and 5 improvements."""
    return _run_pipeline(tmp_path_factory.mktemp("views-search"), FIXTURES / "tiny_tree_idea.json")


def test_show_and_report_on_a_real_tree_search(searched, tmp_path):
    tl = build(searched)
    from orchestrator.search.tree import build_tree

    tree = build_tree(tl.model, tl.objective)
    kinds = {n.node: (n.kind, n.parent) for n in tree.search_nodes()}
    assert kinds[1] == ("draft", 0) and kinds[2] == ("draft", 0) and kinds[3] == ("debug", 2)
    assert kinds[4][0] == "improve"
    text = text_of(overview(tl))
    path = [n.node for n in tree.best_path()]
    assert f"path {' → '.join(map(str, path))}" in text
    for n in tree.search_nodes():
        line = _line(text, f"{n.node} {n.kind}")
        assert ("★" in line) == (n.node in path), line
    assert "failed" in _line(text, "2 draft")
    html = report(searched, tmp_path / "r.html")
    assert_self_contained(html)
    on_path = [int(r) for c, r in re.findall(r'<a class="(tnode[^"]*)" href="#run-(\d+)"', html) if "on-path" in c]
    assert on_path == path
    section = {n: html[html.index(f'id="run-{n}"'):] for n in kinds}
    debug = section[3][:section[3].index('id="run-4"')]
    assert "against node 2 (its parent)" in debug and '<span class="del">-BROKEN = undefined_name</span>' in debug
    improve = section[4][:section[4].index('id="run-5"')]
    parent = kinds[4][1]
    assert f"against node {parent} (its parent)" in improve and '<span class="add">+STEPS = 40</span>' in improve
    assert "+LR = 0.1" not in improve  # node 1's change is its parent's code, not node 4's


NOT_APPLICABLE_6 = "not applicable: the change of run 1 does not come out of run 4's code (patch does not apply)"


def ablated_events():
    """tree_events with its ablation finished as the ablations stage records them: node 6 (node 1's change taken out
    of the best node 4) no longer comes out, recorded failed with nothing run; node 7 (node 4's own change out) ok."""
    return (*tree_events(),
            RunRecorded(run=6, status="failed", attempts=0, reasons=[NOT_APPLICABLE_6]),
            NodeCreated(run=7, parent=4, kind="ablation", ablates=4),
            RunRecorded(run=7, status="ok", attempts=1, metrics={"m": 2.5, "l0": 7}))


def _table(text: str, title: str) -> str:
    """The lines of the rich table titled `title`, up to the next blank-bordered end."""
    start = text.index(title)
    end = text.index("└", start)
    return text[start:text.index("\n", end)]


def test_show_keeps_ablations_apart_from_the_search(tmp_path):
    tl = build(journal_workspace(tmp_path / "ws", *ablated_events()))
    assert [r.run for r in tl.results] == [1, 4, 5] and [r.run for r in tl.search_runs] == [1, 2, 3, 4, 5]
    assert tl.counts == {"ok": 3, "failed": 1, "degenerate": 1}  # neither ablation counts, as a result or a failure
    assert tl.ablation_counts == {"not applicable": 1, "ok": 1}
    assert [(a.run.run, a.of, a.step, a.change) for a in tl.ablations] == [
        (6, 4, 1, "step 1 (draft, run 1)"), (7, 4, 2, "step 2 (improve, run 4)")]
    text = text_of(overview(tl), width=200)
    metrics = _table(text, "Key metrics (search results only, ablations apart)")
    assert "run 4" in metrics and "run 5" in metrics and "run 6" not in metrics and "run 7" not in metrics
    abl = _table(text, "Ablations of run 4 (the best node): not search results")
    assert re.search(r"none \(the best node\)\s+│\s+4 │ ok\s+│\s+3 │\s+9 │", abl), abl
    assert re.search(r"step 1 \(draft, run 1\)\s+│\s+6 │ not applicable │\s+-- │\s+-- │", abl), abl
    assert re.search(r"step 2 \(improve, run 4\)\s+│\s+7 │ ok\s+│ 2\.5 \(-16\.7%\) │ 7 \(-22\.2%\) │", abl), abl
    runs = _table(text, "Runs")
    (row6,) = [ln for ln in runs.splitlines() if re.match(r"│\s+6 │", ln)]
    assert "ablation of run 4: without the" in row6 and "not applicable" in row6 and "failed" not in row6
    assert "search: draft" in runs
    assert "failed" not in _line(text, "6 ablation") and "not applicable  the change of run 1" in _line(text, "6 ablation")
    assert "Totals: 5 run(s) (1 degenerate, 1 failed, 3 ok), 2 ablation(s) (1 not applicable, 1 ok)" in text
    detail = text_of(run_detail(tl, tl.run(6)), width=200)
    assert "Run 6: not applicable — ablation of run 4: without the change of step 1 (draft, run 1), not a search result: " \
           "nothing was run" in detail
    assert "failed" not in detail and "after 0 attempt" not in detail


def test_the_live_line_of_a_change_that_no_longer_comes_out():
    from orchestrator.formatting import describe

    line = describe(RunRecorded(run=6, status="failed", attempts=0, reasons=[NOT_APPLICABLE_6]))
    assert line == "run 6: NOT APPLICABLE, nothing was run: the change of run 1 does not come out of run 4's code " \
                   "(patch does not apply)"
    # a run that ran and failed with any reason stays a failure: the rule needs nothing run (attempts 0)
    assert describe(RunRecorded(run=2, status="failed", attempts=1, reasons=[NOT_APPLICABLE_6])).startswith("run 2: FAILED")


def test_report_keeps_ablations_apart_from_the_search(tmp_path):
    html = report(journal_workspace(tmp_path / "ws", *ablated_events()), tmp_path / "r.html")
    assert_self_contained(html)
    assert '<div class="k">Results</div><div class="v">3 of 5 runs</div>' in html
    assert '<div class="k">Ablations</div><div class="v">1 of 2 results</div>' in html
    summary = html[html.index('id="summary"'):html.index('id="tree"')]
    search, ablations = summary[summary.index("Search runs:"):].split('id="ablation-counts"')
    assert "s-failed" in search and "not applicable" not in search
    assert '<span class="badge s-not-applicable">not applicable</span> 1' in ablations and "s-failed" not in ablations
    assert "<title>run 6" not in summary and "<title>run 7" not in summary  # the strip draws the search's runs
    metrics = html[html.index('id="metrics"'):html.index('id="ablations"')]
    assert re.findall(r'<a href="#run-(\d+)">run \d+</a>', metrics) == ["1", "4", "5"]
    abl = html[html.index('id="ablations"'):html.index('id="plots"')]
    assert "Ablations of <a href=\"#run-4\">run 4</a> (the best node)" in abl and "not search results" in abl
    rows = re.findall(r'<tr class="ablation"><th scope="row">([^<]+)</th><td><a href="#run-(\d+)">.*?'
                      r'<span class="badge s-([a-z-]+)">', abl)
    assert rows == [("step 1 (draft, run 1)", "6", "not-applicable"), ("step 2 (improve, run 4)", "7", "ok")]
    assert '2.5 <span class="muted">(-16.7%)</span>' in abl
    table = html[html.index('aria-label="Attempts table"'):html.index('id="expand-all"')]
    assert 'class="s-ablation">ablation of run 4: without the change of step 1 (draft, run 1)</span>' in table
    assert '<span class="muted">search: improve</span>' in table
    run6 = html[html.index('<details class="run" id="run-6"'):html.index('<details class="run" id="run-7"')]
    assert '<span class="badge s-not-applicable">not applicable</span>' in run6 and "nothing was run" in run6
    assert "s-failed" not in run6 and "not a search result" in run6
    node6 = re.search(r'<a class="(tnode[^"]*)" href="#run-6"', html)
    assert node6 and "v-not-applicable" in node6.group(1)
