"""Fault: a double-forked grandchild in its own session, with its environment wiped (no token to find it
by), that would outlive the run; the run itself hangs past its time limit."""
import os
import subprocess
import sys
import time

if os.fork() == 0:  # the child: start the grandchild detached, then vanish
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", os.getcwd()],
                     env={}, start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os._exit(0)
time.sleep(600)
