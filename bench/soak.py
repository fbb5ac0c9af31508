"""Soak test (issue 6): `python -m bench.soak` (what `make soak` runs), about a minute.

2000 chat clients across 50 rooms of one `python -m wsapp serve` (default settings: memory
broker, history 100, rate limit 20/s, 100 connections per IP; the clients spread over 40
loopback source addresses). Every client sends a message now and then; clients drop at
random (half with a clean close, half by cutting TCP without a close frame) and come back
after up to a second with `since=<last id seen>`. At the end, when every client is back and
traffic has drained, each client's received ids are checked against everything published
in its room:

    lost        messages published in the client's room that it never received (must be 0)
    duplicates  messages a client received twice (must be 0)

with the server's RSS at start, at peak, with everyone connected at the end, and after
everyone left. Results go to stdout and bench/results/soak.json.

    python -m bench.soak [--clients 2000] [--rooms 50] [--duration 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
PER_SOURCE = 50  # connections per loopback source address (server limit: 100 per IP)
SEND_EVERY = (10.0, 30.0)  # seconds between a client's messages: 2000 clients, about 100 msg/s


def id_key(message_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in message_id.split("-"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Client:
    n: int
    room: str
    source: str
    received: set[str] = field(default_factory=set)
    last_id: str | None = None
    duplicates: int = 0
    sent: int = 0
    acked: int = 0
    connects: int = 0
    drops_clean: int = 0
    drops_abort: int = 0
    not_recovered: int = 0
    errors: int = 0
    ws: object = None
    ends: float = 0.0
    next_send: float = 0.0

    @property
    def connected(self) -> bool:
        return self.ws is not None


@dataclass
class Soak:
    port: int
    clients: list[Client]
    churn: bool = True
    sending: bool = True
    running: bool = True
    # room -> ids (acks and deliveries)
    published: dict[str, set[str]] = field(default_factory=dict)
    deliveries: int = 0
    last_delivery: float = 0.0

    def url(self, client: Client) -> str:
        query = f"name=c{client.n}"
        if client.last_id is not None:
            query += f"&since={client.last_id}"
        return f"ws://{HOST}:{self.port}/chat/{client.room}?{query}"

    async def run_client(self, client: Client, ready: asyncio.Event | None) -> None:
        """Connect, read everything until the connection ends, come back with since=."""
        rng = random.Random(client.n)
        while self.running:
            try:
                async with connect(
                    self.url(client),
                    local_addr=(client.source, 0),
                    ping_interval=None,
                    open_timeout=30,
                    close_timeout=2,
                    max_queue=None,
                ) as ws:
                    client.connects += 1
                    hello = json.loads(await ws.recv())
                    assert hello["type"] == "hello", hello
                    if hello.get("recovered") is False:
                        client.not_recovered += 1
                    client.ws = ws
                    client.ends = time.monotonic() + rng.expovariate(1 / 20.0)
                    if ready is not None:
                        ready.set()
                        ready = None
                    async for raw in ws:
                        self.on_event(client, raw)
            except ConnectionClosed:
                pass
            except Exception:  # noqa: BLE001 - refused or failed connects are counted, then retried
                client.errors += 1
            client.ws = None
            if self.running:
                await asyncio.sleep(rng.uniform(0.05, 1.0))

    def on_event(self, client: Client, raw: str) -> None:
        event = json.loads(raw)
        kind = event.get("type")
        if kind == "message":
            mid = event["id"]
            if mid in client.received:
                client.duplicates += 1
            else:
                client.received.add(mid)
                self.published.setdefault(client.room, set()).add(mid)
            if client.last_id is None or id_key(mid) > id_key(client.last_id):
                client.last_id = mid
            self.deliveries += 1
            self.last_delivery = time.monotonic()
        elif kind == "ack":
            client.acked += 1
            self.published.setdefault(client.room, set()).add(event["id"])

    async def drive(self) -> None:
        """One loop for every client's sending and dropping (cheaper than a timer each)."""
        rngs = {c.n: random.Random(-c.n - 1) for c in self.clients}
        for c in self.clients:
            c.next_send = time.monotonic() + rngs[c.n].uniform(1.0, SEND_EVERY[1])
        while self.running:
            now = time.monotonic()
            for c in self.clients:
                ws = c.ws
                if ws is None:
                    continue
                rng = rngs[c.n]
                if self.churn and now >= c.ends:
                    c.ws = None
                    if rng.random() < 0.5:
                        c.drops_clean += 1
                        asyncio.create_task(ws.close())  # noqa: RUF006 - fire and forget
                    else:
                        c.drops_abort += 1
                        ws.transport.abort()
                elif self.sending and now >= c.next_send:
                    c.sent += 1
                    c.next_send = now + rng.uniform(*SEND_EVERY)
                    text = json.dumps(
                        {"type": "message", "text": f"c{c.n} #{c.sent}", "ref": str(c.sent)}
                    )
                    asyncio.create_task(self._send(ws, text))  # noqa: RUF006
            await asyncio.sleep(0.1)

    @staticmethod
    async def _send(ws, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(text)


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WSAPP_LOG_LEVEL": "WARNING"}
    log = open(log_path, "wb")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsapp", "serve", "--host", HOST, "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start; log: {log_path}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def run_round(args: argparse.Namespace, port: int, pid: int, number: int) -> dict:
    """One round: everyone joins, traffic with churn, drain, check, everyone leaves."""
    t0 = time.monotonic()
    clients = [
        Client(n, f"soak-{n % args.rooms}", f"127.0.1.{1 + n // PER_SOURCE}")
        for n in range(args.clients)
    ]
    soak = Soak(port, clients)
    soak.churn = False
    tasks: list[asyncio.Task] = []
    rss: dict[str, int] = {}
    try:
        # 1. everyone joins (bounded concurrency), before any message flows
        gate = asyncio.Semaphore(200)
        readies = []

        async def start(c: Client, ready: asyncio.Event) -> None:
            async with gate:
                tasks.append(asyncio.create_task(soak.run_client(c, ready)))
                await asyncio.wait_for(ready.wait(), 60)

        starters = []
        for c in clients:
            ready = asyncio.Event()
            readies.append(ready)
            starters.append(asyncio.create_task(start(c, ready)))
        await asyncio.gather(*starters)
        connect_s = time.monotonic() - t0
        rss["all_connected"] = rss_kib(pid)
        print(
            f"round {number}: {args.clients} clients connected in {connect_s:.1f}s; "
            f"server RSS {rss['all_connected'] / 1024:.1f} MiB",
            flush=True,
        )

        # 2. traffic with churn
        started = time.monotonic()
        tasks.append(asyncio.create_task(soak.drive()))
        await asyncio.sleep(2.0)
        soak.churn = True
        while time.monotonic() - started < args.duration:
            await asyncio.sleep(5)
            print(
                f"  t={time.monotonic() - started:4.0f}s "
                f"online={sum(c.connected for c in clients)} "
                f"sent={sum(c.sent for c in clients)} delivered={soak.deliveries} "
                f"reconnects={sum(c.connects for c in clients) - len(clients)} "
                f"rss={rss_kib(pid) / 1024:.1f} MiB",
                flush=True,
            )

        # 3. stop churn and sending; wait until everyone is back and traffic has drained
        soak.churn = False
        await asyncio.sleep(1.5)  # a session that just ended is reconnecting
        soak.sending = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(c.connected for c in clients) and time.monotonic() - soak.last_delivery > 2.0:
                break
            await asyncio.sleep(0.2)
        rss["end_connected"] = rss_kib(pid)
        traffic_s = time.monotonic() - started
    finally:
        soak.running = False
        for c in clients:  # everyone leaves
            if c.ws is not None:
                tasks.append(asyncio.create_task(c.ws.close()))
        await asyncio.sleep(1.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(3.0)  # the server notices every close
    rss["after_leave"] = rss_kib(pid)

    lost = {}
    for c in clients:
        missing = soak.published.get(c.room, set()) - c.received
        if missing:
            lost[c.n] = len(missing)
    return {
        "round": number,
        "connect_seconds": round(connect_s, 1),
        "traffic_seconds": round(traffic_s, 1),
        "sent": sum(c.sent for c in clients),
        "acked": sum(c.acked for c in clients),
        "published": sum(len(ids) for ids in soak.published.values()),
        "delivered": soak.deliveries,
        "expected_deliveries": sum(len(soak.published.get(c.room, ())) for c in clients),
        "lost": sum(lost.values()),
        "clients_with_loss": len(lost),
        "duplicates": sum(c.duplicates for c in clients),
        "reconnects": sum(c.connects for c in clients) - len(clients),
        "drops_clean": sum(c.drops_clean for c in clients),
        "drops_abort": sum(c.drops_abort for c in clients),
        "resumes_not_recovered": sum(c.not_recovered for c in clients),
        "client_errors": sum(c.errors for c in clients),
        "rss_kib": rss,
    }


async def main_async(args: argparse.Namespace) -> dict:
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="wsapp-soak-")) / "server.log"
    proc = start_server(port, log_path)
    pid = proc.pid
    rss = {"start": rss_kib(pid), "peak": 0}

    async def sample() -> None:
        while proc.poll() is None:
            rss["peak"] = max(rss["peak"], rss_kib(pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    rounds = []
    try:
        for number in range(1, args.rounds + 1):
            rounds.append(await run_round(args, port, pid, number))
        rss["final_immediate"] = rss_kib(pid)
        # The server's housekeeping returns freed memory to the OS within about 10 s of a
        # wave of disconnects (wsapp.engine.housekeeping); "final" is read after it ran.
        await asyncio.sleep(12)
        rss["final"] = rss_kib(pid)
    finally:
        sampler.cancel()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    totals = {
        k: sum(r[k] for r in rounds)
        for k in rounds[0]
        if isinstance(rounds[0][k], int) and k != "round"
    }
    return {
        "command": "python -m bench.soak " + " ".join(sys.argv[1:]),
        "clients": args.clients,
        "rooms": args.rooms,
        "rounds": rounds,
        "totals": totals,
        "rss_kib": rss,
        "server_log": str(log_path),
        "server_exit": proc.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of traffic with churn per round"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds on the same server (RSS must not ratchet up)"
    )
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (max(soft, min(hard, args.clients * 2 + 1000)), hard)
    )
    result = asyncio.run(main_async(args))
    print()
    for r in result["rounds"]:
        rr = r["rss_kib"]
        print(
            f"round {r['round']}: sent {r['sent']}  published {r['published']}  "
            f"delivered {r['delivered']} of {r['expected_deliveries']}  "
            f"lost {r['lost']}  duplicates {r['duplicates']}  "
            f"reconnects {r['reconnects']} (clean {r['drops_clean']}, aborted {r['drops_abort']})  "
            f"not recovered {r['resumes_not_recovered']}  client errors {r['client_errors']}  "
            f"RSS MiB connected {rr['all_connected'] / 1024:.1f} "
            f"/ end {rr['end_connected'] / 1024:.1f} / after leave {rr['after_leave'] / 1024:.1f}"
        )
    rss = result["rss_kib"]
    print(
        f"server RSS MiB: start {rss['start'] / 1024:.1f}  peak {rss['peak'] / 1024:.1f}  "
        f"right after the last round {rss['final_immediate'] / 1024:.1f}  "
        f"final (12 s later) {rss['final'] / 1024:.1f}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    t = result["totals"]
    ok = t["lost"] == 0 and t["duplicates"] == 0 and t["delivered"] == t["expected_deliveries"]
    print(f"lost {t['lost']}  duplicates {t['duplicates']}: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
