"""Fault: a process that relaunches itself. Bounded so that it ends by itself even if nothing stops it:
at most 3000 forks, each child alive for 3 s."""
import os
import time

MAX_FORKS = 3000
started = 0
for _ in range(MAX_FORKS):
    try:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        started += 1
    except OSError:  # refused (a process cap): a real bomb just keeps trying
        time.sleep(0.001)
time.sleep(3)
print(f"started {started} processes")
