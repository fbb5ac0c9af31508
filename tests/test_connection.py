"""Connection queueing rules over a real server: bursts, slow readers."""

from __future__ import annotations

import socket
import threading

from tests.support.servers import running_server
from wsapp.protocol.frames import Opcode, Parser, encode_frame

HANDSHAKE = (
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def open_raw(srv) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    sock.sendall(HANDSHAKE)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock, rest


def test_burst_much_larger_than_the_send_queue_is_echoed_not_dropped():
    """3000 frames in one write with WSAPP_SEND_QUEUE=64: a client that reads is never "too slow"."""
    with running_server("serve", env={"WSAPP_SEND_QUEUE": "64"}) as srv:
        sock, rest = open_raw(srv)
        total = 3000
        burst = b"".join(encode_frame(Opcode.TEXT, f"m{i}".encode(), mask=b"abcd") for i in range(total))
        received: list = []
        parser = Parser(1 << 20, require_mask=False)
        if rest:
            received += parser.feed(rest)

        def reader() -> None:
            while len(received) < total:
                data = sock.recv(65536)
                if not data:
                    return
                received.extend(parser.feed(data))

        thread = threading.Thread(target=reader)
        thread.start()
        sock.sendall(burst)
        thread.join(20)
        sock.close()
        assert received == [f"m{i}" for i in range(total)]
