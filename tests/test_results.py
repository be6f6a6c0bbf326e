"""The degenerate-result catalogue: each entry caught, named, and explained so the agent can act."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from orchestrator.results import code_files, code_unchanged, flatten, load_results, validate
from orchestrator.template import load_template

ROOT = Path(__file__).resolve().parent.parent
TINY = load_template(ROOT / "tests" / "fixtures" / "tiny").manifest


def info(steps=20, loss=0.1, error=0.5, planned=20):
    return {"training": {"steps_planned": planned, "steps_executed": steps, "final_loss": loss},
            "eval": {"error": error, "score": 1 / (1 + error)}}


def test_a_healthy_result_is_ok():
    v = validate(info(), TINY, baseline=info(loss=9.0, error=3.0))
    assert v.status == "ok" and v.reasons == [] and v.kinds == []
    assert v.metrics["eval.error"] == 0.5


def test_results_file_missing(tmp_path):
    data, err = load_results(tmp_path / "run_1" / "final_info.json")
    v = validate(data, TINY, load_error=err)
    assert v.status == "failed" and v.kinds == ["results-missing"]
    assert "was not written in run_1/" in v.reasons[0] and "must write it" in v.reasons[0]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe"])
def test_results_file_not_json_or_not_an_object(tmp_path, text):
    f = tmp_path / "final_info.json"
    f.write_bytes(text.encode("latin-1"))
    data, err = load_results(f)
    v = validate(data, TINY, load_error=err)
    assert v.status == "failed" and v.kinds == ["results-not-json"]


def test_required_key_missing():
    d = info()
    del d["eval"]["error"]
    v = validate(d, TINY)
    assert v.status == "failed" and v.kinds == ["key-missing"]
    assert "eval.error" in v.reasons[0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_infinite_metric(bad):
    v = validate(info(loss=bad), TINY)
    assert v.status == "degenerate" and "not-finite" in v.kinds
    assert any("training.final_loss" in r and "finite" in r for r in v.reasons)


def test_nan_survives_a_json_round_trip(tmp_path):
    f = tmp_path / "final_info.json"
    f.write_text(json.dumps(info(loss=math.nan)))  # json.dump writes NaN, json.loads reads it back
    data, err = load_results(f)
    assert err is None and validate(data, TINY).status == "degenerate"


def test_zero_steps_executed_via_the_manifest_check():
    v = validate(info(steps=0, loss=None), TINY)  # AI Scientist's 'training_steps': 0, 'final_loss': None
    assert v.status == "degenerate"
    assert any("training.steps_executed = 0 is below its minimum" in r and "no training step" in r for r in v.reasons)
    assert any("training.final_loss is null" in r for r in v.reasons)
    assert set(v.kinds) == {"check"}


def test_metric_outside_its_declared_range():
    v = validate(info(error=500.0, planned=20), TINY)  # max is 10 * training.steps_planned
    assert v.status == "degenerate" and v.kinds == ["check"]
    assert "above its maximum 10 * training.steps_planned" in v.reasons[0]
    assert validate(info(error=-2.0), TINY).reasons[0].startswith("eval.error = -2 is below its minimum")


def test_metrics_identical_to_the_baseline():
    base = info()
    v = validate(info(), TINY, baseline=base)
    assert v.status == "degenerate" and v.kinds == ["same-as-baseline"]
    assert "the change did nothing" in v.reasons[0]


def test_metrics_identical_to_the_previous_run():
    v = validate(info(), TINY, baseline=info(error=3.0, loss=9.0), previous=info())
    assert v.status == "degenerate" and v.kinds == ["same-as-previous"]


def test_smoke_runs_are_not_compared_with_the_baseline():
    assert validate(info(), TINY, baseline=info(), smoke=True).status == "ok"


def test_code_unchanged_reason_and_code_files():
    assert code_files(TINY) == ["experiment.py"]  # not plot.py (the plot script), not notes.txt
    why = code_unchanged(["experiment.py"], 2)
    assert "identical to run 2's" in why and "no edit was applied" in why


def test_flatten_keeps_numbers_only():
    assert flatten({"a": {"b": 1, "c": "x", "d": True}, "e": 2.5}) == {"a.b": 1, "e": 2.5}


def test_code_identical_to_the_previous_run_is_degenerate_through_the_judge(tmp_path):
    """The full pipeline check (execution.judge): run 2 whose code equals run 1's."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("fault_catalogue", ROOT / "benchmarks" / "faults" / "catalogue.py")
    cat = sys.modules.get("fault_catalogue") or importlib.util.module_from_spec(spec)
    if "fault_catalogue" not in sys.modules:
        sys.modules["fault_catalogue"] = cat
        spec.loader.exec_module(cat)
    out = cat.run_fault(cat.by_file("no_edit"), tmp_path, isolation="none")
    assert out.verdict == "degenerate"
    assert any("no edit was applied" in r for r in out.reasons)
