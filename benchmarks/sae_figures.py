"""Figures for the `sae` template and the `hsae` idea, measured on this machine.

    ORCHESTRATE_SAE_PYTHON=/path/to/python .venv/bin/python benchmarks/sae_figures.py
    .venv/bin/python benchmarks/sae_figures.py --python PY [--saelens-python PY2] [--no-hsae] [--json out.json]

What it prints:
  1. seconds of `harness.py prepare` (trains the full and the smoke LM, caches
     their activations), smoke-run and full-run seconds of the baseline and of
     each HSAE run (the idea's transcript replies applied in order), how fast
     run 2 attempt 1 (the scripted mistake) crashes in smoke mode, and the
     sealed evaluator's seconds after each run (`harness.py evaluate`, cwd a
     fresh directory with the protected files only, as the orchestrator runs
     it) with its overhead as a share of the full run (target: under 10%);
  2. per-run synthetic scores (absorption, recovery, hierarchy) and core
     metrics (L0, explained variance, CE-loss score) of baseline vs HSAE runs,
     as the evaluator computed them;
  3. SAE training throughput (activations/s) of the template's trainer (from the
     baseline run's final_info: tokens_seen / wall_time_s) against sae_lens's
     SAETrainer with a StandardTrainingSAE, on the same cached activations, with
     the same d_sae, batch size, step count and thread count, as a ratio.
     sae_lens runs in --saelens-python (default: the data-plane python if it
     imports sae_lens, else $ORCHESTRATE_SAELENS_PYTHON); without it, the
     printout says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "templates" / "sae"
IDEA = ROOT / "ideas" / "hsae.json"

SYN_KEYS = ["absorption_rate", "absorption_full_rate", "child_parent_leak", "fraction_recovered",
            "mean_max_cos_parents", "mean_max_cos_children", "parent_recall", "hierarchy_accuracy",
            "explained_variance", "l0"]
CORE_KEYS = ["l0", "explained_variance", "ce_loss_score", "kl_div_score", "mse"]

SAELENS_SCRIPT = r"""
import json, sys, time, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig, __version__
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer
from safetensors.torch import load_file
acts = load_file(args["acts"])["acts"]
acts = acts * (acts.shape[1] / acts.pow(2).sum(1).mean()).sqrt()   # as the harness scales them
bs, steps = args["batch_size"], args["steps"]

class Batches:
    def __init__(self):
        self.g = torch.Generator().manual_seed(0)
    def __iter__(self):
        return self
    def __next__(self):
        return acts[torch.randint(0, acts.shape[0], (bs,), generator=self.g)]

sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=acts.shape[1], d_sae=args["d_sae"],
                          l1_coefficient=args["l1_coeff"], device="cpu", dtype="float32"))
cfg = SAETrainerConfig(
    n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False,
    total_training_samples=steps * bs, device="cpu", autocast=False, lr=args["lr"], lr_end=args["lr"],
    lr_scheduler_name="constant", lr_warm_up_steps=0, adam_beta1=0.9, adam_beta2=0.999, lr_decay_steps=0,
    n_restart_cycles=1, train_batch_size_samples=bs, dead_feature_window=1000, feature_sampling_window=2000,
    logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1), n_batches_for_norm_estimate=1000)
trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=Batches(), save_checkpoint_fn=lambda p: None)
t0 = time.perf_counter()
trainer.fit()
dt = time.perf_counter() - t0
print("RESULT " + json.dumps({"version": __version__, "steps": trainer.n_training_steps,
                              "samples": trainer.n_training_samples, "seconds": dt}))
"""


# --------------------------------------------------------------------------- #
# the transcript's edits (aider SEARCH/REPLACE blocks, exact match)


def parse_blocks(text: str) -> list[tuple[str, str]]:
    """(search, replace) for each aider block, by the orchestrator's own parser."""
    from orchestrator.importers.items import blocks

    return [(b.search, b.replace) for b in blocks(text)]


def transcript_states() -> list[tuple[int, int, str]]:
    """(run, attempt, experiment.py after the reply) for each reply that edits."""
    idea = json.loads(IDEA.read_text())
    lines = [json.loads(ln) for ln in (IDEA.parent / idea["transcript"]).read_text().splitlines() if ln.strip()]
    src = (TEMPLATE / "experiment.py").read_text()
    out = []
    for ln in lines[1:]:
        if ln.get("stage") != "experiments":
            continue
        blocks = parse_blocks(ln["response"])
        if not blocks:
            continue
        for search, replace in blocks:
            if src.count(search) != 1:
                raise SystemExit(f"run {ln['run']} attempt {ln['attempt']}: a SEARCH block does not apply")
            src = src.replace(search, replace)
        out.append((ln["run"], ln["attempt"], src))
    return out


