"""Seeds in the run path: a full run's seeds run together and are judged one by one, the run's verdict is
their aggregate (min_ok), run_i holds the mean and seeds.json, a killed orchestrator resumes only the
missing seeds, and bad seed settings are one line and exit 2."""

from __future__ import annotations

import json
import signal
import statistics
from pathlib import Path

import pytest
from conftest import DONE, blk, cli_subprocess, events, exp, make_idea, only_workspace, run_cli

from orchestrator import executors, sandbox
from orchestrator.executors import LocalExecutor
from orchestrator.runner import RunSpec

SEEDED = """
[seeds]
count = 3
env = "ORCHESTRATE_SEED"
"""
# the seed moves where descent starts, so each seed's error differs
SEED_START = blk("    w, executed, loss = train(steps, LR)",
                 "    w, executed, loss = train(steps, LR + 0.001 * (1 + int(os.environ.get('ORCHESTRATE_SEED', '0'))))")
CRASH_SEED_1 = blk("    steps = 2 if smoke else STEPS",
                   "    steps = 2 if smoke else STEPS\n"
                   "    if not smoke and os.environ.get('ORCHESTRATE_SEED') == '1':\n"
                   "        raise RuntimeError('seed one fails')")


@pytest.fixture
def seeded(tiny_copy: Path) -> Path:
    with open(tiny_copy / "template.toml", "a") as fh:
        fh.write(SEEDED)
    return tiny_copy


def _full(ws: Path) -> list[dict]:
    return [e for e in events(ws, "run_finished") if e["phase"] == "full"]


@pytest.mark.parametrize("isolation", ["none", "bwrap"])
def test_a_full_run_has_three_seeds_judged_each_and_the_mean_in_its_folder(tmp_path, seeded, isolation):
    if isolation == "bwrap" and not sandbox.bwrap_available():
        pytest.skip(f"needs bwrap: {sandbox.bwrap_problem()}")
    idea = make_idea(tmp_path, [exp(1, 1, SEED_START), exp(2, 1, DONE)], template=seeded, max_runs=2,
                     limits={"isolation": isolation})
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    smoke = [e for e in events(ws, "run_started") if e["phase"] == "smoke"]
    assert [e["seed"] for e in smoke] == [0]  # smoke runs stay single-seed
    fulls = _full(ws)
    assert sorted(e["seed"] for e in fulls) == [0, 1, 2] and all(e["status"] == "ok" for e in fulls)
    assert sorted(e["out_dir"] for e in fulls) == ["run_1/seed_0", "run_1/seed_1", "run_1/seed_2"]
    (agg,) = events(ws, "run_aggregated")
    assert (agg["status"], agg["seeds_ok"], agg["seeds_failed"], agg["min_ok"]) == ("ok", [0, 1, 2], [], 3)
    errors = [e["metrics"]["eval.error"] for e in sorted(fulls, key=lambda e: e["seed"])]
    assert len(set(errors)) == 3  # the seed reached the experiment
    mean = json.loads((ws / "run_1" / "final_info.json").read_text())
    assert mean["eval"]["error"] == pytest.approx(statistics.mean(errors))
    assert agg["metrics"]["eval.error"] == pytest.approx(statistics.mean(errors))
    table = json.loads((ws / "run_1" / "seeds.json").read_text())["eval.error"]
    assert table["values"] == pytest.approx(errors) and table["n"] == 3
    assert table["sd"] == pytest.approx(statistics.stdev(errors))
    assert table["se"] == pytest.approx(statistics.stdev(errors) / 3**0.5)
    assert table["ci95"][0] < table["mean"] < table["ci95"][1]
    (rec,) = events(ws, "run_recorded")
    assert rec["status"] == "ok" and rec["metrics"]["eval.error"] == pytest.approx(statistics.mean(errors))


@pytest.mark.parametrize("min_ok", [None, 2])
def test_a_failing_seed_fails_the_run_unless_min_ok_allows_it(tmp_path, seeded, min_ok):
    lines = [exp(1, 1, SEED_START + CRASH_SEED_1), exp(2, 1, DONE)]
    idea = make_idea(tmp_path, lines, template=seeded, max_runs=1, limits={"max_attempts": 1})
    if min_ok:
        spec = json.loads(idea.read_text())
        spec["seeds"] = {"count": 3, "min_ok": min_ok}
        idea.write_text(json.dumps(spec))
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    (agg,) = events(ws, "run_aggregated")
    assert agg["seeds_ok"] == [0, 2] and agg["seeds_failed"] == [1]
    (rec,) = events(ws, "run_recorded")
    if min_ok:
        assert agg["status"] == rec["status"] == "ok" and agg["min_ok"] == 2
        assert json.loads((ws / "run_1" / "seeds.json").read_text())["eval.error"]["n"] == 2
    else:
        assert agg["status"] == rec["status"] == "failed"
        assert agg["reasons"][0] == "2 of 3 seeds are ok; a result needs 3"
        assert any(r.startswith("seed 1: exited with code 1: RuntimeError: seed one fails") for r in agg["reasons"])
        assert not (ws / "run_1").exists()  # not a result: its folder is out of plot.py's way


