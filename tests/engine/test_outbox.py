"""`Outbox` over a real TCP connection on loopback: order, joins, gathers, partial sends.

The peer reads late (and the server's send buffer is small here), so writes
come back partial and the rest goes out from the queue; whatever path a write takes
(one buffer, several small frames joined, a large payload gathered behind its header),
the peer must read exactly the bytes handed over, in order.
"""

from __future__ import annotations

import os
import socket

import gevent
import pytest
from gevent import socket as gsocket

from wsapp.engine.outbox import JOIN_MAX, Outbox
from wsapp.protocol import frames


@pytest.fixture
def pair():
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = gsocket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the handler does
    yield server, client
    server.close()
    client.close()


def read_exactly(sock, size: int, chunk: int = 8192) -> bytes:
    got = bytearray()
    while len(got) < size:
        data = sock.recv(min(chunk, size - len(got)))
        assert data, "connection closed early"
        got += data
    return bytes(got)


def make_outbox(server, budget: int = 1 << 24):
    events: list[str] = []
    outbox = Outbox(server._sock, budget, lambda: events.append("overflow"),
                    lambda: events.append("error"))
    return outbox, events


def test_small_frames_joined_gathered_payloads_and_queued_rests_arrive_in_order(pair):
    server, client = pair
    outbox, events = make_outbox(server)
    small = [frames.encode_message(f"m{i}") for i in range(40)]  # joined: under JOIN_MAX
    assert sum(map(len, small)) <= JOIN_MAX
    big = os.urandom(8_000_000)  # more than loopback buffers hold
    gathered = frames.encode_parts(big)  # header and the payload object itself
    assert gathered[1] is big
    many = [os.urandom(1000) for _ in range(100)]  # 100 KB of frames: a gathering send
    expected = b"".join(small) + b"".join(gathered) + b"".join(many) + b"".join(small)

    def writer():
        assert outbox.write(small, len(small), wait=True)
        assert outbox.write(gathered, 1, wait=True)
        assert outbox.write(many, len(many))  # queued behind, sent by the writer greenlet
        assert outbox.write(small, len(small))

    task = gevent.spawn(writer)
    gevent.sleep(0.05)  # the kernel buffers are full: the writer is waiting on the peer
    assert not outbox.ready
    got = read_exactly(client, len(expected), chunk=3000)
    task.get(timeout=5)
    assert got == expected
    assert outbox.wait_empty(5) and outbox.ready
    assert outbox.bytes_out == len(expected)
    assert outbox.messages_out == 2 * len(small) + 1 + len(many)
    assert events == []


def test_a_write_nobody_waits_for_past_the_budget_declares_the_peer_too_slow(pair):
    server, client = pair
    outbox, events = make_outbox(server, budget=50_000)
    frame = frames.encode_message(os.urandom(20_000))
    results = []
    while not events and len(results) < 200:  # never read: the kernel fills, then the queue
        results.append(outbox.write((frame,), 1))
    assert events == ["overflow"] and results[-1] is False and all(results[:-1])
    assert outbox.queued_bytes > 50_000
