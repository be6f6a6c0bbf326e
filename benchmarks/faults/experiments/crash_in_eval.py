"""Fault: training works, then the evaluation code the agent added divides by zero."""
import argparse
import os

from harness import evaluate, write_results

STEPS = 20
LR = 0.05


def train(steps, lr):
    w, executed, loss = 0.0, 0, None
    for _ in range(steps):
        w -= lr * 2 * (w - 3.0)
        loss = (w - 3.0) * (w - 3.0)
        executed += 1
    return w, executed, loss


def relative_improvement(loss, baseline_loss):
    return (baseline_loss - loss) / (baseline_loss - baseline_loss)  # the bug


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    steps = 2 if os.environ.get("ORCHESTRATE_SMOKE") == "1" else STEPS
    w, executed, loss = train(steps, LR)
    results = {"training": {"steps_planned": steps, "steps_executed": executed, "final_loss": loss}, "eval": evaluate(w)}
    results["eval"]["improvement"] = relative_improvement(loss, 9.0)
    write_results(args.out_dir, results)
