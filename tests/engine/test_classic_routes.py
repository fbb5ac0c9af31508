"""The engine owns its connections: classic gevent-websocket routes in every serving mode.

A route that only sends, or is busy, still has its pings answered and its peer's close
seen, because one reader per connection does that whatever the view is doing.
"""

from __future__ import annotations

import re
import time

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.sync.client import connect

from tests.support.servers import running_server

KEEPALIVE = {"WSAPP_PING_INTERVAL": "1", "WSAPP_PING_TIMEOUT": "1", "WSAPP_RATE_LIMIT": "0"}
APP = "tests.apps.classic_routes:app"


@pytest.fixture(scope="module", params=["serve", "gunicorn", "uwsgi"])
def classic(request):
    with running_server(request.param, env=KEEPALIVE, app=APP) as srv:
        yield srv


def test_classic_echo_loop_echoes_text_and_binary(classic):
    with connect(classic.url("/classic-echo"), max_size=None) as ws:
        for message in ("hello", "ünïcødé", b"\x00\xff" * 1000, b"", ""):
            ws.send(message)
            assert ws.recv(timeout=5) == message


def test_send_only_route_lives_through_keepalive_and_delivers_everything(classic):
    """Pings every second, 1 s to answer: the view never calls receive(), the client
    answers every ping (websockets does), and all 16 messages over 8 s arrive."""
    started = time.monotonic()
    with connect(classic.url("/ticker")) as ws:
        got = [ws.recv(timeout=5) for _ in range(16)]
        assert got == [f"tick {i}" for i in range(16)]
        assert time.monotonic() - started >= 7.5
        with pytest.raises(ClientClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000, "view end: close 1000"
    assert "keepalive timeout" not in classic.log_text()


def test_ping_answered_while_the_view_sleeps(classic):
    with connect(classic.url("/sleepy")) as ws:
        assert ws.recv(timeout=5) == "ready"  # the view is now inside its 3 s sleep
        started = time.monotonic()
        for _ in range(3):
            started = time.monotonic()
            assert ws.ping(b"are you there").wait(2.0)
            assert time.monotonic() - started < 0.2
        assert time.monotonic() - started < 2.0, "the pings were not sent during the sleep"
        ws.send("after the nap")
        assert ws.recv(timeout=5) == "after the nap"


def test_busy_view_sees_the_peer_close_at_once(classic):
    with connect(classic.url("/busy")) as ws:
        assert ws.recv(timeout=5) == "ready"
        closed_at = time.time()
        ws.close(4001, "bye")
    text = classic.wait_for_log("busy view saw the close")
    match = re.findall(
        r"busy view saw the close at ([\d.]+) \(code (\d+)\), receive\(\) -> (\w+)", text
    )[-1]
    assert float(match[0]) - closed_at < 0.2
    assert match[1] == "4001" and match[2] == "None"
