"""/echo and /healthz against real server processes, in both serving modes."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from websocket import ABNF, create_connection
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.rawws import Op, RawWS, close_payload, encode_frame


def test_text_and_binary_come_back_unchanged(server):
    with connect(server.url("/echo"), max_size=None) as ws:
        for text in ["", "hello", "κόσμε 𝄞", "x" * 70000]:
            ws.send(text)
            assert ws.recv() == text
        for data in [b"", b"\x00\xff", os.urandom(65536), os.urandom(1 << 20)]:
            ws.send(data)
            assert ws.recv() == data


def test_fragmented_messages_are_reassembled(server):
    with connect(server.url("/echo")) as ws:
        ws.send(["frag", "men", "ted"])
        assert ws.recv() == "fragmented"
        ws.send([b"\x01", b"", b"\x02\x03"])
        assert ws.recv() == b"\x01\x02\x03"


def test_ping_gets_pong_with_same_payload(server):
    ws = create_connection(server.url("/echo"), timeout=5)
    try:
        ws.ping(b"are you there")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == ABNF.OPCODE_PONG
        assert frame.data == b"are you there"
    finally:
        ws.close()


def test_many_messages_in_flight_keep_order(server):
    with connect(server.url("/echo")) as ws:
        for i in range(500):
            ws.send(f"m{i}")
        assert [ws.recv() for _ in range(500)] == [f"m{i}" for i in range(500)]


def test_client_close_code_is_echoed(server):
    ws = create_connection(server.url("/echo"), timeout=5)
    ws.send_close(4001, b"bye")
    frame = ws.recv_frame()
    assert frame.opcode == ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 4001
    ws.shutdown()


def test_healthz(server):
    with urllib.request.urlopen(server.http_url("/healthz"), timeout=5) as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert body["status"] == "ok"


@pytest.mark.parametrize(
    "path, status",
    [("/nowhere", 404), ("/healthz", 400)],
    ids=["unknown-path", "plain-http-route"],
)
def test_upgrade_to_a_path_without_websocket_route_is_refused_not_upgraded(server, path, status):
    with pytest.raises(InvalidStatus) as info:
        connect(server.url(path))
    assert info.value.response.status_code == status


def test_message_sent_together_with_close_is_still_echoed(server):
    """Text and close in one write: the echo goes out before the close reply."""
    with RawWS.connect(server.url("/echo")) as ws:
        ws.send_raw(
            encode_frame(Op.TEXT, b"last words") + encode_frame(Op.CLOSE, close_payload(1000))
        )
        ws.close_sent = True
        assert ws.recv_message() == (Op.TEXT, b"last words")
        assert ws.expect_close(1000) == (1000, "")


def test_frames_sent_with_the_handshake_are_not_lost(server):
    """Frames in the same write as the upgrade request sit in the request's read buffer when
    the socket leaves the request for its own greenlet: they are carried over, in order."""
    big = os.urandom(3000)  # larger than the handler's 1 KiB read buffer
    early = (
        encode_frame(Op.TEXT, b"first")
        + encode_frame(Op.BINARY, big)
        + encode_frame(Op.TEXT, b"third")
    )
    with RawWS.connect(server.url("/echo"), early_data=early) as ws:
        assert ws.recv_message() == (Op.TEXT, b"first")
        assert ws.recv_message() == (Op.BINARY, big)
        assert ws.recv_message() == (Op.TEXT, b"third")
        ws.send_text(b"after")
        assert ws.recv_message() == (Op.TEXT, b"after")
