"""Fault: the edit changes nothing that runs (a comment and a constant nobody reads): the metrics equal the baseline's."""
import argparse
import os

from harness import evaluate, write_results

STEPS = 20
LR = 0.05
WARMUP = 5  # the agent's "learning-rate warmup": never used


def train(steps, lr):
    w, executed, loss = 0.0, 0, None
    for _ in range(steps):
        w -= lr * 2 * (w - 3.0)
        loss = (w - 3.0) * (w - 3.0)
        executed += 1
    return w, executed, loss


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    steps = 2 if os.environ.get("ORCHESTRATE_SMOKE") == "1" else STEPS
    w, executed, loss = train(steps, LR)
    write_results(args.out_dir, {
        "training": {"steps_planned": steps, "steps_executed": executed, "final_loss": loss},
        "eval": evaluate(w),
    })
