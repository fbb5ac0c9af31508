"""/echo and /healthz against real server processes, in both serving modes."""

from __future__ import annotations

import json
import os
import urllib.request

from websocket import ABNF, create_connection
from websockets.sync.client import connect


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


def test_unknown_websocket_path_is_404_without_upgrade(server):
    from websockets.exceptions import InvalidStatus

    try:
        connect(server.url("/nowhere"))
    except InvalidStatus as exc:
        assert exc.response.status_code == 404
    else:
        raise AssertionError("upgrade to an unknown path was accepted")


def test_websocket_on_plain_http_route_is_refused_not_upgraded(server):
    from websockets.exceptions import InvalidStatus

    try:
        connect(server.url("/healthz"))
    except InvalidStatus as exc:
        assert exc.response.status_code == 400
    else:
        raise AssertionError("upgrade on a non-WebSocket route was accepted")


def test_message_sent_together_with_close_is_still_echoed(server):
    """Text and close in one write: the echo goes out before the close reply."""
    import socket

    from wsapp.protocol.frames import Opcode, Parser, encode_frame

    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(4096)
        rest = response.split(b"\r\n\r\n", 1)[1]
        sock.sendall(encode_frame(Opcode.TEXT, b"last words", mask=b"abcd") + encode_frame(Opcode.CLOSE, b"\x03\xe8", mask=b"abcd"))
        parser = Parser(1 << 20, require_mask=False)
        events = parser.feed(rest) if rest else []
        while True:
            data = sock.recv(4096)
            if not data:
                break
            events += parser.feed(data)
    assert events[0] == "last words"
    assert events[1].code == 1000
