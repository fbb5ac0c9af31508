"""Keepalive (dead peers are dropped and leave their rooms) and /metrics (issue 6)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import time

import pytest

from tests.support.rawws import ConnectionClosedNoFrame, Op
from tests.support.servers import running_server
from wsapp.engine.housekeeping import METRICS_FLUSH_INTERVAL

from .conftest import chat_events, connect, http_get, metric_value, refusal, wait_connections


@pytest.fixture(scope="module")
def keepalive_server():
    env = {
        "WSAPP_PING_INTERVAL": "0.3",
        "WSAPP_PING_TIMEOUT": "0.5",
        "WSAPP_CLOSE_TIMEOUT": "0.5",
        "WSAPP_SEND_QUEUE_BYTES": "16384",
        "WSAPP_RATE_LIMIT": "0",
    }
    with running_server("serve", env=env) as srv:
        yield srv


def test_peer_that_never_answers_pings_is_dropped_and_leaves_the_room(keepalive_server):
    srv = keepalive_server
    watcher = connect(srv, "/chat/alive?name=watcher")
    dead = connect(srv, "/chat/alive?name=zombie")
    dead.auto_pong = False
    with watcher, dead:
        chat_events(watcher, "hello")
        joined = chat_events(watcher, "join")[-1]
        assert joined["name"] == "zombie"
        started = time.monotonic()
        # The watcher answers pings (recv does), the zombie reads nothing and answers nothing.
        left = chat_events(watcher, "leave", timeout=4.0)[-1]
        assert left["name"] == "zombie"
        assert time.monotonic() - started < 3.0
        srv.wait_for_log("keepalive timeout: no pong")
        with pytest.raises(ConnectionClosedNoFrame):
            while True:
                frame = dead.recv_frame(2.0)
                assert frame.opcode in (Op.TEXT, Op.PING, Op.CLOSE)
        # Presence, as the API sees it, no longer lists the zombie; the watcher stays.
        rooms = json.loads(http_get(srv, "/api/rooms")[1])["rooms"]
        members = next(r["members"] for r in rooms if r["room"] == "alive")
        names = (
            [m["name"] if isinstance(m, dict) else m for m in members]
            if isinstance(members, list)
            else members
        )
        assert "zombie" not in str(names)
        assert watcher.server_pings, "the live client was pinged too"


def test_live_idle_peer_is_kept(keepalive_server):
    ws = connect(keepalive_server)
    with ws:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # idle but answering pings (recv auto-pongs)
            with contextlib.suppress(TimeoutError):
                ws.next_frame(0.2)
        ws.echo("still here")
        assert ws.server_pings


def _scrape(srv) -> str:
    status, text = http_get(srv, "/metrics")
    assert status == 200
    return text


def test_metrics_single_process(keepalive_server):
    srv = keepalive_server
    before = _scrape(srv)
    ws = connect(srv)
    with ws:
        for _ in range(5):
            ws.echo("metric me")
        text = _scrape(srv)
        assert metric_value(text, "wsapp_connections_open", endpoint="echo") == 1
        ws.send_close(1000)
        ws.expect_close(1000)
    assert refusal(srv, headers={"Origin": "http://evil.example"}).status == 403
    wait_connections(srv, 0)
    after = _scrape(srv)
    assert metric_value(after, "wsapp_connections_open", endpoint="echo") == 0
    for name, labels, delta in [
        ("wsapp_messages_total", {"endpoint": "echo", "direction": "in"}, 5),
        ("wsapp_messages_total", {"endpoint": "echo", "direction": "out"}, 5),
        ("wsapp_closes_total", {"endpoint": "echo", "code": "1000"}, 1),
        ("wsapp_handshake_rejections_total", {"reason": "origin"}, 1),
    ]:
        got = metric_value(after, name, **labels) - metric_value(before, name, **labels)
        assert got >= delta if "out" in labels.values() else got == delta, (name, labels, got)
    assert metric_value(after, "wsapp_bytes_total", endpoint="echo", direction="in") > 0
    # The test above dropped a zombie: a keepalive timeout, closed 1011.
    assert metric_value(after, "wsapp_keepalive_timeouts_total") >= 1
    assert metric_value(after, "wsapp_fanout_seconds_count") >= 1  # chat join/leave events
    for family in (
        "wsapp_slow_consumer_drops_total",
        "wsapp_broker_errors_total",
        "wsapp_fanout_seconds_bucket",
    ):
        assert f"# TYPE {family.removesuffix('_total').removesuffix('_bucket')}" in after


def test_metrics_count_slow_consumers(keepalive_server):
    """A chat member that stops reading overflows its send queue (50 here): 1008, counted."""
    srv = keepalive_server
    before = metric_value(_scrape(srv), "wsapp_slow_consumer_drops_total", endpoint="chat")
    slow = connect(srv, "/chat/slow?name=slow")
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sender = connect(srv, "/chat/slow?name=sender")
    with sender, slow:
        chat_events(sender, "hello")
        text = "x" * 15000
        deadline = time.monotonic() + 5
        for i in range(400):
            sender.send_text(text)
            chat_events(sender, "message")  # the sender reads its own copy
            if (
                i % 20 == 0
                and metric_value(_scrape(srv), "wsapp_slow_consumer_drops_total", endpoint="chat")
                > before
            ):
                break
            assert time.monotonic() < deadline, "no slow-consumer drop counted"
    srv.wait_for_log("slow consumer")


def _open_pids(srv) -> set[str]:
    """Worker pids that logged a `ws open`."""
    return {int(pid) for pid in re.findall(r"wsapp\.handler \[(\d+)\] ws open", srv.log_text())}


def _gone(pid: int) -> bool:
    """The process has exited (a zombie the master has not reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def test_metrics_across_gunicorn_workers(gunicorn_workers):
    """Several workers share PROMETHEUS_MULTIPROC_DIR: a worker's counters outlive it and
    are reported by whichever worker answers the scrape; its open-connection gauge goes."""
    srv = gunicorn_workers
    held = [connect(srv) for _ in range(5)]
    try:
        for ws in held:
            for _ in range(3):
                ws.echo("count me")
        pids = _open_pids(srv)
        assert pids, "no worker logged the sockets it opened"
        # A scrape flushes the answering worker's counts at once; the other worker's are
        # exported by its housekeeping every METRICS_FLUSH_INTERVAL (2 s).
        deadline = time.monotonic() + 3 * METRICS_FLUSH_INTERVAL
        while True:
            text = _scrape(srv)
            messages = metric_value(text, "wsapp_messages_total", endpoint="echo", direction="in")
            if messages >= 15 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert metric_value(text, "wsapp_connections_open", endpoint="echo") == 5
        assert messages >= 15
        # Kill the worker(s) holding the sockets outright: no chance to update anything.
        for pid in pids:
            assert pid != srv.proc.pid
            os.kill(pid, signal.SIGKILL)
    finally:
        for ws in held:
            ws.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            health = json.loads(http_get(srv, "/healthz")[1])
        except OSError:
            health = {}
        # SIGKILL takes effect when the kernel next runs the worker: on a busy machine it may
        # still be exiting when the other worker answers. The gauges below speak of workers
        # that are gone, so wait until they are.
        if health.get("pid") and health["pid"] not in pids and all(_gone(int(p)) for p in pids):
            break
        assert time.monotonic() < deadline, "no replacement worker answered"
        time.sleep(0.1)
    for _ in range(6):  # whichever worker answers
        text = _scrape(srv)
        assert (
            metric_value(text, "wsapp_messages_total", endpoint="echo", direction="in") >= messages
        )
        assert metric_value(text, "wsapp_connections_open", endpoint="echo") == 0


def test_handshake_protections_under_gunicorn(gunicorn_workers):
    srv = gunicorn_workers
    assert refusal(srv, headers={"Origin": "http://evil.example"}).status == 403
    from .test_hostile import oversized_headers_case, slowloris_case

    oversized_headers_case(srv)
    slowloris_case(srv, sockets=6)
    ws = connect(srv)
    with ws:
        ws.echo("gunicorn still serves")
