'''The files of a new template (`orchestrate init DIR`): a seconds-long experiment (gradient descent on a
quadratic), its protected harness (results writer and, where the orchestrator has sealed evaluation, its
evaluator), a plot script and a baseline, so that the skeleton passes `orchestrate check` as it is.'''

from __future__ import annotations

MANIFEST = """\
name = "{name}"
description = "A new template: replace the experiment, keep the harness the yardstick."
command = "python experiment.py --out_dir={{out_dir}}"    # fixed; the agent never changes it
plot_command = "python plot.py"
editable = ["experiment.py", "plot.py", "notes.txt"]     # the only files the agent may edit
protected = ["harness.py", "template.toml"]              # hashed; a run that changes one is rejected
results_file = "final_info.json"
required_keys = ["training.steps_executed", "training.final_loss", "eval.error"]
key_metrics = ["eval.error", "training.final_loss"]
figures = ["*.png"]

[timeouts]
full_s = 60
smoke_s = 20
plot_s = 60

[[checks]]
path = "training.steps_executed"
min = 1
reason = "no training step was executed"

[[checks]]
path = "eval.error"
min = 0
max = "100 * training.steps_planned"
reason = "the error must be within its declared range"

[compare]
keys = ["eval.error", "training.final_loss"]

[goals]
"eval.error" = "min"
"training.final_loss" = "min"
"""

EVALUATE = """
[evaluate]   # the protected evaluator: computes eval.* from what the run saved, never from its claims
command = "python harness.py evaluate --run_dir={run_dir} --out={out}"
rtol = 0.05
atol = 0.02
compare_reported = ["eval.error"]
"""

EXPERIMENT = '''\
"""The experiment the agent edits: fit w to minimise (w - 3)^2 by gradient descent."""
import argparse
import os

from harness import evaluate, save_weights, write_results

STEPS = 20
LR = 0.05


def train(steps, lr):
    w, executed, loss = 0.0, 0, None
    for _ in range(steps):
        w -= lr * 2 * (w - 3.0)
        loss = (w - 3.0) ** 2
        executed += 1
    return w, executed, loss


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    smoke = os.environ.get("ORCHESTRATE_SMOKE") == "1"
    steps = 2 if smoke else STEPS
    w, executed, loss = train(steps, LR)
    save_weights(args.out_dir, w)
    write_results(args.out_dir, {
        "training": {"steps_planned": steps, "steps_executed": executed, "final_loss": loss},
        "eval": evaluate(w),
        "config": {"lr": LR, "steps": steps, "smoke": smoke},
    })
'''

HARNESS = '''\
"""Protected: the yardstick. The agent edits experiment.py, never this.

`python harness.py evaluate --run_dir=RUN --out=FILE` recomputes the metrics from the weights the run
saved (the orchestrator's sealed evaluator step), so a run cannot report numbers it did not earn."""
import argparse
import json
import os


def evaluate(w: float) -> dict:
    err = abs(w - 3.0)
    return {"error": err, "score": 1.0 / (1.0 + err)}


def save_weights(out_dir: str, w: float) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "weights.json"), "w") as fh:
        json.dump({"w": float(w)}, fh)


def write_results(out_dir: str, info: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "final_info.json"), "w") as fh:
        json.dump(info, fh, indent=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("evaluate")
    ev.add_argument("--run_dir", required=True)
    ev.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(os.path.join(args.run_dir, "weights.json")) as fh:
        w = float(json.load(fh)["w"])
    with open(args.out, "w") as fh:
        json.dump({"eval": evaluate(w)}, fh)
'''

PLOT = '''\
"""The plot script the agent edits: one bar per run."""
import glob
import json

import matplotlib.pyplot as plt

runs = sorted(glob.glob("run_*/final_info.json"))
errs = [json.load(open(p))["eval"]["error"] for p in runs]
plt.bar(range(len(errs)), errs)
plt.xlabel("run")
plt.ylabel("error")
plt.savefig("error.png")
'''

NOTES = "# Notes\n\nThe orchestrator writes each validated run's results here.\n"

REQUIREMENTS = "matplotlib\n"

IDEA = """\
{{"name": "first", "title": "A first idea", "template": ".",
 "experiment": "Make the final error smaller than the baseline's within the same number of steps.",
 "max_runs": 2}}
"""
