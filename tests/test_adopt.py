"""Adopting an AI Scientist template folder as it is (issue 15, item 1): the inferred manifest, the results
shapes mapped to metrics, `orchestrate adopt DIR`, and one line for a folder or results of neither kind."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tomllib

import pytest
from conftest import FIXTURES, run_cli

from orchestrator.adopt import infer, infer_manifest, kind_of, launcher_notes, map_results, write_manifest
from orchestrator.errors import TemplateError
from orchestrator.results import load_results, validate
from orchestrator.template import Manifest, load_template

AIS = FIXTURES / "ais_template"


@pytest.fixture
def ais(tmp_path):
    """A copy of the AI Scientist-form fixture (no template.toml, no run_0)."""
    dst = tmp_path / "gd_quadratic"
    shutil.copytree(AIS, dst)
    return dst


def _run(folder, out_dir: str) -> None:
    """The unmodified experiment, as AI Scientist's launcher runs it (a real subprocess)."""
    subprocess.run([sys.executable, "experiment.py", f"--out_dir={out_dir}"], cwd=folder, check=True, timeout=60)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_fixture_is_in_ai_scientist_form():
    assert not (AIS / "template.toml").exists() and not (AIS / "run_0").exists()
    assert kind_of(AIS) == "ai-scientist"


def test_inferred_manifest_without_a_baseline(ais):
    m = infer_manifest(ais)
    assert m.command == "python experiment.py --out_dir={out_dir}"
    assert m.command_for("run_3") == "python experiment.py --out_dir=run_3"
    assert m.plot_command == "python plot.py"
    assert m.editable == ["experiment.py", "plot.py", "notes.txt"]
    assert set(m.protected) == {"ideas.json", "latex/template.tex", "prompt.json", "seed_ideas.json", "template.toml"}
    assert m.key_metrics == [] and m.compare.keys == []
    assert not (ais / "template.toml").exists(), "inferring writes nothing into the user's folder"


def test_results_of_the_baseline_map_to_metrics(ais):
    _run(ais, "run_0")
    m, r = infer(ais)
    means = ["bowl.means.final_train_loss_mean", "bowl.means.total_train_time_mean",
             "ridge.means.final_train_loss_mean", "ridge.means.total_train_time_mean"]
    assert sorted(m.key_metrics) == means
    assert sorted(m.compare.keys) == ["bowl.means.final_train_loss_mean", "ridge.means.final_train_loss_mean"]
    assert {c.path for c in m.checks if c.finite} == set(means)
    assert r.spreads["bowl.means.final_train_loss_mean"] == "bowl.stderrs.final_train_loss_stderr"
    info = json.loads((ais / "run_0" / "final_info.json").read_text())
    assert r.seed_values["ridge.means.final_train_loss_mean"] == info["ridge"]["final_info_dict"]["final_train_loss"]
    assert len(r.seed_values["bowl.means.total_train_time_mean"]) == 3


def test_two_d_diffusion_shape_means_only():
    info = {"circle": {"means": {"training_time": 12.5, "eval_loss": 0.43, "inference_time": 0.2,
                                 "kl_divergence": 0.35}},
            "dino": {"means": {"training_time": 11.0, "eval_loss": 0.66, "inference_time": 0.2,
                               "kl_divergence": 1.1}, "stds": {"eval_loss": 0.01}}}
    r = map_results(info)
    assert len(r.key_metrics) == 8
    assert r.compare == ["circle.means.eval_loss", "circle.means.kl_divergence",
                         "dino.means.eval_loss", "dino.means.kl_divergence"]
    assert r.spreads == {"dino.means.eval_loss": "dino.stds.eval_loss"}
    assert r.seed_values == {}


@pytest.mark.parametrize("info", [
    {"eval_loss": 0.4},  # our flat shape, not AI Scientist's
    {"circle": {"eval_loss": 0.4}},  # no means
    {"circle": {"means": {"eval_loss": "low"}}},  # means not numbers
    [],  # not a dict
])
def test_results_of_neither_shape_are_one_problem(info):
    with pytest.raises(TemplateError, match="neither AI Scientist shape"):
        map_results(info, "run_0/final_info.json")