def test_a_killed_orchestrator_resumes_only_the_missing_seeds(tmp_path, seeded):
    idea = make_idea(tmp_path, [exp(1, 1, SEED_START), exp(2, 1, DONE)], template=seeded, max_runs=2)
    # killed right after the first seed's full verdict (the smoke run's is the first verdict)
    proc = cli_subprocess("run", idea, "--sandbox", tmp_path / "sb", env={"ORCHESTRATE_FAULT": "after:run_finished:2"})
    assert proc.returncode == -signal.SIGKILL
    ws = only_workspace(tmp_path / "sb")
    before = {e["seed"] for e in _full(ws)}
    assert len(before) == 1
    assert cli_subprocess("resume", ws).returncode == 0
    fulls = _full(ws)
    assert sorted(e["seed"] for e in fulls) == [0, 1, 2]  # each seed judged once
    started = [e["seed"] for e in events(ws, "run_started") if e["phase"] == "full"]
    (done_before,) = before
    assert started.count(done_before) == 1  # the judged seed was not run again
    (agg,) = events(ws, "run_aggregated")
    assert agg["status"] == "ok" and agg["seeds_ok"] == [0, 1, 2]
    assert (ws / "run_1" / f"seed_{done_before}" / "final_info.json").is_file()  # kept through the resume


def test_local_slots_bound_how_many_runs_go_at_once(tmp_path):
    code = "import time; t = time.time(); time.sleep(1); print(t, time.time())"
    specs = []
    for i in range(2):
        (tmp_path / f"s{i}.py").write_text(code)
        specs.append(RunSpec(argv=["python3", f"s{i}.py"], cwd=tmp_path, log_dir=tmp_path / f"log{i}", timeout_s=30))
    ex = LocalExecutor(slots=1)
    recs = [ex.wait(h) for h in [ex.submit(s) for s in specs]]
    (a0, a1), (b0, b1) = ([float(x) for x in Path(r.stdout_path).read_text().split()] for r in recs)
    assert a1 <= b0 or b1 <= a0  # one after the other
    stop_all = executors.run(LocalExecutor(slots=2), specs[0])
    assert stop_all.ok


def _one_line_exit_2(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in err[0], err[0]


def test_bad_seed_settings_are_one_line_and_exit_2(tmp_path, seeded, tiny_copy):
    idea = make_idea(tmp_path, [exp(1, 1, DONE)], template=seeded)
    _one_line_exit_2(cli_subprocess("run", idea, "--sandbox", tmp_path / "sb", "--seeds", "0"),
                     "--seeds: must be 1 or more, not 0")
    _one_line_exit_2(cli_subprocess("run", idea, "--sandbox", tmp_path / "sb", "--seeds", "-2"),
                     "--seeds: must be 1 or more, not -2")
    spec = json.loads(idea.read_text())
    spec["seeds"] = {"count": 2, "min_ok": 3}
    idea.write_text(json.dumps(spec))
    _one_line_exit_2(cli_subprocess("run", idea, "--sandbox", tmp_path / "sb"), "min_ok")
    assert not (tmp_path / "sb").exists() or not any((tmp_path / "sb").iterdir())  # no half-made workspace


def test_more_seeds_than_the_template_can_pass_is_a_manifest_error(tmp_path):
    import shutil

    from conftest import TINY

    plain = tmp_path / "plain"
    shutil.copytree(TINY, plain)
    idea = make_idea(tmp_path, [exp(1, 1, DONE)], template=plain)
    _one_line_exit_2(cli_subprocess("run", idea, "--sandbox", tmp_path / "sb", "--seeds", "3"), "template.toml",
                     "{seed}")
    with open(plain / "template.toml", "a") as fh:
        fh.write("\n[seeds]\ncount = 3\n")
    _one_line_exit_2(cli_subprocess("run", idea, "--sandbox", tmp_path / "sb"), "template.toml", "seeds")


def test_replay_compares_every_seed_and_the_mean(tmp_path, seeded):
    idea = make_idea(tmp_path, [exp(1, 1, SEED_START), exp(2, 1, DONE)], template=seeded, max_runs=2)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert run_cli("replay", ws, "--sandbox", tmp_path / "again") == 0
    report = json.loads((only_workspace(tmp_path / "again") / ".orchestrate" / "replay.json").read_text())
    errors = {d["seed"]: d for d in report["deltas"] if d["metric"] == "eval.error"}
    assert set(errors) == {None, 0, 1, 2} and all(d["ok"] for d in errors.values())
    assert report["divergences"] == []


POISON_SIBLING = blk("    steps = 2 if smoke else STEPS",
                     "    steps = 2 if smoke else STEPS\n"
                     "    if not smoke:\n"
                     "        other = (int(os.environ['ORCHESTRATE_SEED']) + 1) % 3\n"
                     "        try:\n"
                     "            target = os.path.join(os.path.dirname(args.out_dir), f'seed_{other}', 'poison.txt')\n"
                     "            open(target, 'w').write('x')\n"
                     "        except OSError:\n"
                     "            pass")


def test_under_bwrap_a_seed_cannot_write_its_siblings_folders(tmp_path, seeded):
    if not sandbox.bwrap_available():
        pytest.skip(f"needs bwrap: {sandbox.bwrap_problem()}")
    idea = make_idea(tmp_path, [exp(1, 1, SEED_START + POISON_SIBLING), exp(2, 1, DONE)], template=seeded, max_runs=2,
                     limits={"isolation": "bwrap"})
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    (agg,) = events(ws, "run_aggregated")
    assert agg["status"] == "ok"
    assert not list((ws / "run_1").rglob("poison.txt"))
