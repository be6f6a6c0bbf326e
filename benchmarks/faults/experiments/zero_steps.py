"""Fault: the training loop never runs (AI Scientist's 'training_steps': 0, 'final_loss': None), yet results are written."""
import argparse
import os

from harness import evaluate, write_results

LR = 0.05


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
    steps = int(os.environ.get("STEPS", "0"))  # the config the agent meant to pass never arrives
    w, executed, loss = train(steps, LR)
    write_results(args.out_dir, {
        "training": {"steps_planned": steps, "steps_executed": executed, "final_loss": loss},
        "eval": evaluate(w),
    })
