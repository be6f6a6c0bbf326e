"""The `sae` template and the `hsae` idea's scripted transcript.

Pure-python parts (always run): the manifest loads, the shipped baseline passes
the template's own checks, and every experiments-stage reply of the transcript
applies to experiment.py in order (exact-match SEARCH) and leaves a file that
compiles.

Data-plane parts (need torch + transformer_lens + matplotlib): the interpreter
named by ORCHESTRATE_SAE_PYTHON runs the template's smoke mode, plot.py, and the
smoke run of every transcript state (run 2 attempt 1 is meant to crash).
Without that variable these are skipped, never built here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.importers.items import blocks
from orchestrator.results import validate
from orchestrator.template import load_template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "templates" / "sae"
IDEA = ROOT / "ideas" / "hsae.json"


# --------------------------------------------------------------------------- #
# a small applier for aider's SEARCH/REPLACE blocks (exact match only)


def parse_blocks(text: str) -> list[tuple[str, str, str]]:
    """(file name, search, replace) for each aider block, by the importer's parser."""
    return [(b.file, b.search, b.replace) for b in blocks(text)]


def apply_blocks(content: str, blocks: list[tuple[str, str, str]], where: str) -> str:
    for n, (_fname, search, replace) in enumerate(blocks, 1):
        count = content.count(search)
        assert count == 1, f"{where}, block {n}: SEARCH text found {count} times:\n{search}"
        content = content.replace(search, replace)
    return content


def transcript_lines() -> tuple[dict, list[dict]]:
    idea = json.loads(IDEA.read_text())
    path = IDEA.parent / idea["transcript"]
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[0], [ln for ln in lines[1:] if ln.get("stage") == "experiments"]


def experiment_states() -> list[tuple[str, str, bool]]:
    """(label, experiment.py after that reply, reply has edits) in transcript order."""
    _, lines = transcript_lines()
    src = (TEMPLATE / "experiment.py").read_text()
    states = []
    for ln in lines:
        label = f"run {ln['run']} attempt {ln['attempt']}"
        blocks = parse_blocks(ln["response"])
        if blocks:
            src = apply_blocks(src, blocks, label)
        states.append((label, src, bool(blocks)))
    return states


# --------------------------------------------------------------------------- #
# pure python


def test_manifest_loads_and_shipped_baseline_passes_its_checks():
    tpl = load_template(TEMPLATE)
    m = tpl.manifest
    assert m.name == "sae" and m.command == "python experiment.py --out_dir={out_dir}"
    assert {"harness.py", "config.json", "template.toml"} <= set(m.protected)
    info = json.loads((TEMPLATE / "run_0" / "final_info.json").read_text())
    verdict = validate(info, m)
    assert verdict.status == "ok", verdict.reasons
    # the baseline is a real full run of the default profile, not a smoke run
    assert info["config"]["smoke"] is False and info["config"]["profile"] == "cpu"
    assert info["training"]["steps_executed"] == info["training"]["steps_planned"] >= 1
    assert set(info) >= {"training", "synthetic", "core", "env", "config"}


def test_transcript_experiment_replies_apply_in_order_and_compile():
    header, lines = transcript_lines()
    assert header["transcript"] == 1 and header["idea"] == "hsae" and header["template"] == "sae"
    assert "scripted" in header["note"]
    assert [(ln["run"], ln["attempt"]) for ln in lines] == [(1, 1), (2, 1), (2, 2), (3, 1), (4, 1)]
    for ln in lines:
        for fname, _, _ in parse_blocks(ln["response"]):
            assert fname == "experiment.py", f"run {ln['run']}: block for {fname!r}"
    states = experiment_states()
    for label, src, _ in states:
        compile(src, f"experiment.py ({label})", "exec")
    # the last reply ends the stage: no edits, and the done block at the very end
    last = lines[-1]["response"]
    assert not parse_blocks(last)
    tail = last.rstrip().rsplit("```json", 1)[1].rstrip("`").strip()
    assert json.loads(tail)["orchestrate"] == "done"
    assert last.rstrip().endswith("```")


# --------------------------------------------------------------------------- #
# the data plane


