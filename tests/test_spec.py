"""Bad input gets one line naming the file and the problem, exit code 2, and no workspace half-made."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TINY, blk, exp, make_idea, only_workspace, run_cli


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _no_workspace(sandbox):
    assert not sandbox.exists() or not any(sandbox.iterdir())


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"name": "x"}', "title: Field required"),
    ('{"name": "bad name!", "title": "t", "template": "tiny", "experiment": "e"}',
     "name: 'bad name!' is not a usable name: use 1 to 80 letters"),
    ('{"name": "x", "title": "t", "template": "tiny", "experiment": "e", "max_runs": 0}', "max_runs"),
    ('{"name": "x", "title": "t", "template": "tiny", "experiment": "e", "surprise": 1}', "surprise: Extra inputs"),
    ("[1, 2]", "list must hold one or more objects"),
])
def test_bad_idea_file(tmp_path, capsys, content, problem):
    path = tmp_path / "idea.json"
    if content is not None:
        path.write_text(content)
    assert run_cli("run", path, "--sandbox", tmp_path / "sb") == 2
    line = _one_error_line(capsys)
    assert str(path) in line and problem in line
    _no_workspace(tmp_path / "sb")


def test_unknown_template(tmp_path, capsys):
    path = tmp_path / "idea.json"
    path.write_text(json.dumps({"name": "x", "title": "t", "template": "no_such_template", "experiment": "e"}))
    assert run_cli("run", path, "--sandbox", tmp_path / "sb") == 2
    assert "no_such_template: unknown template" in _one_error_line(capsys)
    _no_workspace(tmp_path / "sb")


def test_manifest_error_and_missing_baseline(tmp_path, capsys, tiny_copy):
    idea = make_idea(tmp_path, [exp(1, 1, blk("LR = 0.05", "LR = 0.1"))], template=tiny_copy)
    (tiny_copy / "template.toml").write_text((tiny_copy / "template.toml").read_text().replace("results_file", "result_file"))
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 2
    line = _one_error_line(capsys)
    assert "template.toml" in line and "result_file" in line
    (tiny_copy / "template.toml").write_text((TINY / "template.toml").read_text())
    shutil.rmtree(tiny_copy / "run_0")
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 2
    assert "missing baseline" in _one_error_line(capsys)
    _no_workspace(tmp_path / "sb")


def test_transcript_that_does_not_fit(tmp_path, capsys):
    idea = make_idea(tmp_path, [exp(1, 1, "x")])
    tr = tmp_path / "tiny.transcript.jsonl"
    tr.write_text(tr.read_text().replace('"idea": "tiny"', '"idea": "other"'))
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 2
    assert "transcript is for idea 'other'" in _one_error_line(capsys)
    tr.write_text('{"transcript": 1}\n{"stage": "experiments", "response": 3}\n')
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 2
    assert "line 2" in _one_error_line(capsys)
    _no_workspace(tmp_path / "sb")


def test_no_model_and_no_transcript_says_how_to_name_one(tmp_path, capsys):
    path = tmp_path / "idea.json"
    path.write_text(json.dumps({"name": "x", "title": "t", "template": str(TINY), "experiment": "e"}))
    assert run_cli("run", path, "--sandbox", tmp_path / "sb") == 2
    assert "--model" in _one_error_line(capsys)


def test_ai_scientist_ideas_list_is_accepted_unchanged(tmp_path, capsys):
    tpl = tmp_path / "templates" / "tiny"
    shutil.copytree(TINY, tpl)
    ideas = [
        {"Name": "faster_rate", "Title": "A faster rate", "Experiment": "Raise the learning rate.",
         "Interestingness": 3, "Feasibility": 9, "Novelty": 2, "novel": True},
        {"Name": "more_steps", "Title": "More steps", "Experiment": "Train longer.", "Interestingness": 2},
    ]
    path = tpl / "ideas.json"
    path.write_text(json.dumps(ideas))
    assert run_cli("check", path) == 2
    assert "pick one with --idea NAME" in _one_error_line(capsys)
    assert run_cli("check", path, "--idea", "more_steps") == 0
    assert "idea 'more_steps' on template 'tiny'" in capsys.readouterr().out
    assert run_cli("check", path, "--idea", "nope") == 2
    assert "no idea named 'nope'" in _one_error_line(capsys)
    from orchestrator.spec import load_idea

    loaded = load_idea(path, idea_name="faster_rate")
    assert loaded.idea.template == str(tpl) and loaded.idea.extra["Interestingness"] == 3


def test_check_validates_without_running(tmp_path, capsys):
    idea = make_idea(tmp_path, [exp(1, 1, blk("LR = 0.05", "LR = 0.1"))])
    assert run_cli("check", idea) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: idea 'tiny'") and "transcript 1 line(s) (scripted)" in out
    assert not (tmp_path / "sandbox").exists()


def test_limits_per_idea_and_per_command(tmp_path):
    idea = make_idea(tmp_path, [exp(1, 1, blk("LR = 0.05", "LR = 0.1"))], max_runs=1,
                     limits={"max_attempts": 2, "smoke_timeout_s": 7})
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb", "--max-attempts", "3") == 0
    ws = only_workspace(tmp_path / "sb")
    head = json.loads((ws / ".orchestrate/journal.jsonl").read_text().splitlines()[0])
    assert head["limits"]["max_attempts"] == 3 and head["limits"]["smoke_timeout_s"] == 7
    assert head["limits"]["max_runs"] == 1 and head["limits"]["full_timeout_s"] == 30  # the template's