def test_adopt_writes_a_manifest_that_loads_and_validates(ais, capsys):
    _run(ais, "run_0")
    assert run_cli("adopt", ais) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "key_metrics" in out
    tpl = load_template(ais)  # the written template.toml is a valid manifest, run_0 its baseline
    m = tpl.manifest
    assert "template.toml" in m.protected
    baseline, err = load_results(ais / "run_0" / "final_info.json")
    assert err is None and validate(baseline, m).status == "ok"
    # a second unmodified run: its times differ, its losses do not -> the no-op is caught, times aside
    _run(ais, "run_1")
    again, _ = load_results(ais / "run_1" / "final_info.json")
    assert again["bowl"]["means"]["final_train_loss_mean"] == baseline["bowl"]["means"]["final_train_loss_mean"]
    verdict = validate(again, m, baseline=baseline)
    assert verdict.status == "degenerate" and "same-as-baseline" in verdict.kinds
    # a diverged run: a NaN mean is not finite
    again["ridge"]["means"]["final_train_loss_mean"] = math.nan
    assert "not-finite" in validate(again, m).kinds


def test_adopt_never_overwrites_and_show_writes_nothing(ais, capsys):
    assert run_cli("adopt", ais, "--show") == 0
    assert "run `python experiment.py --out_dir=run_0`" in capsys.readouterr().out
    assert not (ais / "template.toml").exists()
    write_manifest(ais)
    first = (ais / "template.toml").read_text()
    assert tomllib.loads(first)["command"] == "python experiment.py --out_dir={out_dir}"
    assert run_cli("adopt", ais) == 2
    assert "exists already" in _one_error_line(capsys)
    assert (ais / "template.toml").read_text() == first


