"""The fixed command `app.py` streams: a stand-in for a build, a deploy, `vmstat 1`.

Prints its pid, then one numbered line every 0.2 s, 20 in all (about 4 s), flushing each
line so it reaches the pipe at once, and exits 0.
"""

import os
import sys
import time

LINES = 20
INTERVAL = 0.2

print(f"pid {os.getpid()}", flush=True)
for n in range(1, LINES + 1):
    time.sleep(INTERVAL)
    print(f"line {n} of {LINES}", flush=True)
sys.exit(0)