# --------------------------------------------------------------------------- #


def run(py: str, ws: Path, out_dir: str, cache: Path, *, smoke: bool) -> tuple[int, float, str]:
    env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(cache)}
    env.pop("ORCHESTRATE_SMOKE", None)
    if smoke:
        env["ORCHESTRATE_SMOKE"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run([py, "experiment.py", f"--out_dir={out_dir}"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=1800)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return proc.returncode, secs, last
    return 0, secs, ""


def evaluate(py: str, run_dir: Path, cache: Path, tmp: Path, *, smoke: bool) -> tuple[float, dict]:
    """The sealed evaluator as the orchestrator runs it: (seconds, evaluated metrics)."""
    cwd = Path(tempfile.mkdtemp(prefix="eval_", dir=tmp))
    for name in ("harness.py", "config.json", "template.toml"):
        shutil.copy(TEMPLATE / name, cwd / name)
    env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(cache), "ORCHESTRATE_EVAL_SEED": "12345"}
    env.pop("ORCHESTRATE_SMOKE", None)
    if smoke:
        env["ORCHESTRATE_SMOKE"] = "1"
    out = cwd.parent / f"{cwd.name}.json"
    t0 = time.perf_counter()
    proc = subprocess.run([py, "harness.py", "evaluate", f"--run_dir={run_dir}", f"--out={out}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sae_figures: the evaluator failed on {run_dir.name}: "
                         f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return secs, json.loads(out.read_text())


def saelens_python(py: str, override: str | None) -> tuple[str | None, str]:
    cands = [c for c in (override, py, os.environ.get("ORCHESTRATE_SAELENS_PYTHON")) if c]
    why = []
    for c in cands:
        probe = subprocess.run([c, "-c", "import sae_lens"], capture_output=True, text=True)
        if probe.returncode == 0:
            return c, ""
        why.append(f"{c}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    return None, "; ".join(why) or "no interpreter given"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=os.environ.get("ORCHESTRATE_SAE_PYTHON"),
                    help="data-plane python (torch + transformer_lens); default $ORCHESTRATE_SAE_PYTHON")
    ap.add_argument("--saelens-python", default=None, help="python with sae_lens for the throughput comparison")
    ap.add_argument("--no-hsae", action="store_true", help="only the template's baseline")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if not args.python:
        print("sae_figures: no data-plane python: pass --python or set ORCHESTRATE_SAE_PYTHON", file=sys.stderr)
        return 2
    py = args.python
    figures: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0]}}
    print(f"sae_figures: data-plane python {py}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f} at start (other work on the machine slows every figure)")

    with tempfile.TemporaryDirectory(prefix="sae_fig_") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        ws = tmp / "ws"
        shutil.copytree(TEMPLATE, ws)
        shutil.rmtree(ws / "run_0")

        print("\n== wall-clock seconds (whole subprocess: imports, data, training, evaluation)")
        times, evals, overhead = {}, {}, {}
        t0 = time.perf_counter()
        proc = subprocess.run([py, "harness.py", "prepare", f"--cache_dir={cache}"], cwd=ws, capture_output=True,
                              text=True, timeout=1800)
        if proc.returncode:
            print(f"  prepare: FAILED: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
            return 1
        times["prepare (full + smoke LM, activations)"] = time.perf_counter() - t0
        print(f"  {'prepare (full + smoke LM, activations)':48s} {times['prepare (full + smoke LM, activations)']:7.1f}")
        for label, out, smoke in (("baseline smoke", "smoke_0", True), ("baseline full", "run_0", False)):
            rc, secs, err = run(py, ws, out, cache, smoke=smoke)
            if rc:
                print(f"  {label}: FAILED rc={rc}: {err}")
                return 1
            times[label] = secs
            evals[label], evaluated = evaluate(py, ws / out, cache, tmp, smoke=smoke)
            print(f"  {label:48s} {secs:7.1f}   evaluator {evals[label]:5.2f}")
        overhead["run_0"] = evals["baseline full"] / times["baseline full"]
        runs = {"run_0 (baseline)": evaluated}

        if not args.no_hsae:
            for run_no, attempt, src in transcript_states():
                (ws / "experiment.py").write_text(src)
                label = f"run {run_no} attempt {attempt}"
                rc, secs, err = run(py, ws, f"smoke_{run_no}_{attempt}", cache, smoke=True)
                times[f"{label} smoke"] = secs
                if rc:
                    print(f"  {label} smoke: crashed after {secs:.1f} s ({err})")
                    continue
                evals[f"{label} smoke"], _ = evaluate(py, ws / f"smoke_{run_no}_{attempt}", cache, tmp, smoke=True)
                print(f"  {label + ' smoke':48s} {secs:7.1f}   evaluator {evals[label + ' smoke']:5.2f}")
                rc, secs, err = run(py, ws, f"run_{run_no}", cache, smoke=False)
                if rc:
                    print(f"  {label} full: FAILED rc={rc}: {err}")
                    return 1
                times[f"{label} full"] = secs
                evals[f"{label} full"], runs[f"run_{run_no}"] = evaluate(py, ws / f"run_{run_no}", cache, tmp,
                                                                         smoke=False)
                overhead[f"run_{run_no}"] = evals[f"{label} full"] / secs
                print(f"  {label + ' full':48s} {secs:7.1f}   evaluator {evals[label + ' full']:5.2f}")
            full = [v for k, v in times.items() if k.endswith(" full") and k != "baseline full"]
            if full:
                print(f"  the idea's full runs together: {sum(full):.1f} s")
        print("  evaluator overhead per full run (evaluator s / run s): "
              + ", ".join(f"{k} {v:.1%}" for k, v in overhead.items())
              + f"; worst {max(overhead.values()):.1%} (target < 10%)")
        figures["seconds"] = times
        figures["evaluator_seconds"] = evals
        figures["evaluator_overhead"] = overhead

        names = list(runs)
        width = max(12, *(len(n) for n in names))
        print("\n== synthetic (planted hierarchy, evaluated; absorption and leak: lower is better)")
        print("  " + f"{'metric':24s}" + "".join(f"{n:>{width + 2}s}" for n in names))
        for k in SYN_KEYS:
            print("  " + f"{k:24s}" + "".join(f"{runs[n]['synthetic'][k]:>{width + 2}.4f}" for n in names))
        print("\n== core (LM activations, SAEBench definitions, evaluated on held-out windows)")
        for k in CORE_KEYS:
            print("  " + f"{k:24s}" + "".join(f"{runs[n]['core'][k]:>{width + 2}.4f}" for n in names))
        figures["runs"] = {n: {"synthetic": {k: runs[n]["synthetic"][k] for k in SYN_KEYS},
                               "core": {k: runs[n]["core"][k] for k in CORE_KEYS}} for n in names}

        print("\n== SAE training throughput (activations per second), same activations / d_sae / batch / steps / threads")
        base = json.loads((ws / "run_0" / "final_info.json").read_text())  # training.*: self-reported
        cfg, tr = base["config"], base["training"]
        ours = tr["tokens_seen"] / tr["wall_time_s"]
        print(f"  template trainer: {tr['steps_executed']} steps x {cfg['sae_batch_size']} in "
              f"{tr['wall_time_s']:.1f} s = {ours:,.0f}/s (d_in {base['core']['d_in']}, d_sae {cfg['d_sae']}, "
              f"{cfg['torch_threads']} thread)")
        figures["throughput"] = {"template_per_s": ours}
        sl_py, why = saelens_python(py, args.saelens_python)
        n_rows = int(cfg["n_train_tokens"])
        acts = [p for p in cache.glob(f"acts_{cfg['lm_cache_key']}_*.safetensors")]
        if sl_py is None:
            msg = f"sae_lens: not available ({why}); no comparison"
            print("  " + msg)
            figures["throughput"]["saelens"] = msg
        elif not acts:
            print("  sae_lens: the baseline's cached activations were not found; no comparison")
        else:
            spec = {"acts": str(acts[0]), "d_sae": cfg["d_sae"], "batch_size": cfg["sae_batch_size"],
                    "steps": tr["steps_executed"], "lr": cfg["sae_lr"], "l1_coeff": cfg["l1_coeff"],
                    "threads": max(1, int(cfg["torch_threads"])), "rows": n_rows}
            proc = subprocess.run([sl_py, "-c", SAELENS_SCRIPT, json.dumps(spec)], capture_output=True, text=True,
                                  timeout=1800, env={**os.environ, "WANDB_MODE": "disabled", "TQDM_DISABLE": "1"})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"  sae_lens: failed ({tail}); no comparison")
                figures["throughput"]["saelens"] = f"failed: {tail}"
            else:
                res = json.loads(line[len("RESULT "):])
                theirs = res["samples"] / res["seconds"]
                print(f"  sae_lens {res['version']} SAETrainer (StandardTrainingSAE, {sl_py}): {res['steps']} steps x "
                      f"{spec['batch_size']} in {res['seconds']:.1f} s = {theirs:,.0f}/s")
                print(f"  ratio template / sae_lens = {ours / theirs:.2f}")
                figures["throughput"].update({"saelens_per_s": theirs, "saelens_version": res["version"],
                                              "ratio_template_over_saelens": ours / theirs})
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
