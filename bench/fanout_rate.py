"""Fan-out at a fixed message rate (issue 7: 1000 members, p99 at 20 msg/s), stock vs wsapp.

`python -m bench.fanout_rate [--members 1000] [--rate 20] [--duration 5] [--repeat 2]
[--servers stock,wsapp,wsapp-send]`

Same servers, pinning and C load generator as `python -m bench.run`, but the offered load is
given in messages per second (the issue's terms) instead of deliveries per second. The
servers take turns within each repeat; `wsapp-send` is wsapp with WSAPP_IO_URING=0 (one
send() per member instead of one io_uring call per broadcast). The summary gives each
server's median and the median of the per-repeat ratios to stock.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench import loadgen, procs

KEYS = ("deliveries_per_s", "p50_ms", "p99_ms", "max_ms", "cpu_us_per_delivery", "lost")
SERVERS = {
    "stock": ("stock", {}),
    "wsapp": ("wsapp", {}),
    "wsapp-send": ("wsapp", {"WSAPP_IO_URING": "0"}),
}


def one(kind: str, members: int, rate: float, duration: float, log_dir: Path,
        extra_env: dict[str, str] | None = None) -> dict:
    nofile = procs.raise_nofile(members * 2 + 1000)
    with procs.running(kind, log_dir, nofile, extra_env) as server:
        room = f"rate-{kind}-{int(time.time() * 1000) % 10**9}"
        result = loadgen.run(
            "fanout",
            [
                "--port", str(server.port),
                "--path", f"/chat/{room}?name=",
                "--members", str(members),
                "--rate", str(rate),
                "--duration", str(duration),
                "--sat-duration", "1",
                "--window", "16",
                "--settle-max", "30",
                "--timeout", "90",
            ],
            server.pids(),
        )
    fixed = result["fixed"]
    return {k: fixed[k] for k in KEYS} | {"duplicates": result.get("duplicates", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=20.0, help="messages per second from the sender"
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--servers", default="stock,wsapp", help=f"comma-separated, from {', '.join(SERVERS)}"
    )
    args = parser.parse_args()
    names = args.servers.split(",")
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        parser.error(f"unknown server {unknown[0]!r} (known: {', '.join(SERVERS)})")
    loadgen.build()
    log_dir = Path(tempfile.mkdtemp(prefix="wsapp-fanout-rate-"))
    print(
        f"fan-out to {args.members} members at {args.rate:g} msg/s, {args.duration:g} s per run\n"
    )
    print(
        "| server | run | deliveries/s | p50 ms | p99 ms | max ms | CPU us/delivery "
        "| lost | duplicates |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for attempt in range(1, args.repeat + 1):
        for name in names:
            kind, env = SERVERS[name]
            r = one(kind, args.members, args.rate, args.duration, log_dir, env)
            cpu[name].append(r["cpu_us_per_delivery"])
            print(
                f"| {name} | {attempt} | {r['deliveries_per_s']:,.0f} | {r['p50_ms']:.2f} "
                f"| {r['p99_ms']:.2f} | {r['max_ms']:.2f} | {r['cpu_us_per_delivery']:.1f} "
                f"| {r['lost']} | {r['duplicates']} |",
                flush=True,
            )
    print("\n| server | median CPU us/delivery | range | median ratio to stock (per repeat) |")
    print("|---|---:|---|---:|")
    for name in names:
        xs = cpu[name]
        ratio = ""
        if "stock" in cpu and name != "stock":
            ratio = (
                f"{statistics.median(x / s for x, s in zip(xs, cpu['stock'], strict=True)):.2f}x"
            )
        print(
            f"| {name} | {statistics.median(xs):.1f} | {min(xs):.1f} to {max(xs):.1f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
