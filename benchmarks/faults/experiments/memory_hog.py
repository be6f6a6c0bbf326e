"""Fault: allocates resident memory without end. Bounded: it stops by itself at 1.5 GB."""
import time

CHUNK = 32 << 20
CAP = 1536 << 20
hoard = []
while len(hoard) * CHUNK < CAP:
    hoard.append(b"\x01" * CHUNK)  # real bytes: resident, not just reserved
    time.sleep(0.005)
time.sleep(10)
print(f"held {len(hoard) * CHUNK >> 20} MB")
