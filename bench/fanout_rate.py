"""Fan-out at a fixed message rate (issue 7: 1000 members, p99 at 20 msg/s), stock vs wsapp.

`python -m bench.fanout_rate [--members 1000] [--rate 20] [--duration 5] [--repeat 2]`

Same servers, pinning and C load generator as `python -m bench.run`, but the offered load is
given in messages per second (the issue's terms) instead of deliveries per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import loadgen, procs

KEYS = ("deliveries_per_s", "p50_ms", "p99_ms", "max_ms", "cpu_us_per_delivery", "lost")


def one(kind: str, members: int, rate: float, duration: float, log_dir: Path) -> dict:
    nofile = procs.raise_nofile(members * 2 + 1000)
    with procs.running(kind, log_dir, nofile) as server:
        room = f"rate-{kind}-{int(time.time() * 1000) % 10**9}"
        result = loadgen.run("fanout", [
            "--port", str(server.port), "--path", f"/chat/{room}?name=", "--members", str(members),
            "--rate", str(rate), "--duration", str(duration), "--sat-duration", "1", "--window", "16",
            "--settle-max", "30", "--timeout", "90"], server.pids())
    fixed = result["fixed"]
    return {k: fixed[k] for k in KEYS} | {"duplicates": result.get("duplicates", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second from the sender")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    loadgen.build()
    log_dir = Path(tempfile.mkdtemp(prefix="wsapp-fanout-rate-"))
    print(f"fan-out to {args.members} members at {args.rate:g} msg/s, {args.duration:g} s per run\n")
    print("| server | run | deliveries/s | p50 ms | p99 ms | max ms | CPU us/delivery | lost | duplicates |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for attempt in range(1, args.repeat + 1):
        for kind in ("stock", "wsapp"):
            r = one(kind, args.members, args.rate, args.duration, log_dir)
            print(f"| {kind} | {attempt} | {r['deliveries_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['max_ms']:.2f} | {r['cpu_us_per_delivery']:.1f} | {r['lost']} | {r['duplicates']} |", flush=True)


if __name__ == "__main__":
    main()
