"""Adopting an AI Scientist template, the paper side (issue 15): plot.py's `labels` dict holds every run
that is a result, prompt.json frames the agent's prompts, latex/template.tex is the paper's template with
its embedded bibliography citable, seed_ideas.json feeds idea generation, and per-seed lists in the
results become seed values."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest import FIXTURES, blk, events, only_workspace, run_cli

from orchestrator.plot_labels import read_labels

AIS = FIXTURES / "ais_template"
LABELS = 'labels = {\n    "run_0": "Baseline",\n}'


@pytest.fixture
def folder(tmp_path):
    """A copy of the AI Scientist-form fixture where AI Scientist keeps it: templates/<name>/."""
    dst = tmp_path / "templates" / "gd_quadratic"
    shutil.copytree(AIS, dst)
    return dst


def _script(folder, lines: list[dict]) -> None:
    """The momentum idea with a scripted transcript (AI Scientist's ideas.json entry names it)."""
    header = {"transcript": 1, "idea": "momentum", "template": "gd_quadratic", "note": "scripted: test"}
    (folder / "momentum.transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [header, *lines]))
    ideas = json.loads((folder / "ideas.json").read_text())
    ideas[1]["transcript"] = "momentum.transcript.jsonl"
    (folder / "ideas.json").write_text(json.dumps(ideas))


RUN_1 = {"stage": "experiments", "run": 1, "attempt": 1,
         "response": "Smaller learning rate.\n\n" + blk('parser.add_argument("--lr", type=float, default=0.1)',
                                                            'parser.add_argument("--lr", type=float, default=0.05)')}


def _run(folder, tmp_path, stages: str, *extra: str) -> int:
    return run_cli("run", folder / "ideas.json", "--idea", "momentum", "--sandbox", tmp_path / "sb", "--isolation",
                   "none", "--python", sys.executable, "--max-runs", "1", "--stages", stages, *extra)


# ---- plot.py's labels dict ------------------------------------------------------------------------

def test_labels_read_from_the_source_never_run():
    src = ('import os\nlabels = {"run_0": "Baselines", "run_1": "lr"}\nlabels["run_2"] = "more"\n'
           'labels.update({"run_3": "x"})\nif __name__ == "__main__":\n    labels["run_4"] = "y"\n'
           'os.system("exit 1")\n')
    got = read_labels(src)
    assert got.found and got.problem is None and got.runs == ["run_0", "run_1", "run_2", "run_3", "run_4"]
    assert got.missing(["run_0", "run_5"]) == ["run_5"]
    assert not read_labels("import glob\nruns = glob.glob('run_*')\n").found
    computed = read_labels('labels = {f"run_{i}": str(i) for i in range(9)}\n')
    assert computed.found and "computed" in computed.problem
    assert "not a string literal" in read_labels("k = 'run_1'\nlabels = {k: 'x'}\n").problem
    assert "does not parse" in read_labels("labels = {\n").problem
    assert "unpacks" in read_labels("labels = {**other}\n").problem


def test_plots_prompt_asks_for_each_run_in_labels_and_the_check_holds_it(folder, tmp_path):
    """Attempt 1 leaves plot.py as shipped: its figures are fine images, but run_1 is in none of them, so
    the figure check fails and says so; attempt 2 adds run_1 to labels and passes."""
    fixed = LABELS.replace('"Baseline",', '"Baseline",\n    "run_1": "Learning rate 0.05",')
    _script(folder, [RUN_1,
                     {"stage": "plots", "attempt": 1, "step": "edit", "response": "It already plots the runs."},
                     {"stage": "plots", "attempt": 2, "step": "fix",
                      "response": "Add run 1.\n\n" + blk(LABELS, fixed, "plot.py")},
                     {"stage": "plots", "step": "notes", "response": "Nothing to add."}])
    assert _run(folder, tmp_path, "experiments,plots") == 0
    ws = only_workspace(tmp_path / "sb")
    prompts = [e for e in events(ws, "exchange") if e["stage"] == "plots"]
    assert "add an entry to `labels` for each run above (run_0, run_1)" in prompts[0]["prompt"]
    assert "never hard-code run numbers" not in prompts[0]["prompt"]
    plots = [e for e in events(ws, "run_finished") if e["phase"] == "plot"]
    assert [p["status"] for p in plots] == ["failed", "ok"]
    assert any("labels dict does not name run_1" in r for r in plots[0]["reasons"])
    assert "does not name run_1" in prompts[1]["prompt"]  # fed back to the agent
    checks = [(a["ok"], a["detail"]) for a in events(ws, "artifact") if a["kind"] == "plot-labels"]
    assert checks == [(False, "attempt 1: missing run_1"), (True, "attempt 2: names run_0, run_1")]
    assert read_labels((ws / "plot.py").read_text()).runs == ["run_0", "run_1"]


def test_labels_never_added_ends_in_a_recorded_warning(folder, tmp_path):
    _script(folder, [RUN_1,
                     {"stage": "plots", "attempt": 1, "step": "edit", "response": "Fine as it is."},
                     {"stage": "plots", "attempt": 2, "step": "fix",
                      "response": "Compute it.\n\n" + blk(LABELS, 'labels = {f"run_{i}": str(i) for i in range(2)}',
                                                          "plot.py")},
                     {"stage": "plots", "attempt": 3, "step": "fix", "response": "A run folder has no label, maybe.\n\n"
                      + blk('labels = {f"run_{i}": str(i) for i in range(2)}', 'labels = {"run_0": "Baseline"}', "plot.py")}])
    assert _run(folder, tmp_path, "experiments,plots") == 0
    ws = only_workspace(tmp_path / "sb")
    plots = [e for e in events(ws, "run_finished") if e["phase"] == "plot"]
    assert [p["status"] for p in plots] == ["failed", "failed", "failed"]
    assert any("is computed" in r for r in plots[1]["reasons"])
    assert any("does not name run_1" in r for r in plots[2]["reasons"])
    warnings = [e["text"] for e in events(ws, "message") if e.get("level") == "warning" and e["stage"] == "plots"]
    assert any("no usable figure after 3 attempt(s)" in w and "labels" in w for w in warnings)
