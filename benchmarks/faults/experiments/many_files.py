"""Fault: checkpoints every few steps, each under the file-size cap, until the disk fills.
Bounded: it stops by itself at 2 GB of real bytes."""
import argparse
import os
import time

CHUNK = 16 << 20
CAP = 2 << 30

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    block = b"\x01" * CHUNK
    for i in range(CAP // CHUNK):
        with open(os.path.join(args.out_dir, f"ckpt_{i:04d}.bin"), "wb") as fh:
            fh.write(block)
        time.sleep(0.02)
