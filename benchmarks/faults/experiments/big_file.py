"""Fault: a checkpoint that grows toward 10 GB. Bounded: real bytes, and it stops by itself at 2 GB."""
import argparse
import os

CHUNK = 8 << 20
CAP = 2 << 30  # of the 10 GB it would write

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    block = b"\x01" * CHUNK
    with open(os.path.join(args.out_dir, "checkpoint.bin"), "wb") as fh:
        for _ in range(CAP // CHUNK):
            fh.write(block)
            fh.flush()