def test_adopt_a_folder_of_neither_kind(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a template\n")
    assert run_cli("adopt", tmp_path) == 2
    assert "not a template of either kind" in _one_error_line(capsys)
    assert not (tmp_path / "template.toml").exists()
    assert run_cli("adopt", tmp_path / "missing") == 2
    assert "no such folder" in _one_error_line(capsys)


def test_adopt_a_baseline_of_neither_shape(ais, capsys):
    (ais / "run_0").mkdir()
    (ais / "run_0" / "final_info.json").write_text('{"eval_loss": 0.4}')
    assert run_cli("adopt", ais) == 2
    assert "neither AI Scientist shape" in _one_error_line(capsys)
    assert not (ais / "template.toml").exists()


@pytest.mark.parametrize("command", ["python experiment.py --out_dir run_0", "python experiment.py --out_dir=run_i",
                                     "python experiment.py --out_dir=run_{i}", "python experiment.py --out_dir={out_dir}"])
def test_ai_scientist_command_forms_are_accepted(command):
    m = Manifest(name="t", command=command, editable=["experiment.py"])
    assert m.command == "python experiment.py --out_dir={out_dir}"


def test_launcher_notes_start_as_ai_scientists():
    idea = json.loads((AIS / "ideas.json").read_text())[1]
    text = launcher_notes(idea["Title"], idea["Experiment"], {"bowl": {"means": {"loss": 0.5}, "stderrs": {}}})
    assert text.splitlines() == ["# Title: Heavy-ball momentum on a quadratic",
                                 "# Experiment description: Add momentum to the update and compare the final losses.",
                                 "## Run 0: Baseline", "Results: {'bowl': {'loss': 0.5}}",
                                 "Description: Baseline results."]


def test_check_takes_the_folder_as_it_is(tmp_path, capsys):
    folder = tmp_path / "templates" / "gd_quadratic"  # AI Scientist keeps ideas.json in templates/<name>/
    shutil.copytree(AIS, folder)
    assert run_cli("check", folder / "ideas.json", "--idea", "momentum") == 0
    assert "ok: idea 'momentum' on template 'gd_quadratic'" in capsys.readouterr().out
    assert not (folder / "template.toml").exists() and not (folder / "run_0").exists(), "check runs and writes nothing"
    assert not (tmp_path / "orch_home" / "baselines").exists()


def test_run_adopts_the_folder_makes_the_baseline_once_and_validates_a_run(tmp_path, capsys):
    from conftest import DONE, blk, events, only_workspace

    folder = tmp_path / "templates" / "gd_quadratic"
    shutil.copytree(AIS, folder)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    header = {"transcript": 1, "idea": "momentum", "template": "gd_quadratic", "note": "scripted: test"}
    lines = [{"stage": "experiments", "run": 1, "attempt": 1,
              "response": "Smaller learning rate.\n\n" + blk('parser.add_argument("--lr", type=float, default=0.1)',
                                                                 'parser.add_argument("--lr", type=float, default=0.05)')},
             {"stage": "experiments", "run": 2, "attempt": 1, "response": DONE}]
    (folder / "momentum.transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [header, *lines]))
    ideas = json.loads((folder / "ideas.json").read_text())
    ideas[1]["transcript"] = "momentum.transcript.jsonl"  # an AI Scientist entry may name its transcript
    (folder / "ideas.json").write_text(json.dumps(ideas))
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    sandbox = tmp_path / "sandbox"
    assert run_cli("run", folder / "ideas.json", "--idea", "momentum", "--sandbox", sandbox,
                   "--isolation", "auto", "--python", sys.executable, "--max-runs", "1") == 0
    out = capsys.readouterr().out
    assert "adopted the AI Scientist template gd_quadratic" in out and "key metrics 4" in out
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before, "the user's folder is only read"
    ws = only_workspace(sandbox)
    manifest = tomllib.loads((ws / "template.toml").read_text())
    assert manifest["command"] == "python experiment.py --out_dir={out_dir}"
    assert (ws / "run_0" / "final_info.json").is_file()
    assert [(r["run"], r["status"]) for r in events(ws, "run_recorded")] == [(1, "ok")]
    info = json.loads((ws / "run_1" / "final_info.json").read_text())
    base = json.loads((ws / "run_0" / "final_info.json").read_text())
    assert info["bowl"]["means"]["final_train_loss_mean"] != base["bowl"]["means"]["final_train_loss_mean"]
    assert len(list((tmp_path / "orch_home" / "baselines").glob("*/baseline.json"))) == 1


def test_a_folder_of_neither_kind_given_as_the_template(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    idea = tmp_path / "idea.json"
    idea.write_text(json.dumps({"name": "x", "title": "X", "template": str(tmp_path / "plain"), "experiment": "try"}))
    assert run_cli("check", idea) == 2
    assert "not a template of either kind" in _one_error_line(capsys)


@pytest.mark.parametrize("level", ["none", "auto"])
def test_baseline_made_once_under_the_runner_and_cached(ais, tmp_path, level):
    from orchestrator.adopt import make_baseline
    from orchestrator.sandbox import resolve

    before = sorted(p.relative_to(ais) for p in ais.rglob("*"))
    cache = tmp_path / "cache"
    b = make_baseline(ais, sys.executable, cache=cache, isolation=resolve(level))
    assert b.isolation == resolve(level)
    assert not b.cached and b.run_dir.is_relative_to(cache) and (b.run_dir / "all_results.json").is_file()
    assert sorted(p.relative_to(ais) for p in ais.rglob("*")) == before, "the user's folder is only read"
    assert "bowl.means.final_train_loss_mean" in b.results.key_metrics
    assert b.full_timeout_s() == round(3 * b.wall_s + 60, 1) and b.wall_s > 0
    again = make_baseline(ais, sys.executable, cache=cache, isolation=resolve(level))
    assert again.cached and again.key == b.key and again.wall_s == b.wall_s
    (ais / "experiment.py").write_text((ais / "experiment.py").read_text().replace("default=50", "default=40"))
    changed = make_baseline(ais, sys.executable, cache=cache, isolation=resolve(level))
    assert changed.key != b.key and not changed.cached


def test_a_failing_baseline_is_one_line_and_not_cached(ais, tmp_path):
    from orchestrator.adopt import make_baseline

    (ais / "experiment.py").write_text("import npeet_not_installed\n")
    cache = tmp_path / "cache"
    with pytest.raises(TemplateError, match="failed as the baseline.*npeet_not_installed"):
        make_baseline(ais, sys.executable, cache=cache)
    assert not list((cache / "baselines").glob("*/baseline.json"))
