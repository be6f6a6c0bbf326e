"""Fault: a learning rate that makes training diverge: the loss overflows to inf, then NaN."""
import argparse
import os

from harness import evaluate, write_results

STEPS = 20
LR = 1e200


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
    steps = 3 if os.environ.get("ORCHESTRATE_SMOKE") == "1" else STEPS
    w, executed, loss = train(steps, LR)
    write_results(args.out_dir, {
        "training": {"steps_planned": steps, "steps_executed": executed, "final_loss": loss},
        "eval": evaluate(w),
    })
