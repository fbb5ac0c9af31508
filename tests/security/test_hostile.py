"""Hostile clients over real sockets (issue 6): each gets the right answer quickly, the
server keeps serving a bystander's echo meanwhile, and memory does not grow.

Server: `hostile_server` (defaults, WSAPP_HANDSHAKE_TIMEOUT=1).
"""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest

from tests.support.rawws import ConnectionClosedNoFrame, Op, encode_frame, encode_header
from wsapp.protocol import frames

from .conftest import TIMEOUT, connect, rss_kib, wait_connections

KEY = b"\x01\x02\x03\x04"
LIMIT = 1 << 20  # default WSAPP_MAX_MESSAGE_BYTES


def _drain_until_closed(ws, timeout: float) -> list:
    """Read frames until TCP closes; returns them (answering nothing)."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            got.append(ws.recv_frame(max(0.01, deadline - time.monotonic())))
        except ConnectionClosedNoFrame:
            return got
        except TimeoutError:
            raise AssertionError(
                f"server kept the connection open over {timeout}s; frames {got[-3:]}"
            ) from None


# --- the cases: each returns after checking the server's answer ------------------------


def random_bytes_case(srv, seed: int) -> None:
    """Garbage after the handshake: the close code our own parser predicts, or (if the
    garbage happens to be an incomplete valid frame) TCP closed once we stop sending."""
    data = random.Random(seed).randbytes(4096)
    expected = None
    try:
        frames.Parser(LIMIT).feed(data)
    except frames.ProtocolError as exc:
        expected = exc.code
    ws = connect(srv)
    with ws:
        started = time.monotonic()
        ws.try_send(data)
        ws.sock.shutdown(socket.SHUT_WR)
        got = _drain_until_closed(ws, TIMEOUT)
        closes = [f for f in got if f.opcode == Op.CLOSE]
        if expected is not None:
            assert closes, f"seed {seed}: expected close {expected}, got {got[-3:]}"
            assert struct.unpack("!H", closes[0].payload[:2])[0] == expected
        assert time.monotonic() - started < TIMEOUT


def truncated_frame_case(srv, announced: int = 100, sent: int = 10) -> None:
    """A frame whose payload never fully arrives, then the client goes away."""
    ws = connect(srv)
    with ws:
        ws.send_raw(encode_header(Op.TEXT, announced, mask_key=KEY) + b"x" * sent)
        time.sleep(0.05)
        ws.sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        _drain_until_closed(ws, TIMEOUT)
        assert time.monotonic() - started < 1.0


def huge_length_case(srv) -> None:
    """A header announcing 2**63 bytes: 1009 at once, nothing buffered."""
    ws = connect(srv)
    with ws:
        started = time.monotonic()
        ws.send_raw(struct.pack("!BBQ", 0x82, 0x80 | 127, 2**63) + KEY)
        ws.expect_close(1009, timeout=TIMEOUT)
        assert time.monotonic() - started < 1.0


def ping_flood_case(srv, count: int = 20000) -> None:
    """20,000 pings sent without reading a single pong: the server must neither buffer
    pongs without bound nor stall; it answers (pongs) or cuts us off (1008), promptly."""
    ws = connect(srv)
    with ws:
        ping = encode_frame(Op.PING, b"p" * 125, mask=KEY)
        started = time.monotonic()
        for _ in range(count // 1000):
            if not ws.try_send(ping * 1000):
                break
        # Now read: pongs (any number), then either our echo or a 1008 close.
        ws.try_send(encode_frame(Op.TEXT, b"still there?", mask=KEY))
        deadline = time.monotonic() + 5.0
        pongs = 0
        while True:
            try:
                frame = ws.recv_frame(max(0.01, deadline - time.monotonic()))
            except ConnectionClosedNoFrame:
                break  # cut off after a 1008 that could not be delivered
            if frame.opcode == Op.PONG:
                pongs += 1
                continue
            if frame.opcode == Op.CLOSE:
                assert struct.unpack("!H", frame.payload[:2])[0] == 1008
                break
            assert frame.opcode == Op.TEXT and frame.payload == b"still there?"
            assert pongs == count
            break
        assert time.monotonic() - started < 6.0


def endless_fragments_case(srv, piece: int = 16 * 1024) -> None:
    """A message that never ends (fin=0 forever): 1009 once it passes the limit."""
    ws = connect(srv)
    with ws:
        started = time.monotonic()
        ws.send_raw(encode_frame(Op.TEXT, b"a" * piece, fin=False, mask=KEY))
        cont = encode_frame(Op.CONT, b"a" * piece, fin=False, mask=KEY)
        for _ in range(LIMIT // piece + 8):
            if not ws.try_send(cont):
                break
        ws.expect_close(1009, timeout=TIMEOUT)
        assert time.monotonic() - started < 3.0


def oversized_headers_case(srv) -> None:
    """A request head over 32 KiB (many headers, or one huge one): 431, never upgraded."""
    for extra in ({f"X-Filler-{i}": "f" * 900 for i in range(40)}, {"Cookie": "c" * 70000}):
        request = rawws_request(srv, extra)
        resp = _http(srv, request)
        assert resp.status in (431, 400), resp
    resp = _http(srv, rawws_request(srv, {f"X-N{i}": "1" for i in range(150)}))
    assert resp.status in (431, 400)


def slowloris_case(srv, sockets: int = 20) -> None:
    """Clients that never finish their request head (and one that sends nothing) are
    dropped after WSAPP_HANDSHAKE_TIMEOUT (1 s) although they keep dribbling bytes."""
    conns = []
    for i in range(sockets):
        s = socket.create_connection((srv.host, srv.port), timeout=TIMEOUT)
        if i:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        conns.append(s)
    started = time.monotonic()
    alive = set(range(sockets))
    while alive and time.monotonic() - started < 3.0:
        for i in list(alive):
            try:
                conns[i].sendall(b"X-a: b\r\n")
                conns[i].settimeout(0.001)
                if conns[i].recv(100) == b"":
                    alive.discard(i)
            except TimeoutError:
                pass
            except OSError:
                alive.discard(i)
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    for s in conns:
        s.close()
    assert not alive, f"{len(alive)} slowloris connections still open after {elapsed:.1f}s"
    assert elapsed < 2.5


def rawws_request(srv, headers: dict[str, str]) -> bytes:
    from tests.support.rawws import handshake_request

    return handshake_request(srv.host, srv.port, "/echo", headers=headers)


def _http(srv, request: bytes):
    from tests.support.rawws import http_exchange

    return http_exchange(srv.host, srv.port, request, timeout=TIMEOUT)


# --- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes_after_handshake(hostile_server, bystander, seed):
    random_bytes_case(hostile_server, seed)
    bystander.echo(f"ok {seed}")


@pytest.mark.parametrize(("announced", "sent"), [(100, 10), (70000, 1000), (2, 0)])
def test_truncated_frame_then_gone(hostile_server, bystander, announced, sent):
    truncated_frame_case(hostile_server, announced, sent)
    bystander.echo("ok")


def test_truncated_header_then_gone(hostile_server, bystander):
    ws = connect(hostile_server)
    with ws:
        ws.send_raw(b"\x81")  # half a header
        ws.sock.shutdown(socket.SHUT_WR)
        _drain_until_closed(ws, 1.0)
    bystander.echo("ok")


def test_2_pow_63_length_is_1009(hostile_server, bystander):
    huge_length_case(hostile_server)
    bystander.echo("ok")


def test_ping_flood(hostile_server, bystander):
    ping_flood_case(hostile_server)
    bystander.echo("ok")


def test_bystander_echo_during_ping_flood(hostile_server, bystander):
    """While a flood is being answered, another client's echo still takes milliseconds."""
    ws = connect(hostile_server)
    with ws:
        ping = encode_frame(Op.PING, b"p" * 125, mask=KEY)
        ws.try_send(ping * 5000)
        started = time.monotonic()
        bystander.echo("during the flood")
        assert time.monotonic() - started < 0.5


