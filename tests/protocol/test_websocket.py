"""The hardened WebSocket over a real socket pair (in-process, no server)."""

from __future__ import annotations

import gevent
from gevent import socket

from tests.support.socketpair_ws import make_pair
from wsapp.protocol.frames import Opcode, Parser, encode_close, encode_frame


def read_messages(sock: socket.socket, count: int) -> list:
    parser = Parser(1 << 30, require_mask=False)
    out: list = []
    while len(out) < count:
        data = sock.recv(1 << 16)
        assert data, "connection closed early"
        out += [e for e in parser.feed(data) if isinstance(e, bytes | str)]
    return out


def test_concurrent_senders_never_interleave_frames():
    ws, client = make_pair()
    senders, per_sender, size = 8, 20, 200_000
    reader = gevent.spawn(read_messages, client, senders * per_sender)

    def send_many(marker: int) -> None:
        for _ in range(per_sender):
            ws.send(bytes([marker]) * size)

    gevent.joinall([gevent.spawn(send_many, i) for i in range(senders)], raise_error=True)
    messages = reader.get(timeout=30)
    for message in messages:
        assert len(message) == size
        assert message.count(message[:1]) == size, "frames from two senders interleaved"


def test_server_close_carries_code_and_waits_for_reply():
    ws, client = make_pair(close_timeout=5.0)

    def peer() -> bytes:
        data = client.recv(1024)
        client.sendall(encode_frame(Opcode.CLOSE, data[2:4], mask=b"abcd"))
        return data

    job = gevent.spawn(peer)
    started = gevent.get_hub().loop.now()
    ws.close(4002, "done")
    assert job.get(timeout=5) == encode_close(4002, "done")
    assert gevent.get_hub().loop.now() - started < 2.0, "close did not finish when the reply came"
    assert ws.state.name == "CLOSED" and ws.close_code == 4002
    assert client.recv(10) == b"", "server did not close TCP after the handshake"


def test_server_close_gives_up_after_close_timeout():
    ws, client = make_pair(close_timeout=0.3)
    with gevent.Timeout(3):
        ws.close(1001, "going away")
    assert ws.state.name == "CLOSED"
    assert client.recv(100).startswith(encode_close(1001, "going away"))


def test_peer_close_is_answered_with_its_code_and_receive_returns_none():
    ws, client = make_pair()
    client.sendall(encode_frame(Opcode.CLOSE, b"\x0f\xa0bye", mask=b"wxyz"))
    assert ws.receive() is None
    assert client.recv(100) == encode_close(4000, "")
    assert ws.close_code == 4000 and ws.close_initiator == "client"
