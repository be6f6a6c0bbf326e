"""The `sae` template, its sealed evaluator and the `hsae` idea's scripted transcript.

Pure-python parts (always run): the manifest loads, the shipped baseline passes
the template's own checks and ships its SAEs as safetensors + JSON, and every
experiments-stage reply of the transcript applies to experiment.py in order
(exact-match SEARCH) and leaves a file that compiles.

Data-plane parts (need torch + transformer_lens + matplotlib): the interpreter
named by ORCHESTRATE_SAE_PYTHON runs `harness.py prepare`, the template's smoke
mode, `harness.py evaluate` from a directory holding only the protected files,
plot.py, the smoke run of every transcript state (run 2 attempt 1 is meant to
crash), the saved-SAE architectures, and a fabricating experiment.
Without that variable these are skipped, never built here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from orchestrator.importers.items import blocks
from orchestrator.results import validate
from orchestrator.template import load_template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "templates" / "sae"
IDEA = ROOT / "ideas" / "hsae.json"
FAULTS = ROOT / "benchmarks" / "faults" / "experiments_sae"
PROTECTED = ("harness.py", "config.json", "template.toml")


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


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])


def test_shipped_baseline_saves_its_saes_as_data():
    """run_0 holds, per seed (run_0/seed_<s>/), the baseline's two SAEs as the evaluator reads them: a
    declared relu encoder and float32 tensors of the configured sizes, nothing else (no pickle); at its
    top the mean over the seeds and their statistics."""
    cfg = json.loads((TEMPLATE / "config.json").read_text())
    top = sorted(p.name for p in (TEMPLATE / "run_0").iterdir())
    assert top == ["final_info.json", "seed_0", "seed_1", "seed_2", "seeds.json"]
    files = sorted(p.name for p in (TEMPLATE / "run_0" / "seed_1").rglob("*") if p.is_file())
    assert files == ["final_info.json", "lm.json", "lm.safetensors", "synthetic.json", "synthetic.safetensors"]
    for name, d_in, d_sae in (("lm", cfg["lm_d_model"], cfg["d_sae"]), ("synthetic", cfg["syn_d_in"], cfg["syn_d_sae"])):
        spec = json.loads((TEMPLATE / "run_0" / "seed_1" / "saes" / f"{name}.json").read_text())
        assert spec == {"architecture": "relu", "d_in": d_in, "d_sae": d_sae, "format": 1, "subtract_decoder_bias": True}
        header = safetensors_header(TEMPLATE / "run_0" / "seed_1" / "saes" / f"{name}.safetensors")
        shapes = {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}
        assert shapes == {"W_dec": ("F32", [d_sae, d_in]), "b_dec": ("F32", [d_in]),
                          "W_enc": ("F32", [d_in, d_sae]), "b_enc": ("F32", [d_sae])}


def test_template_declares_prepare_and_a_sealed_evaluator():
    raw = tomllib.loads((TEMPLATE / "template.toml").read_text())
    assert raw["prepare"]["command"] == "python harness.py prepare --cache_dir={cache_dir}"
    ev = raw["evaluate"]
    assert ev["command"] == "python harness.py evaluate --run_dir={run_dir} --out={out}"
    assert ev["rtol"] >= 0 and ev["atol"] >= 0 and ev["compare_reported"]
    for key in ev["compare_reported"]:
        assert key.split(".")[0] in ("core", "synthetic"), key  # only what the evaluator computes
    harness = (TEMPLATE / "harness.py").read_text()
    assert "torch.load(" not in harness and "import pickle" not in harness and "weights_only" not in harness


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


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A data cache built by the template's own `prepare` step, as the orchestrator runs it: cwd a
    fresh directory holding only the protected files."""
    py = sae_python()
    cache = tmp_path_factory.mktemp("sae_cache")
    cwd = tmp_path_factory.mktemp("sae_prepare")
    for name in PROTECTED:
        shutil.copy(TEMPLATE / name, cwd / name)
    proc = subprocess.run([py, "harness.py", "prepare", f"--cache_dir={cache}"], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.suffix for p in cache.iterdir())
    assert names == [".json"] * 4 + [".safetensors"] * 4, names  # full + smoke: LM and activations each
    return cache


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


