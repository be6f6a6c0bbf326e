"""Claims in the paper held to the statistics of the runs' seeds and to the manifest's metric goals."""

from __future__ import annotations

import pytest
from conftest import TINY, blk, exp, make_idea, run_cli

from orchestrator.template import load_template


def test_the_tiny_manifest_declares_goals():
    goals = load_template(TINY).manifest.goals
    assert goals == {"eval.error": "min", "training.final_loss": "min"}  # eval.score: no goal


@pytest.mark.parametrize("table, problem", [
    ('"eval.error" = "lower"', "goals.eval.error: Input should be 'max' or 'min'"),
    ('"eval.nothing" = "min"', "'eval.nothing' is not one of key_metrics"),
])
def test_a_bad_goal_is_one_line_naming_template_toml(tmp_path, capsys, tiny_copy, table, problem):
    idea = make_idea(tmp_path, [exp(1, 1, blk("LR = 0.05", "LR = 0.1"))], template=tiny_copy)
    manifest = tiny_copy / "template.toml"
    manifest.write_text(manifest.read_text().split("[goals]")[0] + "[goals]\n" + table + "\n")
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(manifest) in lines[0] and problem in lines[0], lines[0]
    assert not (tmp_path / "sb").exists() or not any((tmp_path / "sb").iterdir())
