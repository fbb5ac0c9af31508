"""Family 2: pings and pongs (RFC 6455 sections 5.5.2, 5.5.3)."""

from __future__ import annotations

import pytest

from tests.support.rawws import Frame, Op, encode_frame


@pytest.mark.parametrize("length", [0, 1, 2, 64, 124, 125])
def test_ping_answered_with_same_payload(target, length):
    payload = bytes(range(length))
    with target.connect() as ws:
        ws.send_frame(Op.PING, payload)
        assert ws.recv_pong() == payload
    target.assert_healthy()


def test_ping_every_length_0_to_125(target):
    with target.connect() as ws:
        for length in range(126):
            payload = bytes((0x41 + i) & 0xFF for i in range(length))
            ws.send_frame(Op.PING, payload)
            assert ws.recv_pong() == payload, f"length {length}"
    target.assert_healthy()


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff",
        bytes(range(125)),
        bytes(range(255, 130, -1)),
        b"\xed\xa0\x80\xc0\xaf",
    ],
    ids=["binary-8", "binary-125-ascending", "binary-125-high", "invalid-utf8-is-fine-in-ping"],
)
def test_ping_binary_payload(target, payload):
    with target.connect() as ws:
        ws.send_frame(Op.PING, payload)
        assert ws.recv_pong() == payload
    target.assert_healthy()


def test_ping_sent_byte_by_byte(target):
    """Autobahn 2.6: a 125-byte ping written one byte at a time."""
    payload = b"\xfe" * 125
    with target.connect() as ws:
        ws.send_frame(Op.PING, payload, chunk=1, pause=0.0005)
        assert ws.recv_pong() == payload
    target.assert_healthy()


@pytest.mark.parametrize("length", [126, 127, 65535, 65536])
def test_ping_too_long_is_1002(target, length):
    """Control frames carry at most 125 bytes (RFC 6455 5.5)."""
    with target.connect() as ws:
        ws.try_send(encode_frame(Op.PING, b"\xfe" * length))
        ws.expect_close(1002)
    target.assert_healthy()


def test_unsolicited_pong_is_ignored(target):
    with target.connect() as ws:
        ws.send_frame(Op.PONG, b"unsolicited")
        ws.send_frame(Op.PONG, b"")
        ws.echo("after pong")  # the next frame must be the echo, not a reply to the pong
    target.assert_healthy()


def test_unsolicited_pong_then_ping(target):
    """Autobahn 2.8/2.9: a pong then a ping: only the ping is answered."""
    with target.connect() as ws:
        ws.send_frame(Op.PONG, b"unsolicited pong payload")
        ws.send_frame(Op.PING, b"ping payload")
        assert ws.recv_pong() == b"ping payload"
    target.assert_healthy()


def test_ten_pings_answered_in_order(target):
    with target.connect() as ws:
        ws.send_raw(b"".join(encode_frame(Op.PING, f"ping-{i}".encode()) for i in range(10)))
        got = [ws.recv_pong() for _ in range(10)]
        assert got == [f"ping-{i}".encode() for i in range(10)]
    target.assert_healthy()


def test_ten_pings_with_pauses_answered_in_order(target):
    with target.connect() as ws:
        for i in range(10):
            ws.send_frame(Op.PING, f"p{i}".encode(), chunk=2)
        assert [ws.recv_pong() for _ in range(10)] == [f"p{i}".encode() for i in range(10)]
    target.assert_healthy()


def test_ping_interleaved_with_messages(target):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"one")
        ws.send_frame(Op.PING, b"between")
        ws.send_frame(Op.TEXT, b"two")
        # The echoes keep their order; when the pong goes out relative to the echoes is
        # up to the server ("as soon as practical", RFC 6455 5.5.2).
        frames = [ws.next_frame() for _ in range(3)]
        assert [f for f in frames if f.opcode == Op.PONG] == [Frame(True, 0, Op.PONG, b"between")]
        assert [f for f in frames if f.opcode != Op.PONG] == [
            Frame(True, 0, Op.TEXT, b"one"),
            Frame(True, 0, Op.TEXT, b"two"),
        ]
    target.assert_healthy()
