"""Sealed evaluation (issue 11): every attack of an adversarial experiment, on the tiny_eval template
(a [prepare] step and an [evaluate] step that recomputes the metrics from the weights a run saved),
contained — under bwrap, and under isolation none where the orchestrator can contain it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, blk, cli_subprocess, events, exp, make_idea, only_workspace, run_cli

from orchestrator import sandbox

TINY_EVAL = FIXTURES / "tiny_eval"
BWRAP = sandbox.bwrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP is not None, reason=f"needs bwrap: {BWRAP}")
HONEST = blk("STEPS = 20", "STEPS = 60")


@pytest.fixture
def outside():
    """A folder outside /tmp (bwrap's private /tmp would hide it anyway) and outside the workspace: what
    an attack reaches for. Removed afterwards."""
    Path("/var/tmp").mkdir(exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="orchestrate-sealed-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _run(tmp_path, lines, *, isolation="bwrap", max_runs=1, template=TINY_EVAL):
    idea = make_idea(tmp_path, lines, name="sealed", max_runs=max_runs, limits={"isolation": isolation, "max_attempts": 1},
                     template=template)
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    return only_workspace(tmp_path / "sb")


def _full(ws, run=1):
    return [e for e in events(ws, "run_finished") if e["phase"] == "full" and e["run"] == run][-1]


def _last(ws, run=1):
    """The run's last verdict (its smoke run's, when that was not ok)."""
    return [e for e in events(ws, "run_finished") if e["run"] == run][-1]


def _attack(body: str) -> str:
    """An edit that runs `body` (Python, at the start of main) before the honest experiment."""
    return blk("    args = parser.parse_args()\n", "    args = parser.parse_args()\n" + body)


@needs_bwrap
def test_honest_run_is_evaluated_and_its_claims_kept_as_reported(tmp_path):
    ws = _run(tmp_path, [exp(1, 1, HONEST)])
    prep = events(ws, "prepared")
    assert [p["status"] for p in prep] == ["ok"]
    base = events(ws, "baseline_recorded")[0]
    assert base["evaluation"] == "evaluated" and "eval.heldout_mse" in base["metrics"]
    fin = _full(ws)
    assert fin["status"] == "ok" and fin["evaluation"] == "evaluated", fin["reasons"]
    assert fin["metrics"]["reported.eval.error"] == pytest.approx(fin["metrics"]["eval.error"])
    assert "eval.heldout_mse" in fin["metrics"]  # only the evaluator computes it
    assert fin["eval_wall_s"] > 0
    (agg,) = events(ws, "run_aggregated")  # the run's verdict over its seeds records its folder's files
    assert "final_info.json" in agg["outputs"] and "weights.json" in agg["outputs"]
    on_disk = json.loads((ws / "run_1" / "final_info.json").read_text())
    assert on_disk["eval"]["heldout_mse"] == fin["metrics"]["eval.heldout_mse"]  # readers of run_1/ see evaluated metrics
    assert "Metrics: evaluated" in (ws / "notes.txt").read_text()
    assert events(ws, "run_recorded")[0]["evaluation"] == "evaluated"
    shown = cli_subprocess("show", ws)
    assert shown.returncode == 0 and "(evaluated)" in shown.stdout, shown.stdout
    assert cli_subprocess("report", ws, "-o", tmp_path / "r.html").returncode == 0
    assert "(evaluated)" in (tmp_path / "r.html").read_text()


@needs_bwrap
def test_fabricated_results_without_training_are_misreported(tmp_path):
    fake = ("    save_weights(args.out_dir, 0.0)\n"
            "    write_results(args.out_dir, {'training': {'steps_planned': 60, 'steps_executed': 60, 'final_loss': 1e-4},\n"
            "                                 'eval': {'error': 0.001, 'score': 0.999}, 'config': {}})\n"
            "    raise SystemExit(0)\n")
    ws = _run(tmp_path, [exp(1, 1, _attack(fake))])
    fin = _last(ws)
    assert fin["status"] == "misreported"
    assert fin["reasons"][0].startswith("eval.error: the run reported 0.001, but the evaluator computes 3")
    assert events(ws, "run_recorded")[0]["status"] == "misreported"
    assert "MISREPORTED" in (ws / "notes.txt").read_text()


@needs_bwrap
def test_monkeypatched_yardstick_in_process_is_irrelevant(tmp_path):
    patch = ("    import harness\n"
             "    harness.evaluate = lambda w: {'error': 0.0, 'score': 1.0}\n"
             "    globals()['evaluate'] = harness.evaluate\n")
    ws = _run(tmp_path, [exp(1, 1, HONEST + _attack(patch))])
    fin = _last(ws)
    assert fin["status"] == "misreported", fin["reasons"]
    assert fin["metrics"]["eval.error"] > 0.0 and fin["metrics"]["reported.eval.error"] == 0.0


@pytest.mark.parametrize("level", ["bwrap", "none"])
def test_cache_poisoning_fails_or_is_undone(tmp_path, level):
    if level == "bwrap" and BWRAP is not None:
        pytest.skip(f"needs bwrap: {BWRAP}")
    poison = ("    import pathlib\n"
              "    try:\n"
              "        (pathlib.Path(os.environ['ORCHESTRATE_CACHE_DIR']) / 'target.json').write_text('{\"target\": 0.0}')\n"
              "        print('POISONED')\n"
              "    except OSError as exc:\n"
              "        print('refused:', exc)\n")
    ws = _run(tmp_path, [exp(1, 1, HONEST + _attack(poison))], isolation=level)
    cache = Path(events(ws, "prepared")[0]["cache_dir"])
    assert json.loads((cache / "target.json").read_text()) == {"target": 3.0}
    if level == "bwrap" or os.geteuid() != 0:  # read-only (bind, or modes for an ordinary user): the write fails
        fin = _full(ws)
        assert fin["status"] == "ok", fin["reasons"]
        assert "refused:" in (ws / fin["log_dir"] / "stdout.txt").read_text()
    else:  # root ignores the cache's read-only modes: the change is caught, the cache rebuilt, the run rejected
        fin = _last(ws)
        assert fin["status"] == "tampered"
        assert any("the data cache was changed" in r for r in fin["reasons"])
        assert [(p["status"], p["reused"]) for p in events(ws, "prepared")] == [("ok", False), ("ok", False)]


@needs_bwrap
def test_user_config_with_a_provider_key_is_unreachable(tmp_path, outside, monkeypatch):
    home = outside / "home"
    (home / ".cache" / "orchestrator").mkdir(parents=True)
    (home / ".cache" / "orchestrator" / "config.toml").write_text('[env]\nOPENAI_API_KEY = "sk-sealed-SECRET-42"\n')
    monkeypatch.setenv("HOME", str(home))
    steal = (f"    for p in [{str(home / '.cache/orchestrator/config.toml')!r},"
             " os.path.expanduser('~/.cache/orchestrator/config.toml')]:\n"
             "        try:\n"
             "            print('STOLEN', open(p).read())\n"
             "        except OSError as exc:\n"
             "            print('unreachable:', type(exc).__name__)\n")
    ws = _run(tmp_path, [exp(1, 1, HONEST + _attack(steal))])
    assert _full(ws)["status"] == "ok"
    leaked = [p for p in ws.rglob("*") if p.is_file() and b"sk-sealed-SECRET-42" in p.read_bytes()]
    assert leaked == []
    assert "unreachable:" in (ws / _full(ws)["log_dir"] / "stdout.txt").read_text()


@needs_bwrap
def test_notes_replaced_by_a_symlink_out_of_the_workspace_is_never_followed(tmp_path, outside):
    target = outside / "host_file.txt"
    target.write_text("the user's file\n")
    link = f"    os.remove('notes.txt')\n    os.symlink({str(target)!r}, 'notes.txt')\n"
    ws = _run(tmp_path, [exp(1, 1, HONEST + _attack(link))])
    assert target.read_text() == "the user's file\n"
    notes = ws / "notes.txt"
    assert not notes.is_symlink() and "## Run 1" in notes.read_text()
    assert any("notes.txt was not followed" in m["text"] for m in events(ws, "message"))


@pytest.mark.parametrize("level", ["bwrap", "none"])
def test_rewritten_baseline_and_earlier_results_are_contained(tmp_path, level):
    if level == "bwrap" and BWRAP is not None:
        pytest.skip(f"needs bwrap: {BWRAP}")
    rewrite = ("    import json as _j\n"
               "    for r in ('run_0', 'run_1'):\n"
               "        try:\n"
               "            with open(r + '/final_info.json', 'w') as fh:\n"
               "                _j.dump({'eval': {'error': 99.0}}, fh)\n"
               "            open(r + '/planted.txt', 'w').write('x')\n"
               "        except OSError as exc:\n"
               "            print('refused', r, exc)\n")
    second = blk("STEPS = 60", "STEPS = 90") + _attack(rewrite)
    # an honest run after the attack (which it takes out again): not blamed for it
    third = (blk("STEPS = 90", "STEPS = 120")
             + blk("    args = parser.parse_args()\n" + rewrite, "    args = parser.parse_args()\n"))
    ws = _run(tmp_path, [exp(1, 1, HONEST), exp(2, 1, second), exp(3, 1, third)], isolation=level, max_runs=3)
    base = json.loads((ws / "run_0" / "final_info.json").read_text())
    run1 = json.loads((ws / "run_1" / "final_info.json").read_text())
    assert base["eval"]["error"] != 99.0 and run1["eval"]["error"] != 99.0
    assert not (ws / "run_0" / "planted.txt").exists() and not (ws / "run_1" / "planted.txt").exists()
    assert _full(ws, 3)["status"] == "ok", _last(ws, 3)["reasons"]
    smoke2 = [e for e in events(ws, "run_finished") if e["run"] == 2][0]
    if level == "bwrap" or os.geteuid() != 0:  # read-only (bind, or modes for an ordinary user): the writes failed
        assert smoke2["status"] == "ok" and _full(ws, 2)["status"] == "ok"
    else:
        assert smoke2["status"] == "tampered"
        assert any("of a recorded run was changed" in r for r in smoke2["reasons"])
    assert _full(ws, 1)["status"] == "ok"


def test_git_hook_under_isolation_none_is_never_run_and_the_run_is_tampered(tmp_path, outside):
    marker = outside / "hook_ran"
    hook = ("    import stat\n"
            f"    open('.git/hooks/pre-commit', 'w').write('#!/bin/sh\\ntouch {marker}\\n')\n"
            "    os.chmod('.git/hooks/pre-commit', 0o755)\n"
            "    with open('.git/config', 'a') as fh:\n"
            f"        fh.write('[core]\\n\\thooksPath = .git/hooks\\n\\tfsmonitor = \"touch {marker}\"\\n')\n")
    ws = _run(tmp_path, [exp(1, 1, HONEST + _attack(hook))], isolation="none")
    smoke = [e for e in events(ws, "run_finished") if e["phase"] == "smoke"][0]
    assert smoke["status"] == "tampered"
    assert any(".git/" in r for r in smoke["reasons"])
    assert not marker.exists()
    assert not (ws / ".git" / "hooks" / "pre-commit").exists()
    assert "hooksPath" not in (ws / ".git" / "config").read_text()


def test_malformed_evaluate_section_is_one_line_naming_the_manifest(tmp_path):
    bad = tmp_path / "tiny_eval"
    shutil.copytree(TINY_EVAL, bad)
    toml = bad / "template.toml"
    toml.write_text(toml.read_text().replace("rtol = 0.01", "rtol = 0.01\nbogus = 1"))
    idea = make_idea(tmp_path, [], template=bad)
    cp = cli_subprocess("check", idea)
    assert cp.returncode == 2
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and "template.toml" in lines[0] and "evaluate.bogus" in lines[0], cp.stderr
    toml.write_text(toml.read_text().replace("bogus = 1", "").replace("--out={out}", "--out={outfile}"))
    cp = cli_subprocess("check", idea)
    assert cp.returncode == 2 and "unknown placeholder {outfile}" in cp.stderr and "template.toml" in cp.stderr
    good = cli_subprocess("check", make_idea(tmp_path, [], template=TINY_EVAL))
    assert good.returncode == 0 and "evaluated by: python harness.py evaluate" in good.stdout


@pytest.mark.parametrize("level", ["bwrap", "none"])
def test_crashing_evaluator_is_a_failed_verdict_with_its_exception(tmp_path, level):
    if level == "bwrap" and BWRAP is not None:
        pytest.skip(f"needs bwrap: {BWRAP}")
    no_weights = blk("    save_weights(args.out_dir, w)\n", "")
    ws = _run(tmp_path, [exp(1, 1, HONEST + no_weights)], isolation=level)
    smoke = [e for e in events(ws, "run_finished") if e["phase"] == "smoke"][0]
    assert smoke["status"] == "failed"
    assert smoke["reasons"][0].startswith("the evaluator failed: FileNotFoundError"), smoke["reasons"]
    assert "Traceback" not in smoke["reasons"][0]


def test_files_of_a_recorded_run_changed_afterwards_are_flagged_by_the_integrity_review(tmp_path):
    from orchestrator.execution import recorded_outputs
    from orchestrator.journal import Journal
    from orchestrator.paper.integrity import changed_run_files

    ws = _run(tmp_path, [exp(1, 1, HONEST)], isolation="none")
    recorded = recorded_outputs(Journal(ws / ".orchestrate" / "journal.jsonl"))
    assert set(recorded) == {"run_0", "run_1"}
    assert changed_run_files(ws, recorded) == []
    (ws / "run_1" / "final_info.json").write_text('{"eval": {"error": 0.0}}')
    (ws / "run_0" / "extra.json").write_text("{}")
    found = changed_run_files(ws, recorded)
    assert [(f.kind, f.where) for f in found] == [("changed-run-files", "run_0"), ("changed-run-files", "run_1")]
    assert "run_1/final_info.json changed after the run was recorded" in found[1].message


def test_the_orchestrator_never_reads_or_writes_through_a_link(tmp_path, outside):
    from orchestrator.errors import UnsafePath
    from orchestrator.paths import readable, safe_path, writable

    secret = outside / "secret.txt"
    secret.write_text("host secret\n")
    root = tmp_path / "ws"
    (root / "latex").mkdir(parents=True)
    (root / "paper.pdf").symlink_to(secret)
    (root / "fig.png").symlink_to(secret)
    (root / "out").symlink_to(outside, target_is_directory=True)
    assert readable(root, "fig.png") is None and readable(root, "out/secret.txt") is None
    with pytest.raises(UnsafePath, match="symbolic link"):
        safe_path(root, "out/secret.txt")
    with pytest.raises(UnsafePath, match="leaves the workspace"):
        safe_path(root, "../x")
    writable(root, "paper.pdf").write_text("the orchestrator's own file")
    assert secret.read_text() == "host secret\n" and not (root / "paper.pdf").is_symlink()
    with pytest.raises(UnsafePath):
        writable(root, "out/new.txt")
    os.link(secret, root / "hard.txt")
    assert readable(root, "hard.txt") is None
    writable(root, "hard.txt").write_text("fresh")
    assert secret.read_text() == "host secret\n"


def test_without_an_evaluator_every_run_is_self_reported(tmp_path):
    ws = _run(tmp_path, [exp(1, 1, blk("STEPS = 20", "STEPS = 60"))], isolation="none", template=FIXTURES / "tiny")
    assert _full(ws)["evaluation"] == "self-reported" and _full(ws)["status"] == "ok"
    assert events(ws, "baseline_recorded")[0]["evaluation"] == "self-reported"
    assert "Metrics: self-reported" in (ws / "notes.txt").read_text()
    assert "(self-reported)" in cli_subprocess("show", ws).stdout


def test_the_eval_seed_is_hidden_from_experiments_under_bwrap(tmp_path):
    if BWRAP is not None:
        pytest.skip(f"needs bwrap: {BWRAP}")
    peek = ("    for p in ['.orchestrate/eval_seed', '.orchestrate/journal.jsonl']:\n"
            "        print(p, 'visible' if os.path.exists(p) else 'hidden')\n"
            "    print('seed-env', os.environ.get('ORCHESTRATE_EVAL_SEED'))\n")
    ws = _run(tmp_path, [exp(1, 1, HONEST + _attack(peek))])
    out = (ws / _full(ws)["log_dir"] / "stdout.txt").read_text()
    assert ".orchestrate/eval_seed hidden" in out and ".orchestrate/journal.jsonl hidden" in out
    assert "seed-env None" in out
    assert (ws / ".orchestrate" / "eval_seed").read_text().strip().isdigit()


def test_git_never_runs_a_hook_or_fsmonitor_the_workspace_configured(tmp_path, outside):
    """Even when a planted hook and config survive (no run to check them), the orchestrator's own git
    calls run none of them."""
    from orchestrator.workspace import Workspace

    ws = _run(tmp_path, [exp(1, 1, HONEST)], isolation="none")
    marker = outside / "ran"
    hook = ws / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    with open(ws / ".git" / "config", "a") as fh:
        fh.write(f'[core]\n\thooksPath = .git/hooks\n\tfsmonitor = "touch {marker}.fsmonitor"\n'
                 f'\tpager = "touch {marker}.pager"\n')
    (ws / "new.txt").write_text("x")
    w = Workspace(ws)
    w.commit("a commit with a planted hook")
    w.diff("HEAD~1", "HEAD")
    assert list(outside.iterdir()) == []


def test_prepare_runs_once_per_cache_key_and_later_workspaces_reuse_it(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _run(tmp_path / "a", [exp(1, 1, HONEST)], isolation="none")
    second = _run(tmp_path / "b", [exp(1, 1, HONEST)], isolation="none")
    a, b = events(first, "prepared"), events(second, "prepared")
    assert [(p["status"], p["reused"]) for p in a] == [("ok", False)]
    assert [(p["status"], p["reused"]) for p in b] == [("ok", True)] and b[0]["cache_dir"] == a[0]["cache_dir"]


def test_a_failing_prepare_is_one_clear_line_naming_its_command(tmp_path):
    bad = tmp_path / "tiny_eval"
    shutil.copytree(TINY_EVAL, bad)
    harness = bad / "harness.py"
    harness.write_text(harness.read_text().replace('    if a.step == "prepare":\n',
                                                   '    if a.step == "prepare":\n        raise RuntimeError("no corpus here")\n'))
    idea = make_idea(tmp_path, [exp(1, 1, HONEST)], template=bad)
    cp = cli_subprocess("run", idea, "--sandbox", tmp_path / "sb")
    assert cp.returncode == 1
    last = cp.stderr.strip().splitlines()[-1]
    assert "prepare step `python harness.py prepare --cache_dir={cache_dir}` failed: RuntimeError: no corpus here" in last
    assert "Traceback" not in cp.stderr


def _cluster_up() -> bool:
    try:
        cp = subprocess.run(["sinfo", "-h", "-o", "%t"], check=False, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return cp.returncode == 0 and any(s.strip("*~#") in ("idle", "mix", "alloc") for s in cp.stdout.split())


@pytest.mark.skipif(not _cluster_up(), reason="no Slurm cluster answers sinfo (CI: scripts/slurm-cluster start)")
def test_on_slurm_prepare_and_the_evaluator_are_jobs_of_the_same_executor(tmp_path):
    pytest.importorskip("submitit")
    idea = make_idea(tmp_path, [exp(1, 1, HONEST)], name="sealed_slurm", max_runs=1, template=TINY_EVAL,
                     limits={"isolation": "none", "max_attempts": 1})
    cp = cli_subprocess("run", idea, "--executor", "slurm", "--sandbox", tmp_path / "sb", timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    ws = only_workspace(tmp_path / "sb")
    fin = _full(ws)
    assert fin["status"] == "ok" and fin["evaluation"] == "evaluated", fin["reasons"]
    for key in ("prepare", "run_0:evaluate", "smoke_run_1_attempt_1:evaluate", "run_1:evaluate"):
        for _ in range(30):  # accounting may lag the job's end by a moment
            rows = subprocess.run(["sacct", "-X", "-n", "-P", "--name", f"orch:{ws.name}:{key}", "-o", "State"],
                                  capture_output=True, text=True, timeout=30).stdout.split()
            if rows:
                break
            time.sleep(1)
        assert rows == ["COMPLETED"], (key, rows)


def test_a_replay_is_evaluated_on_the_same_held_out_data(tmp_path):
    ws = _run(tmp_path, [exp(1, 1, HONEST)], isolation="none")
    assert run_cli("replay", ws, "--sandbox", tmp_path / "replayed") == 0
    again = only_workspace(tmp_path / "replayed")
    assert (again / ".orchestrate" / "eval_seed").read_text() == (ws / ".orchestrate" / "eval_seed").read_text()
    assert _full(again)["metrics"]["eval.heldout_mse"] == _full(ws)["metrics"]["eval.heldout_mse"]


def test_the_sealed_root_binds_no_home_and_passes_gpu_device_nodes(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sandbox, "gpu_devices", lambda: ["/dev/nvidia0", "/dev/nvidiactl"])
    ws = tmp_path / "ws"
    ws.mkdir()
    argv = sandbox.bwrap_argv([sys.executable, "-c", "pass"], cwd=ws, writable=[ws])
    pairs = list(zip(argv, argv[1:], argv[2:]))
    assert ("--ro-bind", "/", "/") not in pairs
    bound = {b for a, b, _ in pairs if a in ("--bind", "--ro-bind")}
    for home in sandbox.homes():
        assert not any(home.is_relative_to(b) for b in map(Path, bound) if b != Path("/dev/null")), (home, bound)
    assert ("--dev-bind-try", "/dev/nvidia0", "/dev/nvidia0") in pairs
    masked = any(a == "--ro-bind" and b == "/dev/null" and c == "/etc/shadow" for a, b, c in pairs)
    assert masked or not Path("/etc/shadow").exists()
