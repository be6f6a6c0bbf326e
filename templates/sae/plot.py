"""Figures comparing every run_*/final_info.json in the working directory.

    python plot.py      ->  core_metrics.png, synthetic_recovery.png, sparsity_fidelity.png

A run of several seeds has run_i/final_info.json = the mean over its ok seeds and run_i/seeds.json =
{metric: {"values", "mean", "sd", "se", "ci95": [lo, hi], "n"}} (written by the orchestrator): its bars
and points get error bars for the 95% confidence interval; a run of one seed is a plain bar or point.
"""

import glob
import json
import math
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# label shown for each run; the agent may fill this in (e.g. {"run_1": "Matryoshka"})
LABELS = {"run_0": "baseline"}
SEEDS = {}  # run name -> its seeds.json (empty for a single-seed run)


def load_runs():
    runs = []
    for path in glob.glob("run_*/final_info.json"):
        name = os.path.basename(os.path.dirname(path))
        m = re.fullmatch(r"run_(\d+)", name)
        if not m:
            continue
        try:
            with open(path) as fh:
                runs.append((int(m.group(1)), name, json.load(fh)))
        except (OSError, json.JSONDecodeError) as e:
            print(f"skipping {path}: {e}")
            continue
        SEEDS[name] = load_seeds(name)
    runs.sort()
    return [(name, info) for _, name, info in runs]


def load_seeds(name):
    """run_i/seeds.json, or {} when the run has none (one seed) or it cannot be read."""
    try:
        with open(os.path.join(name, "seeds.json")) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def err(name, dotted):
    """(below, above) the mean: the 95% interval of the metric over the run's seeds; None for one seed."""
    s = SEEDS.get(name, {}).get(dotted)
    if not isinstance(s, dict) or not isinstance(s.get("ci95"), (list, tuple)) or len(s["ci95"]) != 2:
        return None
    try:
        mean, lo, hi = float(s["mean"]), float(s["ci95"][0]), float(s["ci95"][1])
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (mean, lo, hi)):
        return None
    return max(mean - lo, 0.0), max(hi - mean, 0.0)


def yerr_of(pairs):
    """matplotlib's yerr for bars whose intervals are `pairs` (None: no bar); None when no bar has one."""
    if all(p is None for p in pairs):
        return None
    return [[p[0] if p else 0.0 for p in pairs], [p[1] if p else 0.0 for p in pairs]]


def get(info, dotted):
    v = info
    for part in dotted.split("."):
        if not isinstance(v, dict) or part not in v:
            return float("nan")
        v = v[part]
    return float(v) if isinstance(v, (int, float)) and v is not None else float("nan")


def label(name):
    return f"{name}\n{LABELS[name]}" if name in LABELS else name


def grouped_bars(ax, runs, metrics, title):
    n = len(runs)
    width = 0.8 / max(n, 1)
    for i, (name, info) in enumerate(runs):
        vals = [get(info, m) for m in metrics]
        errs = [err(name, m) for m in metrics]
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(metrics))]
        bars = ax.bar(xs, [0 if math.isnan(v) else v for v in vals], width, yerr=yerr_of(errs), capsize=2,
                      label=label(name).replace("\n", ": "))
        for b, v, e in zip(bars, vals, errs):
            ax.annotate("n/a" if math.isnan(v) else f"{v:.2f}" + (f"±{max(e):.2f}" if e else ""),
                        (b.get_x() + b.get_width() / 2, b.get_height() + (e[1] if e else 0)),
                        ha="center", va="bottom", fontsize=6 if e else 7)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([m.split(".")[-1] for m in metrics], rotation=20, ha="right")
    ax.set_title(title)


def main():
    runs = load_runs()
    if not runs:
        raise SystemExit("plot.py: no run_*/final_info.json found")
    print("runs:", ", ".join(name for name, _ in runs))

    # 1. core metrics (language-model activations)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    grouped_bars(axes[0], runs, ["core.explained_variance", "core.cossim",
                                 "core.ce_loss_score", "core.kl_div_score"],
                 "Reconstruction and model preservation (higher is better)")
    axes[0].set_ylim(0, 1.1)
    axes[0].legend(fontsize=8, loc="lower left")
    names = [label(n) for n, _ in runs]
    axes[1].bar(names, [get(i, "core.l0") for _, i in runs], color="tab:gray",
                yerr=yerr_of([err(n, "core.l0") for n, _ in runs]), capsize=3)
    axes[1].set_title("L0 (active latents per token)")
    axes[1].tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig("core_metrics.png", dpi=120)
    plt.close(fig)

    # 2. synthetic hierarchy: recovery and absorption
    fig, ax = plt.subplots(figsize=(12, 4.5))
    grouped_bars(ax, runs, ["synthetic.fraction_recovered", "synthetic.mean_max_cos_parents",
                            "synthetic.mean_max_cos_children", "synthetic.parent_recall",
                            "synthetic.hierarchy_accuracy", "synthetic.absorption_rate",
                            "synthetic.child_parent_leak"],
                 "Planted hierarchy: recovery (higher is better), absorption and leak (lower is better)")
    ax.set_ylim(min(0, *[get(i, "synthetic.child_parent_leak") for _, i in runs
                         if not math.isnan(get(i, "synthetic.child_parent_leak"))] or [0]), 1.15)
    ax.legend(fontsize=8, ncol=min(len(runs), 5), loc="upper center")
    fig.tight_layout()
    fig.savefig("synthetic_recovery.png", dpi=120)
    plt.close(fig)

    # 3. sparsity vs fidelity
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, prefix, title in ((axes[0], "core", "LM activations"),
                              (axes[1], "synthetic", "synthetic activations")):
        for name, info in runs:
            x, y = get(info, f"{prefix}.l0"), get(info, f"{prefix}.explained_variance")
            ex, ey = err(name, f"{prefix}.l0"), err(name, f"{prefix}.explained_variance")
            if ex or ey:  # the 95% intervals over the run's seeds
                ax.errorbar([x], [y], xerr=[[ex[0]], [ex[1]]] if ex else None, yerr=[[ey[0]], [ey[1]]] if ey else None,
                            fmt="o", ms=6, capsize=3)
            else:
                ax.scatter([x], [y], s=40)
            ax.annotate(label(name).replace("\n", ": "), (x, y), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("L0")
        ax.set_ylabel("explained variance")
        ax.set_title(f"Sparsity vs fidelity: {title}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig("sparsity_fidelity.png", dpi=120)
    plt.close(fig)
    print("wrote core_metrics.png, synthetic_recovery.png, sparsity_fidelity.png")


if __name__ == "__main__":
    main()
