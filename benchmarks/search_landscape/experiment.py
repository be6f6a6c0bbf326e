"""A synthetic landscape for the search benchmark: the score is a known function of the three settings below
(two Gaussian hills: the global one at (0.80, 0.25, 0.60) worth 1.0, a local one at (0.25, 0.70, 0.35) worth
0.6), with regions where the run crashes and one where it trains nothing. It runs in milliseconds."""

import argparse
import json
import math
import os
import time

X = 0.5
Y = 0.5
Z = 0.5
SLEEP_S = 0.0  # the benchmark sets this to give each full run a fixed duration

HILLS = [((0.80, 0.25, 0.60), 1.0, 0.15), ((0.25, 0.70, 0.35), 0.6, 0.20)]


def score(x, y, z):
    total = 0.0
    for (a, b, c), height, width in HILLS:
        d2 = (x - a) ** 2 + (y - b) ** 2 + (z - c) ** 2
        total += height * math.exp(-d2 / (2 * width**2))
    return total


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    smoke = os.environ.get("ORCHESTRATE_SMOKE") == "1"
    if X + Y > 1.25:
        raise RuntimeError(f"diverged: X + Y = {X + Y:.3f} > 1.25")
    if X > 0.85 and Z > 0.65:
        raise RuntimeError("diverged: X > 0.85 with Z > 0.65")
    time.sleep(SLEEP_S * (0.1 if smoke else 1.0))
    steps = 0 if Z < 0.1 else (2 if smoke else 10)  # Z < 0.1 trains nothing: a degenerate result
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "final_info.json"), "w") as fh:
        json.dump({"training": {"steps_executed": steps}, "score": score(X, Y, Z),
                   "config": {"x": X, "y": Y, "z": Z, "smoke": smoke}}, fh)
