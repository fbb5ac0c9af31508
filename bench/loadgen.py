"""Build and drive the C load generator (bench/loadgen.c), pinned to CPU 1.

The binary is compiled at bench time with the machine's gcc into bench/results/ (gitignored),
never committed. Each run returns the program's JSON plus how busy each CPU was, which is
the evidence that the client is not what limits a result.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

from bench.procs import (
    CLIENT_CPU,
    PRIORITY,
    RESULTS,
    ROOT,
    SERVER_CPU,
    busy_fraction,
    cpu_times,
    foreign_cpu,
    process_cpu,
)

SOURCE = ROOT / "bench" / "loadgen.c"
BINARY = RESULTS / "loadgen"


def build() -> Path:
    """Compile loadgen.c if the binary is missing or older than the source."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not BINARY.exists() or BINARY.stat().st_mtime < SOURCE.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(BINARY), str(SOURCE), "-lz"], check=True)
    return BINARY


def run(mode: str, args: list[str], server_pids: list[int], timeout: float = 180) -> dict:
    """Run one load generator job; raise with its stderr if it fails or prints no JSON."""
    argv = [
        *PRIORITY,
        "taskset",
        "-c",
        CLIENT_CPU,
        str(BINARY),
        mode,
        *args,
        "--pids",
        ",".join(map(str, server_pids)),
    ]
    procs0, before, t0 = process_cpu(), cpu_times(), time.monotonic()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            raise
        after, wall, procs1 = cpu_times(), time.monotonic() - t0, process_cpu()
    proc = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
    ours = {os.getpid(), child.pid, *server_pids}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"loadgen {mode} failed ({proc.returncode}): {proc.stderr.strip()[:500]}"
        )
    result = json.loads(lines[-1])
    result["command"] = shlex.join(["loadgen", mode, *args])
    result["wall_s"] = round(wall, 3)
    # Whole-run averages (setup included): the load generator's own CPU use is in
    # client_cpu_util, measured over the timed window only.
    result["cpu0_busy"] = round(busy_fraction(before, after, SERVER_CPU), 3)
    result["cpu1_busy"] = round(busy_fraction(before, after, CLIENT_CPU), 3)
    # Other engineers' test runs share these two cores: record how much CPU they took.
    result["foreign_cpu_s"] = round(foreign_cpu(procs0, procs1, ours), 3)
    return result
