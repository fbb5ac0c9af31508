"""Two servers already running, one load generator case, alternated A B A B: the ratio
pair by pair, so a comparison holds while the machine's speed drifts.

    python -m bench.pair --ports 31001,31002 --runs 8 -- \
        echo --size 1048576 --binary --max-msgs 300 --min-msgs 2 --duration 200 --warmup 0

The figure is the load generator's own: MB/s for `--binary` echoes, messages/s for other
echoes, saturated deliveries/s for `fanout` (give `--path /chat/ROOM?name=`; a fresh room
is used per run), or server CPU per delivery at a fixed rate with `--cpu` (the servers'
pids are found by port). Used for the before/after comparisons in docs/performance.md;
`python -m bench.run` is the full, documented run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess

from bench import loadgen
from bench.procs import CLIENT_CPU


def server_pid(port: int) -> str:
    """The pid of the process listening on `port` (from `ss`)."""
    out = subprocess.run(
        ["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    marker = "pid="
    if marker not in out:
        raise SystemExit(f"nothing listens on port {port}")
    return out.split(marker, 1)[1].split(",", 1)[0]


def figure(mode: str, result: dict, cpu: bool, binary: bool) -> float:
    if mode == "fanout":
        part = result["fixed" if cpu else "saturated"]
        return part["cpu_us_per_delivery" if cpu else "deliveries_per_s"]
    return result["mb_per_s" if binary else "msgs_per_s"]


def run_once(binary: str, mode: str, args: list[str], port: int, pid: str) -> dict:
    argv = ["taskset", "-c", str(CLIENT_CPU), binary, mode, "--port", str(port),
            "--pids", pid, *args]
    if mode == "fanout":
        argv = [a.replace("ROOM", f"pair{random.randrange(10**9)}") for a in argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300).stdout
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"loadgen failed against port {port}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ports", required=True, help="A,B: the two servers' ports")
    ap.add_argument("--runs", type=int, default=6, help="pairs to run (1 to 50)")
    ap.add_argument("--cpu", action="store_true", help="fanout: server CPU per delivery")
    ap.add_argument("case", nargs=argparse.REMAINDER, help="-- MODE [loadgen options]")
    args = ap.parse_args()
    case = args.case[1:] if args.case[:1] == ["--"] else args.case
    if not case or not 1 <= args.runs <= 50:
        ap.error("give 1 to 50 runs and a case: -- echo|fanout [options]")
    mode, options = case[0], case[1:]
    ports = [int(p) for p in args.ports.split(",")]
    if len(ports) != 2:
        ap.error("--ports takes two ports")
    binary = str(loadgen.build())
    pids = [server_pid(p) for p in ports]
    values: list[list[float]] = [[], []]
    ratios = []
    for _ in range(args.runs):
        pair = []
        for side in (0, 1):
            result = run_once(binary, mode, options, ports[side], pids[side])
            pair.append(figure(mode, result, args.cpu, "--binary" in options))
            values[side].append(pair[-1])
        ratios.append(pair[1] / pair[0] if pair[0] else float("nan"))
    print(
        f"A (port {ports[0]}) median {statistics.median(values[0]):,.2f}; "
        f"B (port {ports[1]}) median {statistics.median(values[1]):,.2f}; "
        f"B/A median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {args.runs} pairs)"
    )


if __name__ == "__main__":
    main()
