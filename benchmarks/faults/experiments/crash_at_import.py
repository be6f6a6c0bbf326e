"""Fault: the edit imports a module that does not exist: the run dies before it starts."""
import argparse

import torchh  # noqa: F401  (a typo an agent makes)
from harness import evaluate, write_results

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    write_results(args.out_dir, {"training": {"steps_executed": 1, "final_loss": 0.0}, "eval": evaluate(3.0)})
