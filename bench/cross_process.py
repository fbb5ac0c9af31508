"""Cross-process fan-out through Redis, next to the single-process figures.

    python -m bench.cross_process [--members 1000] [--duration 4] [--rate 20] [--window 16]

Starts its own redis-server and `python -m wsapp serve` processes (pinned to CPU 0 when
`taskset` exists; the client runs on CPU 1), puts N members in one room and one sender,
and measures three set-ups with the same client:

  single process, memory broker   members and sender on one process, WSAPP_REDIS_URL unset
  single process, Redis broker    members and sender on process B, rooms through Redis
  cross-process, Redis broker     sender on process A, members on process B

Two phases each: a fixed rate (RATE messages/s, so RATE x N deliveries/s) for latency
and CPU per delivery, then saturation (WINDOW messages in flight, a message being done
when every member has it) for deliveries per second. Latency is from the sender's write
to a member's read of the frame (both in this process: one monotonic clock). Prints a
Markdown table (and JSON with --json) for docs/performance.md.

The client is gevent with a minimal frame reader (no JSON parsing), pinned to its own
core; its CPU use is reported so that a client-bound figure would show.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.pool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TASKSET = shutil.which("taskset")
CLK = os.sysconf("SC_CLK_TCK")
MARK = re.compile(rb"bench:(\d+):")

SERVER_ENV = {
    "WSAPP_RATE_LIMIT": "0",
    "WSAPP_MAX_CONN_PER_IP": "0",
    "WSAPP_MAX_CONNECTIONS": "100000",
    "WSAPP_HISTORY": "100",
    "WSAPP_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing on port {port}")


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return (
        [TASKSET, "-c", cpu, *argv] if TASKSET and os.cpu_count() and os.cpu_count() > 1 else argv
    )


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


class Procs:
    """redis-server and wsapp processes of one set-up."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def redis(self) -> str:
        port = free_port()
        p = subprocess.Popen(
            pinned(
                "0",
                [
                    "redis-server",
                    "--port", str(port),
                    "--bind", HOST,
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.tmp),
                ],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(port, p)
        self.procs["redis"] = p
        return f"redis://{HOST}:{port}/0"

    def app(self, name: str, redis_url: str | None) -> int:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSAPP_")} | SERVER_ENV
        if redis_url:
            env["WSAPP_REDIS_URL"] = redis_url
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        p = subprocess.Popen(
            pinned(
                "0", [sys.executable, "-m", "wsapp", "serve", "--host", HOST, "--port", str(port)]
            ),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_port(port, p)
        self.procs[name] = p
        return port

    def cpu(self) -> dict[str, float]:
        return {k: cpu_seconds(p.pid) for k, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


# ---- client -------------------------------------------------------------------------------


def _mask(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big") if n else 0
    body = (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big") if n else b""
    return key + body


def client_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + _mask(payload)


@dataclass
class Stats:
    members: int
    sent: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    measuring: bool = False
    deliveries: int = 0
    complete: int = 0
    last_frame: float = 0.0
    done: gevent.event.Event = field(default_factory=gevent.event.Event)

    def delivered(self, seq: int, now: float) -> None:
        self.deliveries += 1
        if self.measuring:
            self.latencies.append(now - self.sent[seq])
        self.counts[seq] += 1
        if self.counts[seq] == self.members:
            self.complete += 1
            self.done.set()


class Member:
    def __init__(self, port: int, room: str, name: str, stats: Stats | None) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /chat/{room}?name={name} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        self.sock.settimeout(None)
        self.stats = stats
        self.closed = False
        self.reader = gevent.spawn(self.read_loop)

    def read_loop(self) -> None:
        buf = self.buf
        stats = self.stats
        sock = self.sock
        while True:
            try:
                chunk = sock.recv(262144)
            except OSError:
                break
            if not chunk:
                break
            now = time.monotonic()
            buf += chunk
            pos = 0
            while True:
                if len(buf) - pos < 2:
                    break
                b1 = buf[pos + 1] & 0x7F
                hl = 2
                if b1 == 126:
                    if len(buf) - pos < 4:
                        break
                    b1 = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                    hl = 4
                elif b1 == 127:
                    if len(buf) - pos < 10:
                        break
                    b1 = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    hl = 10
                end = pos + hl + b1
                if end > len(buf):
                    break
                opcode = buf[pos] & 0x0F
                if opcode == 1 and stats is not None:
                    m = MARK.search(buf, pos + hl, end)
                    if m is not None and b'"type":"message"' in buf[pos + hl : pos + hl + 24]:
                        stats.delivered(int(m.group(1)), now)
                    if stats is not None:
                        stats.last_frame = now
                elif opcode == 9:
                    self.send(client_frame(10, buf[pos + hl : end]))
                elif opcode == 8:
                    self.closed = True
                pos = end
            buf = buf[pos:]
        self.closed = True

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.reader.kill(block=False)
        with contextlib.suppress(OSError):
            self.sock.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_setup(label: str, sender_port: int, member_port: int, procs: Procs, args) -> dict:
    room = f"bench-{int(time.time() * 1000) % 10**9}"
    max_msgs = int(args.rate * args.duration + 200_000 // 1)  # generous upper bound
    stats = Stats(members=args.members, sent=[0.0] * max_msgs, counts=[0] * max_msgs)
    pool = gevent.pool.Pool(100)
    members: list[Member] = []
    t0 = time.monotonic()
    for i in range(args.members):
        pool.spawn(lambda i=i: members.append(Member(member_port, room, f"m{i}", stats)))
    pool.join(raise_error=True)
    sender = Member(sender_port, room, "sender", None)
    # wait for the join storm (N joins to N members) to drain: no frame for 0.5 s and the
    # servers idle (under 5 % of a core) for 0.5 s
    stats.last_frame = time.monotonic()
    while time.monotonic() - t0 < 180:
        c0 = procs.cpu()
        gevent.sleep(0.5)
        busy = sum(procs.cpu().values()) - sum(c0.values())
        if time.monotonic() - stats.last_frame >= 0.5 and busy < 0.025:
            break
    setup_s = time.monotonic() - t0
    seq = 0

    def send_one() -> None:
        nonlocal seq
        text = json.dumps({"type": "message", "text": f"bench:{seq}:" + "x" * 32})
        stats.sent[seq] = time.monotonic()
        seq += 1
        sender.send(client_frame(1, text.encode()))

    # phase 1: fixed rate, latency and CPU per delivery (setup_s: joins until the room is quiet)
    cpu0 = procs.cpu()
    me0 = cpu_seconds(os.getpid())
    stats.measuring = True
    first = seq
    t_start = time.monotonic()
    interval = 1.0 / args.rate
    next_t = t_start
    while time.monotonic() - t_start < args.duration:
        send_one()
        next_t += interval
        gevent.sleep(max(0.0, next_t - time.monotonic()))
    deadline = time.monotonic() + 10
    while stats.complete < seq and time.monotonic() < deadline:
        gevent.sleep(0.01)
    fixed_elapsed = time.monotonic() - t_start
    stats.measuring = False
    cpu1 = procs.cpu()
    me1 = cpu_seconds(os.getpid())
    fixed_deliveries = sum(stats.counts[first:seq])
    lat = stats.latencies
    fixed = {
        "messages": seq - first,
        "deliveries": fixed_deliveries,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "server_cpu_us_per_delivery": (
            sum(cpu1[k] - cpu0[k] for k in cpu0) / max(1, fixed_deliveries) * 1e6
        ),
        "cpu_by_process_s": {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0},
        "client_cpu_s": round(me1 - me0, 3),
        "elapsed_s": round(fixed_elapsed, 3),
    }

    # phase 2: saturation, WINDOW messages in flight
    first = seq
    d0 = stats.deliveries
    me0 = cpu_seconds(os.getpid())
    t_start = time.monotonic()
    while time.monotonic() - t_start < args.duration and seq < max_msgs:
        while seq - stats.complete < args.window and seq < max_msgs:
            send_one()
        stats.done.clear()
        stats.done.wait(1.0)
    deadline = time.monotonic() + 20
    while stats.complete < seq and time.monotonic() < deadline:
        gevent.sleep(0.01)
    sat_elapsed = time.monotonic() - t_start
    sat_deliveries = stats.deliveries - d0
    lost = seq * args.members - sum(stats.counts[:seq])
    saturated = {
        "messages": seq - first,
        "deliveries_per_s": sat_deliveries / sat_elapsed,
        "client_cpu_share": round((cpu_seconds(os.getpid()) - me0) / sat_elapsed, 3),
        "elapsed_s": round(sat_elapsed, 3),
    }
    closed = sum(1 for m in members if m.closed)
    for m in [*members, sender]:
        m.close()
    return {
        "setup": label,
        "members": args.members,
        "setup_s": round(setup_s, 2),
        "fixed": fixed,
        "saturated": saturated,
        "lost": lost,
        "members_closed": closed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="cross-process fan-out through Redis")
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per phase")
    ap.add_argument(
        "--rate",
        type=float,
        default=None,
        help="messages/s in the fixed phase (default: 10,000 deliveries/s, as bench.run)",
    )
    ap.add_argument("--window", type=int, default=16, help="messages in flight when saturated")
    ap.add_argument("--only", choices=["memory", "redis-single", "cross"], action="append")
    ap.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = ap.parse_args(argv)
    if args.rate is None:
        args.rate = 10_000 / args.members

    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.members * 2 + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if TASKSET and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})

    setups = args.only or ["memory", "redis-single", "cross"]
    results = []
    for kind in setups:
        tmp = Path(tempfile.mkdtemp(prefix="wsapp-bench-xp-"))
        procs = Procs(tmp)
        try:
            if kind == "memory":
                b = procs.app("B", None)
                results.append(run_setup("single process, memory broker", b, b, procs, args))
            elif kind == "redis-single":
                url = procs.redis()
                b = procs.app("B", url)
                results.append(run_setup("single process, Redis broker", b, b, procs, args))
            else:
                url = procs.redis()
                a = procs.app("A", url)
                b = procs.app("B", url)
                results.append(
                    run_setup("cross-process (sender on A, members on B), Redis", a, b, procs, args)
                )
        finally:
            procs.stop()
            if os.environ.get("BENCH_KEEP_LOGS"):
                print(f"# logs in {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        r = results[-1]
        print(
            f"# {r['setup']}: sat {r['saturated']['deliveries_per_s']:.0f} deliv/s, "
            f"p50 {r['fixed']['p50_ms']:.2f} ms, p99 {r['fixed']['p99_ms']:.2f} ms, "
            f"lost {r['lost']}",
            file=sys.stderr,
        )

    print(
        f"\nFan-out, 1 sender, {args.members} members in one room; "
        f"fixed phase {args.rate:g} msg/s ({args.rate * args.members:,.0f} deliveries/s), "
        f"saturation with {args.window} messages in flight; "
        f"{args.duration:g} s per phase. Servers on CPU 0, client on CPU 1.\n"
    )
    print(
        "| set-up | deliveries/s (saturated) | p50 ms | p99 ms | server CPU us/delivery "
        "| CPU s by process (fixed phase) | lost | client CPU share (sat.) |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for r in results:
        f, s = r["fixed"], r["saturated"]
        by = ", ".join(f"{k} {v:.2f}" for k, v in f["cpu_by_process_s"].items())
        print(
            f"| {r['setup']} | {s['deliveries_per_s']:,.0f} | {f['p50_ms']:.2f} "
            f"| {f['p99_ms']:.2f} | {f['server_cpu_us_per_delivery']:.1f} | {by} | {r['lost']} "
            f"| {s['client_cpu_share']:.2f} |"
        )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