def sae_python() -> str:
    py = os.environ.get("ORCHESTRATE_SAE_PYTHON")
    if not py:
        pytest.skip("ORCHESTRATE_SAE_PYTHON is not set: no data-plane python (torch + transformer_lens) to run the template")
    if not shutil.which(py) and not os.access(py, os.X_OK):
        pytest.skip(f"ORCHESTRATE_SAE_PYTHON={py} is not an executable")
    probe = subprocess.run([py, "-c", "import torch, transformer_lens, matplotlib"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"ORCHESTRATE_SAE_PYTHON={py} lacks torch/transformer_lens/matplotlib: {probe.stderr.strip()[-200:]}")
    return py


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sae_cache")


def workspace(tmp_path: Path, experiment: str | None = None) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(TEMPLATE, ws)
    if experiment is not None:
        (ws / "experiment.py").write_text(experiment)
    return ws


def run_smoke(py: str, ws: Path, cache: Path, out: str = "run_smoke") -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "ORCHESTRATE_SMOKE": "1", "ORCHESTRATE_CACHE_DIR": str(cache)}
    t0 = time.monotonic()
    proc = subprocess.run([py, "experiment.py", f"--out_dir={out}"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc, time.monotonic() - t0


def test_smoke_run_trains_and_writes_valid_results(tmp_path, cache_dir):
    py = sae_python()
    ws = workspace(tmp_path)
    proc, _ = run_smoke(py, ws, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((ws / "run_smoke" / "final_info.json").read_text())
    manifest = load_template(TEMPLATE).manifest
    for key in manifest.required_keys:
        node = info
        for part in key.split("."):
            assert part in node, f"missing {key}"
            node = node[part]
    tr, core, cfg = info["training"], info["core"], info["config"]
    assert cfg["smoke"] is True
    assert tr["steps_executed"] >= 1 and tr["tokens_seen"] > 0
    assert math.isfinite(tr["final_loss"])
    assert 1 <= core["l0"] <= 0.5 * cfg["d_sae"]
    assert info["synthetic"]["train_steps_executed"] >= 1
    for section in ("training", "synthetic", "core"):
        for k, v in info[section].items():
            assert v is None or isinstance(v, (int, float, str, bool)), f"{section}.{k} is {type(v)}"
    verdict = validate(info, manifest, smoke=True)
    assert verdict.status == "ok", verdict.reasons

    # plot.py, in the same environment, over the shipped baseline and this run
    shutil.copytree(ws / "run_smoke", ws / "run_1")
    plot = subprocess.run([py, "plot.py"], cwd=ws, capture_output=True, text=True, timeout=300)
    assert plot.returncode == 0, plot.stderr[-3000:]
    pngs = sorted(p.name for p in ws.glob("*.png"))
    assert pngs == ["core_metrics.png", "sparsity_fidelity.png", "synthetic_recovery.png"]
    assert all((ws / p).stat().st_size > 10_000 for p in pngs)


def test_transcript_states_in_smoke_mode(tmp_path, cache_dir):
    """Each edited experiment.py of the transcript, in smoke mode: run 2 attempt 1
    crashes within seconds (the scripted mistake), the others pass the checks."""
    py = sae_python()
    manifest = load_template(TEMPLATE).manifest
    for n, (label, src, has_edits) in enumerate(experiment_states()):
        if not has_edits:
            continue
        ws = workspace(tmp_path / f"s{n}", src)
        proc, secs = run_smoke(py, ws, cache_dir)
        if label == "run 2 attempt 1":
            assert proc.returncode != 0, f"{label} was meant to crash"
            assert "RuntimeError" in proc.stderr and "size of tensor" in proc.stderr, proc.stderr[-2000:]
            assert not (ws / "run_smoke" / "final_info.json").exists()
            assert secs < 60, f"{label} took {secs:.0f}s to crash"
            continue
        assert proc.returncode == 0, f"{label}: {proc.stderr[-3000:]}"
        info = json.loads((ws / "run_smoke" / "final_info.json").read_text())
        verdict = validate(info, manifest, smoke=True)
        assert verdict.status == "ok", (label, verdict.reasons)
        assert "hsae" in info and info["hsae"]["synthetic"]["level1_size"] >= 1


def test_gpu_profile_offline_without_weights_fails_in_one_clear_line(tmp_path):
    """The gpu profile names google/gemma-2-2b; offline, with no weights cached, the run must end with
    one line saying so — not a hub traceback — and write no results."""
    py = sae_python()
    ws = workspace(tmp_path)
    cfg = json.loads((ws / "config.json").read_text())
    cfg["profile"] = "gpu"
    (ws / "config.json").write_text(json.dumps(cfg))
    home = tmp_path / "home"  # an empty Hugging Face cache
    env = {**os.environ, "HOME": str(home), "HF_HOME": str(home / "hf"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "ORCHESTRATE_CACHE_DIR": str(tmp_path / "cache"), "ORCHESTRATE_SMOKE": "1"}
    proc = subprocess.run([py, "experiment.py", "--out_dir=run_gpu"], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("harness: cannot load pretrained model 'google/gemma-2-2b'"), proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    assert not (ws / "run_gpu" / "final_info.json").exists()
