"""Fault: the experiment writes outside its workspace: beside it, and into a folder of the machine
(the benchmark names both in fault.json)."""
import argparse
import json

from harness import evaluate, write_results

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    with open("fault.json") as fh:
        targets = json.load(fh)["escape"]
    for path in targets:
        with open(path, "w") as fh:
            fh.write("escaped\n")
    write_results(args.out_dir, {"training": {"steps_executed": 1, "final_loss": 0.1}, "eval": evaluate(2.9)})
