"""Runs of an adopted AI Scientist folder (issue 15): notes.txt as AI Scientist's launcher starts it, the
arrays and pickles plot.py reads committed with the run (a file over the cap kept out of the history), a smoke
run that fits a script ignoring ORCHESTRATE_SMOKE ([smoke] time and args), and replay of an ideas.json entry
that names its transcript."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import pytest
from conftest import DONE, FIXTURES, blk, events, only_workspace, run_cli

from orchestrator.template import Smoke

AIS = FIXTURES / "ais_template"

# Appended to the fixture's experiment: a second of work, then what grokking's and 2d_diffusion's plot.py read.
SLOW_AND_ARRAYS = """
import pickle
time.sleep(1.5)  # a script with no short mode: it runs its whole length, smoke or not
with open(os.path.join(args.out_dir, "all_results.npy"), "wb") as f:
    f.write(b"\\x93NUMPY" + bytes(64))
with open(os.path.join(args.out_dir, "all_results.pkl"), "wb") as f:
    pickle.dump(all_results, f)
"""


def _git(ws, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout


def _scripted(folder, lines: list[dict], idea: str = "momentum") -> None:
    header = {"transcript": 1, "idea": idea, "template": folder.name, "note": "scripted: test"}
    (folder / f"{idea}.transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [header, *lines]))
    ideas = json.loads((folder / "ideas.json").read_text())
    for e in ideas:
        if e["Name"] == idea:
            e["transcript"] = f"{idea}.transcript.jsonl"
    (folder / "ideas.json").write_text(json.dumps(ideas))


LR_EDIT = [{"stage": "experiments", "run": 1, "attempt": 1,
            "response": "Smaller learning rate.\n\n" + blk('parser.add_argument("--lr", type=float, default=0.1)',
                                                               'parser.add_argument("--lr", type=float, default=0.05)')},
           {"stage": "experiments", "run": 2, "attempt": 1, "response": DONE}]


@pytest.fixture
def slow_folder(tmp_path):
    folder = tmp_path / "templates" / "gd_quadratic"
    shutil.copytree(AIS, folder)
    (folder / "experiment.py").write_text((folder / "experiment.py").read_text() + SLOW_AND_ARRAYS)
    _scripted(folder, LR_EDIT)
    return folder


def test_adopted_run_notes_arrays_and_a_time_smoke(slow_folder, tmp_path, monkeypatch, capsys):
    sandbox = tmp_path / "sandbox"
    assert run_cli("run", slow_folder / "ideas.json", "--idea", "momentum", "--sandbox", sandbox, "--isolation", "auto",
                   "--max-runs", "1", "--smoke-timeout", "0.5") == 0
    out = capsys.readouterr().out
    assert "smoke: the script ignores ORCHESTRATE_SMOKE: a smoke run passes once it has run 10 s" in out
    ws = only_workspace(sandbox)
    manifest = tomllib.loads((ws / "template.toml").read_text())
    assert manifest["smoke"] == {"mode": "time"} and manifest["timeouts"]["smoke_s"] == 10.0
    # the smoke ran its set time (0.5 s from the command line) without crashing, was stopped, and passed
    smoke = [e for e in events(ws, "run_finished") if e["phase"] == "smoke"]
    assert [(e["status"], e["timed_out"]) for e in smoke] == [("ok", True)]
    assert "ran its set 0.5 s without crashing and was stopped" in smoke[0]["reasons"][0]
    assert [(r["run"], r["status"]) for r in events(ws, "run_recorded")] == [(1, "ok")]
    # what plot.py reads is in the run's commit
    assert {"run_1/all_results.npy", "run_1/all_results.pkl", "run_0/all_results.npy"} <= set(_git(ws, "ls-files").split())
    # notes.txt as AI Scientist's launcher writes it, there before the first run (in the first commit)
    first = _git(ws, "rev-list", "--max-parents=0", "HEAD").strip()
    notes0 = _git(ws, "show", f"{first}:notes.txt").splitlines()
    assert notes0[:3] == ["# Title: Heavy-ball momentum on a quadratic",
                          "# Experiment description: Add momentum to the update and compare the final losses.",
                          "## Run 0: Baseline"]
    base = json.loads((ws / "run_0" / "final_info.json").read_text())
    assert notes0[3] == f"Results: { {ds: b['means'] for ds, b in base.items()} }"
    assert (ws / "notes.txt").read_text().startswith("\n".join(notes0)) and "run 1" in (ws / "notes.txt").read_text().lower()
    # a file over the per-file cap stays on disk, out of the history, ignored from then on
    from orchestrator import workspace as workspace_mod

    monkeypatch.setattr(workspace_mod, "COMMIT_FILE_CAP_MB", 1)
    (ws / "run_1" / "huge [1].npy").write_bytes(bytes(2 * 1024 * 1024))
    (ws / "run_1" / "small.pkl").write_bytes(bytes(1024))
    (ws / "run_1" / "all_results.pkl").write_bytes(bytes(3 * 1024 * 1024))  # tracked while small, now over the cap
    host = tmp_path / "host_gitignore"  # a link a run left to a file outside: replaced, never written through
    host.write_text("host\n")
    (ws / ".gitignore").unlink()
    (ws / ".gitignore").symlink_to(host)
    workspace_mod.Workspace(ws).commit("test: a large array")
    assert host.read_text() == "host\n" and not (ws / ".gitignore").is_symlink()
    assert "/run_1/huge\\ \\[1\\].npy" in (ws / ".gitignore").read_text().splitlines()
    tracked = set(_git(ws, "ls-files").splitlines())
    assert "run_1/small.pkl" in tracked and not {"run_1/huge [1].npy", "run_1/all_results.pkl"} & tracked
    blob = _git(ws, "hash-object", "run_1/huge [1].npy").strip()  # never hashed into the repository
    assert subprocess.run(["git", "cat-file", "-e", blob], cwd=ws).returncode != 0
    assert (ws / "run_1" / "huge [1].npy").stat().st_size == 2 * 1024 * 1024
    assert _git(ws, "status", "--porcelain") == ""  # ignored, not left untracked for a resume to clean away
    # replay the idea from the ideas file whose entry names the transcript
    assert run_cli("replay", slow_folder / "ideas.json", "--idea", "momentum", "--sandbox", tmp_path / "replayed") == 0
    again = only_workspace(tmp_path / "replayed")
    assert [(r["run"], r["status"]) for r in events(again, "run_recorded")] == [(1, "ok")]


def test_smoke_args_shorten_the_smoke_run(tmp_path, capsys):
    folder = tmp_path / "templates" / "gd_quadratic"
    shutil.copytree(AIS, folder)
    subprocess.run([sys.executable, "experiment.py", "--out_dir=run_0"], cwd=folder, check=True, timeout=60)
    assert run_cli("adopt", folder) == 0
    text = (folder / "template.toml").read_text()
    assert '[smoke]\nmode = "time"\n' in text  # inferred: the fixture ignores ORCHESTRATE_SMOKE
    args_smoke = '[smoke]\nmode = "args"\nargs = "--steps 2"\n'  # the script's own short setting
    (folder / "template.toml").write_text(text.replace('[smoke]\nmode = "time"\n', args_smoke))
    _scripted(folder, LR_EDIT)
    sandbox = tmp_path / "sandbox"
    assert run_cli("run", folder / "ideas.json", "--idea", "momentum", "--sandbox", sandbox, "--isolation", "none",
                   "--max-runs", "1", "--python", sys.executable) == 0
    ws = only_workspace(sandbox)
    smoke = [e for e in events(ws, "run_finished") if e["phase"] == "smoke"]
    assert [e["status"] for e in smoke] == ["ok"]
    short = json.loads((ws / smoke[0]["out_dir"] / "all_results.json").read_text())
    full = json.loads((ws / "run_1" / "all_results.json").read_text())
    assert len(short["bowl_0"]) == 2 and len(full["bowl_0"]) == 50


@pytest.mark.parametrize("smoke, problem", [({"mode": "args"}, "args names the smoke arguments"),
                                            ({"mode": "env", "args": "--steps 2"}, "args names the smoke arguments"),
                                            ({"mode": "args", "args": "--x 'unclosed"}, "No closing quotation"),
                                            ({"mode": "fast"}, "Input should be 'env', 'args' or 'time'")])
def test_smoke_section_refused_in_one_problem(smoke, problem):
    with pytest.raises(ValueError, match=problem):
        Smoke.model_validate(smoke)
