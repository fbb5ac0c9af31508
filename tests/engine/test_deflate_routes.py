"""permessage-deflate on a user's routes, in both serving modes: classic `receive()`/`send()`
views, per-route settings (`ws.deflate_settings`), a `websockets` client with its default
compression (the same offer shape a browser sends)."""

from __future__ import annotations

import random

import pytest
from websockets.sync.client import connect

from tests.support.deflate_client import DeflateWS
from tests.support.rawws import Op
from tests.support.servers import running_server

APP = "tests.apps.deflate_routes:app"
MESSAGES = ["short", "a longer text message that is worth compressing. " * 40,
            b"\x00\x01\x02" * 5000, "ünïcødé ✓ " * 500, b""]


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def server(request):
    with running_server(request.param, env={"WSAPP_RATE_LIMIT": "0"}, app=APP) as srv:
        yield srv


def extensions(ws) -> str | None:
    return ws.response.headers.get("Sec-WebSocket-Extensions")


def test_classic_route_negotiates_and_echoes(server):
    with connect(server.url("/default-echo"), max_size=None) as ws:  # compression="deflate"
        assert extensions(ws) == (
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=12"
        )
        for message in MESSAGES * 3:
            ws.send(message)
            assert ws.recv(timeout=5) == message


def test_route_that_declines(server):
    with connect(server.url("/plain-echo"), max_size=None) as ws:
        assert extensions(ws) is None
        for message in MESSAGES:
            ws.send(message)
            assert ws.recv(timeout=5) == message


def test_route_with_its_own_settings(server):
    with connect(server.url("/tuned-echo"), max_size=None) as ws:
        assert extensions(ws) == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=12"
        )
        for message in MESSAGES:
            ws.send(message)
            assert ws.recv(timeout=5) == message
    # threshold 0: even the shortest message comes back compressed, within 10-bit windows
    with DeflateWS.connect(server.url("/tuned-echo"), "permessage-deflate", timeout=5) as raw:
        for payload in (b"x", b"short", bytes(range(256)) * 40):
            raw.send_message(Op.BINARY, payload)
            assert raw.recv_message() == (Op.BINARY, payload)
        assert raw.compressed_received == 3


def test_compressed_sends_from_a_view_keep_context(server):
    """`ws.send` of the same long message twice: the second compressed frame only refers
    back (context takeover on a classic route)."""
    with DeflateWS.connect(server.url("/default-echo"), "permessage-deflate", timeout=5) as raw:
        payload = random.Random(7).randbytes(3000)  # incompressible, but within the window
        sizes = []
        for _ in range(2):
            before = raw.bytes_received
            raw.send_message(Op.BINARY, payload)
            assert raw.recv_message() == (Op.BINARY, payload)
            sizes.append(raw.bytes_received - before)
        assert sizes[1] < sizes[0] // 4, sizes


def test_deflate_off_for_the_process():
    with running_server("serve", env={"WSAPP_DEFLATE": "0"}) as srv:
        for path in ("/echo", "/chat/off?name=ann"):
            with connect(srv.url(path), max_size=None) as ws:
                assert extensions(ws) is None
        with connect(srv.url("/echo")) as ws:
            ws.send(MESSAGES[1])
            assert ws.recv(timeout=5) == MESSAGES[1]