def evaluate(py: str, run_dir: Path, cache: Path, tmp_path: Path, seed: str | None = "4242",
             smoke: bool = True) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`harness.py evaluate` as the orchestrator runs it: cwd a fresh directory holding copies of the
    protected files only, the run's outputs elsewhere, the result written outside the run."""
    cwd = tmp_path / f"eval_{run_dir.name}_{seed}"
    cwd.mkdir()
    for name in PROTECTED:
        shutil.copy(TEMPLATE / name, cwd / name)
    out = tmp_path / f"evaluated_{run_dir.name}_{seed}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("ORCHESTRATE_SMOKE", "ORCHESTRATE_EVAL_SEED")}
    env.update({"ORCHESTRATE_CACHE_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "1"})
    if smoke:
        env["ORCHESTRATE_SMOKE"] = "1"
    if seed is not None:
        env["ORCHESTRATE_EVAL_SEED"] = seed
    proc = subprocess.run([py, "harness.py", "evaluate", f"--run_dir={run_dir}", f"--out={out}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert sorted(p.name for p in cwd.iterdir()) == sorted(PROTECTED)  # it wrote nothing next to itself
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def disagreements(reported: dict, evaluated: dict) -> list[str]:
    """compare_reported keys whose reported value is outside the manifest's tolerance."""
    ev = tomllib.loads((TEMPLATE / "template.toml").read_text())["evaluate"]
    bad = []
    for key in ev["compare_reported"]:
        sec, name = key.split(".")
        r, e = reported[sec][name], evaluated[sec][name]
        if not (abs(r - e) <= ev["atol"] + ev["rtol"] * abs(e)):
            bad.append(f"{key}: reported {r} evaluated {e}")
    return bad


def test_smoke_run_trains_and_writes_valid_results(tmp_path, cache_dir):
    py = sae_python()
    ws = workspace(tmp_path)
    before = tree_digest(cache_dir)
    proc, _ = run_smoke(py, ws, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "in-process" not in proc.stdout  # the prepared cache was used
    assert tree_digest(cache_dir) == before  # and not written
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

    # the sealed evaluator: every core.* and synthetic.* key, on its own held-out data
    run = ws / "run_smoke"
    proc, evaluated = evaluate(py, run, cache_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for section in ("core", "synthetic"):
        missing = {k for k in info[section] if not k.startswith("train_")} - set(evaluated[section])
        assert not missing, (section, missing)
        for k in ("l0", "explained_variance"):
            assert math.isfinite(evaluated[section][k])
    assert evaluated["core"]["n_eval_tokens"] == info["core"]["n_eval_tokens"]  # smoke sizes
    assert evaluated["core"]["l0"] != info["core"]["l0"]  # other windows than the experiment's own
    assert evaluated["evaluator"] == {"seed_source": "ORCHESTRATE_EVAL_SEED", "smoke": True,
                                      "wall_time_s": evaluated["evaluator"]["wall_time_s"]}
    assert "4242" not in json.dumps(evaluated)  # the secret seed is never written
    assert disagreements(info, evaluated) == []  # an honest run agrees with its evaluation
    merged = {**info, "core": {**info["core"], **evaluated["core"]},
              "synthetic": {**info["synthetic"], **evaluated["synthetic"]}}
    assert validate(merged, manifest, smoke=True).status == "ok"
    # same seed, same numbers; another seed, other samples; unset: the fixed fallback
    (tmp_path / "again").mkdir()
    _, again = evaluate(py, run, cache_dir, tmp_path / "again")
    assert again["core"] == evaluated["core"] and again["synthetic"] == evaluated["synthetic"]
    _, other = evaluate(py, run, cache_dir, tmp_path, seed="7")
    assert other["core"]["l0"] != evaluated["core"]["l0"]
    _, fallback = evaluate(py, run, cache_dir, tmp_path, seed=None)
    assert fallback["evaluator"]["seed_source"] == "fallback"

    # plot.py, in the same environment, over the shipped baseline and this run
    shutil.copytree(ws / "run_smoke", ws / "run_1")
    plot = subprocess.run([py, "plot.py"], cwd=ws, capture_output=True, text=True, timeout=300)
    assert plot.returncode == 0, plot.stderr[-3000:]
    pngs = sorted(p.name for p in ws.glob("*.png"))
    assert pngs == ["core_metrics.png", "sparsity_fidelity.png", "synthetic_recovery.png"]
    assert all((ws / p).stat().st_size > 10_000 for p in pngs)


def test_results_do_not_depend_on_the_cache_and_a_run_never_writes_it(tmp_path, cache_dir):
    """A run by hand with no cache builds the LM and activations in-process (and says it is not sealed),
    writes nothing into the cache, and gets exactly the numbers of a run on the prepared cache."""
    py = sae_python()
    empty = tmp_path / "empty_cache"
    empty.mkdir()
    cold, _ = run_smoke(py, workspace(tmp_path / "cold"), empty)
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert "in-process (NOT sealed" in cold.stdout and list(empty.iterdir()) == []
    warm, _ = run_smoke(py, workspace(tmp_path / "warm"), cache_dir)
    assert warm.returncode == 0, warm.stderr[-3000:]
    infos = [json.loads((tmp_path / d / "ws" / "run_smoke" / "final_info.json").read_text()) for d in ("cold", "warm")]
    for section in ("core", "synthetic"):
        a, b = ({k: v for k, v in i[section].items() if "wall_time" not in k} for i in infos)
        assert a == b, section
    for name in ("lm", "synthetic"):
        assert ((tmp_path / "cold" / "ws" / "run_smoke" / "saes" / f"{name}.safetensors").read_bytes()
                == (tmp_path / "warm" / "ws" / "run_smoke" / "saes" / f"{name}.safetensors").read_bytes())


def test_evaluator_scores_the_shipped_baseline_like_its_own_report(tmp_path, cache_dir):
    """run_0's saved SAEs, evaluated at full size on held-out data, agree with the baseline's own
    numbers on every compare_reported key, and on L0 / explained variance within 5%."""
    py = sae_python()
    proc, evaluated = evaluate(py, TEMPLATE / "run_0" / "seed_0", cache_dir, tmp_path, smoke=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((TEMPLATE / "run_0" / "seed_0" / "final_info.json").read_text())
    assert disagreements(info, evaluated) == []
    for key in ("l0", "explained_variance", "ce_loss_score"):
        assert abs(evaluated["core"][key] - info["core"][key]) <= 0.05 * abs(info["core"][key]), key
    assert evaluated["core"]["n_eval_tokens"] == info["core"]["n_eval_tokens"] == 8192


ARCH_SCRIPT = r"""
import json, sys, torch
import harness
out, d_in, d_sae = sys.argv[1], 8, 16
g = torch.Generator().manual_seed(0)
r = lambda *s: torch.randn(*s, generator=g)
base = {"W_dec": r(d_sae, d_in), "b_dec": r(d_in)}
enc = {"W_enc": r(d_in, d_sae), "b_enc": r(d_sae)}
cases = {
    "relu": ({**base, **enc}, {}),
    "topk": ({**base, **enc}, {"k": 3}),
    "jumprelu": ({**base, **enc, "threshold": torch.full((d_sae,), 0.5)}, {}),
    "gated": ({**base, "W_gate": r(d_in, d_sae), "b_gate": r(d_sae), "r_mag": r(d_sae), "b_mag": r(d_sae)}, {}),
}
x = r(64, d_in)
res = {}
for arch, (t, extra) in cases.items():
    harness.save_sae(out, arch, t, {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "levels": [4, d_sae], **extra})
    sae = harness.load_sae(out, arch, d_in)
    f = sae.encode(x)
    xs = x - t["b_dec"]
    if arch == "relu":
        want = torch.relu(xs @ t["W_enc"] + t["b_enc"])
    elif arch == "topk":
        z = torch.relu(xs @ t["W_enc"] + t["b_enc"])
        want = torch.zeros_like(z).scatter(1, z.topk(3, dim=1).indices, z.topk(3, dim=1).values)
    elif arch == "jumprelu":
        z = torch.relu(xs @ t["W_enc"] + t["b_enc"])
        want = torch.where(z > 0.5, z, torch.zeros_like(z))
    else:
        want = (xs @ t["W_gate"] + t["b_gate"] > 0).float() * torch.relu(xs @ (t["W_gate"] * t["r_mag"].exp()) + t["b_mag"])
    assert torch.allclose(f, want, atol=1e-5), arch
    assert torch.allclose(sae.decode(f), f @ t["W_dec"] + t["b_dec"], atol=1e-5)
    res[arch] = {"max_l0": int((f > 0).sum(1).max()), "levels": sae.levels}
bad = {
    "unknown_arch": ({**base, **enc}, {"architecture": "mlp", "d_in": d_in, "d_sae": d_sae}),
    "extra_tensor": ({**base, **enc, "code": torch.zeros(1)}, {"architecture": "relu", "d_in": d_in, "d_sae": d_sae}),
    "wrong_shape": ({**base, "W_enc": r(d_sae, d_in), "b_enc": r(d_sae)}, {"architecture": "relu", "d_in": d_in, "d_sae": d_sae}),
    "topk_no_k": ({**base, **enc}, {"architecture": "topk", "d_in": d_in, "d_sae": d_sae}),
    "bad_levels": ({**base, **enc}, {"architecture": "relu", "d_in": d_in, "d_sae": d_sae, "levels": [8, 4]}),
    "unknown_key": ({**base, **enc}, {"architecture": "relu", "d_in": d_in, "d_sae": d_sae, "python": "import os"}),
}
for name, (t, spec) in bad.items():
    try:
        harness.save_sae(out, "x", t, spec)
    except harness.ArtifactError as e:
        res[name] = str(e)
    else:
        res[name] = None
print(json.dumps(res))
"""


def test_saved_sae_architectures_round_trip_and_malformed_ones_are_refused(tmp_path):
    """relu, topk(k), jumprelu(threshold), gated, each with nested levels: saved, loaded as data and
    encoded exactly as declared; malformed declarations are one-line ArtifactErrors."""
    py = sae_python()
    proc = subprocess.run([py, "-c", ARCH_SCRIPT, str(tmp_path / "run")], cwd=TEMPLATE, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["topk"]["max_l0"] == 3 and res["relu"]["max_l0"] > 3
    assert all(res[a]["levels"] == [4, 16] for a in ("relu", "topk", "jumprelu", "gated"))
    assert "architecture must be one of" in res["unknown_arch"]
    assert "holds exactly" in res["extra_tensor"] and "W_enc must be" in res["wrong_shape"]
    assert "needs an integer k" in res["topk_no_k"] and "levels must be" in res["bad_levels"]
    assert "unknown key(s) ['python']" in res["unknown_key"]
    assert sorted(p.name for p in (tmp_path / "run" / "saes").iterdir()) == sorted(
        f"{a}.{e}" for a in ("relu", "topk", "jumprelu", "gated") for e in ("json", "safetensors"))


def test_evaluator_refuses_missing_symlinked_and_non_safetensors_artifacts(tmp_path, cache_dir):
    py = sae_python()
    run = tmp_path / "run_bad"
    shutil.copytree(TEMPLATE / "run_0" / "seed_0", run)
    (run / "saes" / "lm.safetensors").unlink()
    proc, out = evaluate(py, run, cache_dir, tmp_path, seed="1")
    assert proc.returncode == 1 and out is None
    assert proc.stderr.strip().splitlines()[-1].startswith("harness: saes/lm.safetensors is missing"), proc.stderr
    (run / "saes" / "lm.safetensors").symlink_to(TEMPLATE / "run_0" / "seed_0" / "saes" / "lm.safetensors")
    proc, _ = evaluate(py, run, cache_dir, tmp_path, seed="2")
    assert proc.returncode == 1 and "not a regular file" in proc.stderr
    (run / "saes" / "lm.safetensors").unlink()
    (run / "saes" / "lm.safetensors").write_bytes(b"\x80\x04\x95 a pickle, not tensors")
    proc, _ = evaluate(py, run, cache_dir, tmp_path, seed="3")
    assert proc.returncode == 1 and "not a safetensors file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tiny_lm_forward_matches_hooked_transformer(cache_dir):
    """The evaluator's plain-torch forward of the tiny LM gives HookedTransformer's logits, with and
    without an activation replaced at the hook."""
    py = sae_python()
    script = r"""
import torch, harness
cfg = harness.load_config()
lm = harness.load_lm_activations(cfg, torch.device("cpu"))
tokens = lm.eval_tokens[:4]
half = lambda act: act * 0.5
ref = lm.model(tokens)
ref_h = lm.model.run_with_hooks(tokens, fwd_hooks=[(lm.hook_name, lambda a, hook: a * 0.5)])
assert isinstance(lm.forward, harness.TinyLM)
print((lm.forward.logits(tokens) - ref).abs().max().item(),
      (lm.forward.logits(tokens, lm.hook_name, half) - ref_h).abs().max().item())
"""
    env = {**os.environ, "ORCHESTRATE_SMOKE": "1", "ORCHESTRATE_CACHE_DIR": str(cache_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([py, "-c", script], cwd=TEMPLATE, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clean, spliced = map(float, proc.stdout.strip().splitlines()[-1].split())
    assert clean < 1e-4 and spliced < 1e-4


def test_fabricated_results_disagree_with_the_evaluation(tmp_path, cache_dir):
    """benchmarks/faults/experiments_sae/fabricated.py skips training and writes the baseline's numbers
    with random SAEs: its report is plausible and passes the checks, the evaluation does not."""
    py = sae_python()
    ws = workspace(tmp_path, (FAULTS / "fabricated.py").read_text())
    proc, secs = run_smoke(py, ws, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((ws / "run_smoke" / "final_info.json").read_text())
    manifest = load_template(TEMPLATE).manifest
    assert validate(info, manifest, smoke=True).status == "ok"  # self-reported, it would pass
    proc, evaluated = evaluate(py, ws / "run_smoke", cache_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad = disagreements(info, evaluated)
    assert any(b.startswith("synthetic.fraction_recovered") for b in bad), bad
    merged = {**info, "core": {**info["core"], **evaluated["core"]},
              "synthetic": {**info["synthetic"], **evaluated["synthetic"]}}
    assert validate(merged, manifest, smoke=True).status != "ok"


def test_transcript_states_in_smoke_mode(tmp_path, cache_dir):
    """Each edited experiment.py of the transcript, in smoke mode: run 2 attempt 1
    crashes within seconds (the scripted mistake), the others pass the checks, and the evaluator
    scores their saved SAEs, nested levels included."""
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
        eproc, evaluated = evaluate(py, ws / "run_smoke", cache_dir, tmp_path / f"s{n}")
        assert eproc.returncode == 0, (label, eproc.stderr[-3000:])
        assert disagreements(info, evaluated) == [], label
        for section in ("core", "synthetic"):
            assert {"level1_l0", "level3_prefix_explained_variance"} <= set(evaluated[section]), (label, section)
        assert evaluated["synthetic"]["parents_in_level1"] == info["hsae"]["synthetic"]["parents_in_level1"]


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