def test_endless_fragmented_message_is_1009(hostile_server, bystander):
    endless_fragments_case(hostile_server)
    bystander.echo("ok")


def test_oversized_header_block_is_refused(hostile_server, bystander):
    oversized_headers_case(hostile_server)
    bystander.echo("ok")
    hostile_server.wait_for_log("431")


def test_slowloris_is_dropped(hostile_server, bystander):
    slowloris_case(hostile_server)
    bystander.echo("ok")
    hostile_server.wait_for_log("dropped (slowloris?)")


def test_memory_does_not_grow_across_hostile_rounds(hostile_server):
    """Repeat every hostile case; the server's RSS stays flat once warmed up."""
    pid = hostile_server.proc.pid

    def round_() -> None:
        for seed in range(4):
            random_bytes_case(hostile_server, seed)
        truncated_frame_case(hostile_server)
        huge_length_case(hostile_server)
        ping_flood_case(hostile_server, count=5000)
        endless_fragments_case(hostile_server)
        oversized_headers_case(hostile_server)

    for _ in range(2):
        round_()
    wait_connections(hostile_server, 0)
    before = rss_kib(pid)
    samples = []
    for _ in range(6):
        round_()
        samples.append(rss_kib(pid))
    wait_connections(hostile_server, 0)
    after = rss_kib(pid)
    growth = after - before
    assert growth < 4096, (
        f"RSS grew {growth} KiB over 6 rounds (before {before}, samples {samples}, after {after})"
    )
