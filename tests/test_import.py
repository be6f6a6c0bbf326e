"""`orchestrate import`: the AI Scientist reference log (aider markdown chat history) and a console capture
become read-only workspaces, their reported results judged by our own validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main as cli
from orchestrator.errors import InputError
from orchestrator.events import EditApplied, Exchange, Message, RunFinished, RunRecorded, StageFinished, WorkspaceCreated
from orchestrator.importers import import_log
from orchestrator.importers.items import block_diff, blocks, count, literal
from orchestrator.timeline import build
from orchestrator.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "aider-chat-history-hsae.md"
CONSOLE = ROOT / "tests" / "fixtures" / "import" / "console_log.txt"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Workspace:
    if not REFERENCE.is_file():
        pytest.skip(f"reference log not found at {REFERENCE}")
    return import_log(REFERENCE, sandbox=tmp_path_factory.mktemp("imp"))


def test_reference_runs_attempts_and_failures(reference):
    j = reference.journal
    head = j.events[0]
    assert isinstance(head, WorkspaceCreated)
    assert head.imported_from == str(REFERENCE.resolve())
    assert head.idea["name"] == "hierarchical_sparse_autoencoder"
    assert head.idea["title"].startswith("Hierarchical Sparse Autoencoders")
    assert head.idea["max_runs"] == 5
    assert head.template == "sae_variants"

    fins = j.of(RunFinished)
    assert [(f.run, f.attempt, f.status) for f in fins] == [(1, 1, "failed"), (1, 2, "failed"), (1, 3, "degenerate")]
    assert "AttributeError: 'HierarchicalSAE' object has no attribute 'W_dec'" in fins[0].reasons[0]
    assert "'HierarchicalTrainer' object has no attribute 'l1_penalty'" in fins[1].reasons[0]
    assert "Traceback (most recent call last)" in fins[0].feedback.traceback


def test_reference_every_run_is_degenerate(reference):
    recs = reference.journal.of(RunRecorded)
    assert [(r.run, r.status, r.attempts) for r in recs] == [(1, "degenerate", 3)]
    reasons = " ".join(recs[0].reasons)
    assert "training_steps = 0 is below its minimum" in reasons
    assert "final_loss" in reasons
    assert recs[0].metrics == {}  # not a result: no metrics enter tables
    # The results as reported are kept, beside our verdict.
    assert json.loads((reference.root / "run_1" / "final_info.json").read_text())["training_steps"] == 0
    # Run 2 was asked for and edited, but the log ends before its outcome: no verdict, a warning.
    tl = build(reference)
    assert [r.status for r in tl.runs] == ["degenerate", "unfinished"]
    assert any("run 2: the log ends before its outcome" in m.text for m in reference.journal.of(Message))
    assert not tl.results


def test_reference_exchanges_edits_tokens_and_cost(reference):
    j = reference.journal
    xs = j.of(Exchange)
    assert [(x.run, x.attempt, x.step) for x in xs] == [(1, 1, "edit"), (1, 1, "lint"), (1, 2, "edit"), (1, 3, "edit"),
                                                         (2, 1, "edit")]
    assert [x.prompt_tokens for x in xs] == [12000, 17000, 13000, 14000, 15000]
    assert [x.completion_tokens for x in xs] == [3100, 456, 335, 512, 4500]
    assert sum(x.cost_usd for x in xs) == pytest.approx(0.34)
    assert xs[0].prompt.startswith("Your goal is to implement the following idea")
    assert xs[1].prompt.startswith("# Fix any errors below")  # aider's lint reflection
    assert xs[2].prompt.startswith("Run failed with the following error")
    edits = j.of(EditApplied)
    assert all(e.files == ["experiment.py"] for e in edits[:4])
    assert edits[4].files == ["notes.txt", "experiment.py"]
    assert "+class HierarchicalSAE(nn.Module):" in edits[0].diff and "-class CustomSAE(nn.Module):" in edits[0].diff
    assert edits[0].added > 50 and edits[0].removed > 10
    # aider's per-message costs are rounded; the log's own session total is reported beside them.
    assert any("$0.35" in m.text for m in j.of(Message))
    # notes.txt is rebuilt from AI Scientist's initial notes and the agent's notes edit.
    notes = (reference.root / "notes.txt").read_text()
    assert "## Run 1: Initial HSAE Implementation" in notes


def test_reference_is_read_only_for_resume(reference, capsys):
    assert cli(["resume", str(reference.root)]) == 2
    assert "read-only" in capsys.readouterr().err


def test_console_log(tmp_path):
    ws = import_log(CONSOLE, sandbox=tmp_path)
    j = ws.journal
    assert j.events[0].idea["name"] == "topk_sparse_autoencoder"
    fins = [(f.run, f.attempt, f.status, f.exit_code) for f in j.of(RunFinished)]
    assert fins == [(1, 1, "failed", 1), (1, 2, "degenerate", 0), (2, 1, "timeout", None), (2, 2, "ok", 0)]
    assert "NameError: name 'k' is not defined" in j.of(RunFinished)[0].reasons[0]
    recs = [(r.run, r.status, r.attempts) for r in j.of(RunRecorded)]
    assert recs == [(1, "degenerate", 2), (2, "ok", 2)]
    assert j.last(RunRecorded, run=2).metrics["training_steps"] == 2441
    stages = [(s.stage, s.status) for s in j.of(StageFinished)]
    assert [s for s, _ in stages] == ["experiments", "plots", "writeup", "compile", "review"]
    xs = j.of(Exchange)
    assert sum(x.cost_usd for x in xs) == pytest.approx(0.51)
    assert [x.stage for x in xs].count("writeup") == 2 and [x.stage for x in xs].count("plots") == 2
    assert xs[0].prompt_tokens == 11982 and xs[0].completion_tokens == 2210
    # the plain `coder_out:` reply is kept, with its SEARCH/REPLACE blocks, not aider's wrapped rendering
    assert "```python" in xs[0].response and "topk = torch.topk(pre_acts, k, dim=-1)" in xs[0].response
    done = [e for e in j.of(EditApplied) if e.done]
    assert [(e.run, e.attempt) for e in done] == [(3, 1)]
    tl = build(ws)
    assert [r.run for r in tl.results] == [2]


def test_console_results_from_files_beside_the_log(tmp_path):
    """A capture that does not print results: run_N/final_info.json beside it (AI Scientist's layout) is read."""
    folder = tmp_path / "20250114_091203_topk"
    folder.mkdir()
    text = CONSOLE.read_text()
    text = text.replace("Run 2 completed. Here are the results:\n{'training_steps': 2441, 'final_loss': 203.7, 'layer': 19, "
                        "'dict_size': 2304, 'learning_rate': 0.0003, 'sparsity_penalty': 0.04}\n", "")
    (folder / "log.txt").write_text(text)
    (folder / "run_2").mkdir()
    (folder / "run_2" / "final_info.json").write_text(json.dumps({"training_steps": {"means": 12}, "final_loss": {"means": 3.5}}))
    ws = import_log(folder / "log.txt", sandbox=tmp_path / "sb")
    rec = ws.journal.last(RunRecorded, run=2)
    assert rec.status == "ok" and rec.metrics == {"training_steps": 12, "final_loss": 3.5}


def test_console_results_not_shown_are_not_a_result(tmp_path):
    text = CONSOLE.read_text().replace("Run 2 completed. Here are the results:\n", "").replace(
        "{'training_steps': 2441, 'final_loss': 203.7, 'layer': 19, 'dict_size': 2304, 'learning_rate': 0.0003, "
        "'sparsity_penalty': 0.04}\n", "")
    log = tmp_path / "log.txt"
    log.write_text(text)
    ws = import_log(log, sandbox=tmp_path / "sb")
    rec = ws.journal.last(RunRecorded, run=2)
    assert rec.status == "failed" and "does not show the results of run 2" in rec.reasons[0]


def test_unknown_form_is_one_line_exit_2(tmp_path, capsys):
    log = tmp_path / "random.txt"
    log.write_text("hello\nthis is not a log of anything we know\n")
    assert cli(["import", str(log), "--sandbox", str(tmp_path / "sb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(log) in err[0] and "unknown log form" in err[0]
    assert not (tmp_path / "sb").exists() or not any((tmp_path / "sb").iterdir())
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01\x02" * 10)
    with pytest.raises(InputError):
        import_log(binary, sandbox=tmp_path / "sb")
    assert cli(["import", str(tmp_path / "missing.md")]) == 2


def test_cli_import_then_show_and_report(tmp_path, capsys):
    assert cli(["import", str(CONSOLE), "--sandbox", str(tmp_path / "sb")]) == 0
    out = capsys.readouterr().out
    assert "run 1 degenerate, run 2 ok" in out
    (ws,) = list((tmp_path / "sb").iterdir())
    assert cli(["show", str(ws)]) == 0
    assert cli(["report", str(ws)]) == 0
    html = (ws / "report.html").read_text()
    assert "Imported from" in html and "topk" in html


def test_helpers():
    assert count("12k") == 12000 and count("3.1k") == 3100 and count("7,394") == 7394 and count("1.2M") == 1_200_000
    data = literal("{'a': 0, 'b': None, 'c': nan, 'd': -1.5, 'e': [1, 2], 'f': True}")
    assert data["b"] is None and data["c"] != data["c"] and data["d"] == -1.5 and data["f"] is True
    with pytest.raises(ValueError):
        literal("{'a': __import__('os')}")
    bs = blocks("x.py\n```python\n<<<<<<< SEARCH\na = 1\nb = 2\n=======\na = 1\nb = 3\n>>>>>>> REPLACE\n```\n")
    assert [(b.file, b.search, b.replace) for b in bs] == [("x.py", "a = 1\nb = 2\n", "a = 1\nb = 3\n")]
    diff, added, removed = block_diff(bs)
    assert (added, removed) == (1, 1) and "-b = 2" in diff and "+b = 3" in diff and " a = 1" in diff


def _md_reply(text: str, sent: str, recv: str, cost: str, session: str, applied: list[str]) -> str:
    tool = [f"> Tokens: {sent} sent, {recv} received. Cost: ${cost} message, ${session} session.  "]
    tool += [f"> Applied edit to {f}  " for f in applied]
    return f"\n{text}\n\n" + "\n".join(tool) + "\n"


def _md_user(text: str) -> str:
    return "\n" + "\n".join(f"#### {ln}  " for ln in text.splitlines()) + "\n"


def test_markdown_full_pipeline_stages(tmp_path):
    """A whole AI Scientist chat history: experiments, plots, writeup, LaTeX fixes and the improvement."""
    blk = "experiment.py\n```python\n<<<<<<< SEARCH\nLR = 1\n=======\nLR = 2\n>>>>>>> REPLACE\n```"
    md = "\n# aider chat started at 2025-01-12 14:05:25\n"
    md += _md_user("Your goal is to implement the following idea: Faster descent.\nThe proposed experiment is as "
                   "follows: Tune it.\nYou are given a total of up to 2 runs to complete the necessary experiments. "
                   "You do not need to use all 2.\n\nFor reference, the baseline results are as follows:\n\n"
                   "{'training_steps': 100, 'final_loss': 0.5}\n\nAfter you complete each change, we will run it.")
    md += _md_reply("Run 1: raise LR.\n\n" + blk, "2.1k", "300", "0.01", "0.01", ["experiment.py"])
    md += _md_user("Run 1 completed. Here are the results:\n{'training_steps': 100, 'final_loss': 0.25}\n\n"
                   "Decide if you need to re-plan your experiments given the result (you often will not need to).")
    md += _md_reply("ALL_COMPLETED", "2.5k", "10", "0.01", "0.02", [])
    md += _md_user("Great job! Please modify `plot.py` to generate the most relevant plots for the final writeup.")
    md += _md_reply("plot.py\n```python\n<<<<<<< SEARCH\nlabels = {}\n=======\nlabels = {'run_1': 'LR 2'}\n"
                    ">>>>>>> REPLACE\n```", "3k", "50", "0.01", "0.03", ["plot.py"])
    md += _md_user("We've provided the `latex/template.tex` file to the project. We will be filling it in section by section.")
    md += _md_reply("latex/template.tex\n```latex\n<<<<<<< SEARCH\nTITLE\n=======\nFaster descent\n>>>>>>> REPLACE\n```",
                    "4k", "400", "0.02", "0.05", ["latex/template.tex"])
    md += _md_user("Please fix the following LaTeX errors in `template.tex` guided by the output of `chktek`:\nWarning 1")
    md += _md_reply("Fixed.", "4k", "20", "0.01", "0.06", [])
    md += _md_user('The following review has been created for your research paper:\n"""\n{"Overall": 3}\n"""\n\n'
                   "Improve the text using the review.")
    md += _md_reply("Improved.", "5k", "90", "0.02", "0.08", [])
    log = tmp_path / "20250112_140525_faster_aider.txt"
    log.write_text(md)
    ws = import_log(log, sandbox=tmp_path / "sb")
    j = ws.journal
    assert j.events[0].idea["name"] == "faster" and j.events[0].idea["title"] == "Faster descent"
    assert [(r.run, r.status) for r in j.of(RunRecorded)] == [(1, "ok")]
    assert [s.stage for s in j.of(StageFinished)] == ["experiments", "plots", "writeup", "compile"]
    assert [x.stage for x in j.of(Exchange)] == ["experiments", "experiments", "plots", "writeup", "compile", "review"]
    assert sum(x.cost_usd for x in j.of(Exchange)) == pytest.approx(0.08)
    assert json.loads((ws.root / "run_0" / "final_info.json").read_text()) == {"training_steps": 100, "final_loss": 0.5}
    tl = build(ws)
    assert [r.status for r in tl.runs] == ["ok", "not run"]
    assert j.events[0].template == "sae_variants"  # the log names no template: the built-in default
    assert [r.key for r in tl.metric_rows()] == ["training_steps", "final_loss"] and tl.metric_rows()[0].baseline == 100.0


def test_template_option_judges_with_that_manifest(tmp_path):
    if not REFERENCE.is_file():
        pytest.skip(f"reference log not found at {REFERENCE}")
    ws = import_log(REFERENCE, sandbox=tmp_path, template=ROOT / "tests" / "fixtures" / "tiny")
    rec = ws.journal.last(RunRecorded, run=1)
    assert ws.journal.events[0].template == "tiny"
    assert rec.status == "failed" and "required key training.steps_executed is missing" in rec.reasons[0]
    with pytest.raises(InputError):
        import_log(REFERENCE, sandbox=tmp_path, template=tmp_path / "nowhere")


# -- console captures of every form: results wherever the log shows them, silent failures flagged --------------
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "import"))
import captures  # noqa: E402  (the fixtures' generator: rich itself renders the captures)

# run -> (status, a phrase of each reason), for every form
EXPECTED = {
    "notes_in_panels": {1: ("degenerate", ["training_steps = 0", "final_loss is null"]),
                        2: ("degenerate", ["training_steps = 0", "identical to run 1's"]),
                        3: ("degenerate", ["training_steps = 0", "final_loss is null", "identical to run 1's"])},
    "wrapped_completed": {1: ("ok", []), 2: ("degenerate", ["identical to run 1's"]),
                          3: ("degenerate", ["final_loss is null"])},
    "printed_results_in_panels": {1: ("degenerate", ["final_val_loss is None", "train_steps = 0"]), 2: ("ok", []),
                                  3: ("degenerate", ["identical to run 2's"])},
}


def _verdicts(ws: Workspace) -> dict[int, tuple[str, list[str]]]:
    return {r.run: (r.status, r.reasons) for r in ws.journal.of(RunRecorded)}


def _assert_flagged(ws: Workspace, form: str) -> None:
    got = _verdicts(ws)
    assert sorted(got) == sorted(EXPECTED[form]), got
    for run, (status, phrases) in EXPECTED[form].items():
        assert got[run][0] == status, (run, got[run])
        for phrase in phrases:
            assert any(phrase in r for r in got[run][1]), (run, phrase, got[run][1])


@pytest.mark.parametrize("form", sorted(captures.FORMS))
def test_committed_capture_silent_failures_flagged(form, tmp_path, capsys):
    _make, width = captures.FORMS[form]
    log = ROOT / "tests" / "fixtures" / "import" / f"{form}_{width}.txt"
    assert cli(["import", str(log), "--sandbox", str(tmp_path / "sb")]) == 0
    (root,) = list((tmp_path / "sb").iterdir())
    ws = Workspace(root)
    _assert_flagged(ws, form)
    # show and report say so too
    capsys.readouterr()
    assert cli(["show", str(root)]) == 0
    shown = capsys.readouterr().out
    assert shown.count("degenerate") >= sum(1 for s, _ in EXPECTED[form].values() if s == "degenerate")
    assert cli(["report", str(root)]) == 0
    assert "degenerate" in (root / "report.html").read_text()
    assert not build(ws).results or all(EXPECTED[form][r.run][0] == "ok" for r in build(ws).results)


@pytest.mark.parametrize("width", [60, 80, 100, 120, 160, 200, 240])
@pytest.mark.parametrize("form", sorted(captures.FORMS))
def test_capture_at_any_width(form, width, tmp_path):
    make, _ = captures.FORMS[form]
    log = tmp_path / "log.txt"
    log.write_text(make(width))
    _assert_flagged(import_log(log, sandbox=tmp_path / "sb"), form)


def test_capture_with_colours_is_read_as_plain(tmp_path):
    """A capture of a colour terminal (`script`, tee of a forced terminal) carries ANSI codes."""
    text = captures.notes_in_panels(120)
    coloured = "".join(f"\x1b[1;36m{ln}\x1b[0m\n" if ln.startswith(("│", "╭", "╰")) else ln + "\n" for ln in text.splitlines())
    log = tmp_path / "log.txt"
    log.write_text(coloured)
    _assert_flagged(import_log(log, sandbox=tmp_path / "sb"), "notes_in_panels")


def test_notes_results_are_marked_self_reported(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(captures.notes_in_panels(160))
    ws = import_log(log, sandbox=tmp_path / "sb")
    said = [m.text for m in ws.journal.of(Message) if "notes.txt edit" in m.text]
    assert [s.split(":")[0] for s in said] == ["run 1", "run 2", "run 3"]
    assert all("self-reported" in s for s in said)
    assert json.loads((ws.root / "run_1" / "final_info.json").read_text())["training_steps"] == 0


def test_wrapped_dict_helpers():
    from orchestrator.importers.items import clean_capture, dict_in_lines, notes_results

    # rich's soft wrap (a space lost at each break), a terminal's hard fold (no space lost), pretty print
    soft = ["Results: {'a': 0, 'name': 'two ", "words', 'b': None}"]
    assert dict_in_lines(soft, 0, 9)[:2] == ({"a": 0, "name": "two words", "b": None}, None)
    hard = ["{'a': 0, 'long_na", "me': 1.5}"]
    assert dict_in_lines(hard, 0)[0] == {"a": 0, "long_name": 1.5}
    pretty = ["{", "    'a': {", "        'b': 1", "    }", "}", "after"]
    assert dict_in_lines(pretty, 0) == ({"a": {"b": 1}}, None, 5)
    assert dict_in_lines(["{'a': 1,", "'b'"], 0)[0] is None
    assert dict_in_lines(["{'a': 1, 'b':", "None}"], 0)[0] == {"a": 1, "b": None}  # trailing spaces trimmed
    c = captures.Capture(24)
    c.panel("## Run 2: x\nResults:\n{'s': 0, 'loss': None, 'name': 'a b c'}", title="t")
    assert "│ Results:" in c.text()
    assert "## Run 2: x\nResults:\n{'s': 0, 'loss': None, 'name': 'a b c'}" in clean_capture(c.text())
    assert notes_results("notes.txt\n" + clean_capture(c.text())) == {2: {"s": 0, "loss": None, "name": "a b c"}}


def test_a_file_of_neither_form_is_one_line_exit_2(tmp_path, capsys):
    """Panels and dicts alone do not make a log: a rich-rendered README, a JSON file."""
    for name, text in [("panel.txt", "╭── hi ──╮\n│ {'training_steps': 0} │\n╰─────────╯\n"),
                       ("results.json", json.dumps({"training_steps": 0, "final_loss": None}))]:
        f = tmp_path / name
        f.write_text(text)
        assert cli(["import", str(f), "--sandbox", str(tmp_path / "sb")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(f) in err[0] and "unknown log form" in err[0]
    assert not (tmp_path / "sb").exists() or not any((tmp_path / "sb").iterdir())
