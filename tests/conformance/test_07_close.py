"""Family 7: the closing handshake (RFC 6455 sections 5.5.1, 7.1, 7.4)."""

from __future__ import annotations

import struct

import pytest

from tests.support.rawws import Frame, Op, encode_frame

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535]


def test_close_without_payload_answered_with_1000(target):
    """No status code received: the reply carries 1000 (normal closure)."""
    with target.connect() as ws:
        ws.send_frame(Op.CLOSE, b"")
        assert ws.expect_close(1000) == (1000, "")
    target.assert_healthy()


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_with_valid_code_is_echoed(target, code):
    with target.connect() as ws:
        ws.send_close(code)
        got_code, _ = ws.expect_close(code)
        assert got_code == code
    target.assert_healthy()


@pytest.mark.parametrize("code", [1000, 1001, 4321])
def test_close_with_code_and_reason_is_echoed(target, code):
    with target.connect() as ws:
        ws.send_close(code, "bye \u00e9\u20ac")
        assert ws.expect_close(code)[0] == code
    target.assert_healthy()


@pytest.mark.parametrize("code", INVALID_CODES)
def test_close_with_invalid_code_is_1002(target, code):
    with target.connect() as ws:
        ws.send_frame(Op.CLOSE, struct.pack("!H", code))
        ws.expect_close(1002)
    target.assert_healthy()


def test_close_with_one_byte_payload_is_1002(target):
    with target.connect() as ws:
        ws.send_frame(Op.CLOSE, b"\x03")
        ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize(
    "reason",
    [b"\xff", b"bye \xed\xa0\x80", b"\xc0\xaf", b"cut \xe2\x82"],
    ids=["ff", "surrogate", "overlong", "truncated"],
)
def test_close_reason_invalid_utf8_is_1007(target, reason):
    with target.connect() as ws:
        ws.send_frame(Op.CLOSE, struct.pack("!H", 1000) + reason)
        ws.expect_close(1007)
    target.assert_healthy()


def test_close_with_123_byte_reason_ok(target):
    """125-byte control payload: 2-byte code + 123-byte reason is the maximum."""
    with target.connect() as ws:
        ws.send_close(1000, "*" * 123)
        assert ws.expect_close(1000)[0] == 1000
    target.assert_healthy()


def test_close_with_124_byte_reason_is_1002(target):
    """A 126-byte close payload exceeds the control frame limit."""
    with target.connect() as ws:
        ws.try_send(encode_frame(Op.CLOSE, struct.pack("!H", 1000) + b"*" * 124))
        ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize(
    "after",
    [
        [(Op.TEXT, b"after close")],
        [(Op.BINARY, b"after close")],
        [(Op.PING, b"after close")],
        [(Op.TEXT, b"a"), (Op.PING, b"b"), (Op.BINARY, b"c")],
    ],
    ids=["text", "binary", "ping", "several"],
)
def test_frames_after_our_close_are_ignored(target, after):
    """Autobahn 7.1.x: once we sent close, later frames get no answer; the next frame
    from the server is its close reply (expect_close fails on anything else)."""
    with target.connect() as ws:
        data = encode_frame(Op.CLOSE, struct.pack("!H", 1000))
        data += b"".join(encode_frame(op, payload) for op, payload in after)
        ws.send_raw(data)
        assert ws.expect_close(1000)[0] == 1000
    target.assert_healthy()


def test_echo_then_close_in_same_write(target):
    """Autobahn 7.1.6 style: a message and a close back to back. RFC 6455 5.5.1 lets the
    server answer the close before its echo is written (then the echo is dropped), so the
    echo is optional; if it comes it is intact and precedes the close reply."""
    with target.connect() as ws:
        ws.send_raw(
            encode_frame(Op.TEXT, b"last words") + encode_frame(Op.CLOSE, struct.pack("!H", 1000))
        )
        assert ws.expect_close(1000, allow_data=True)[0] == 1000
        assert ws.frames_before_close in ([], [Frame(True, 0, Op.TEXT, b"last words")])
    target.assert_healthy()


def test_close_twice_is_harmless(target):
    with target.connect() as ws:
        ws.send_raw(encode_frame(Op.CLOSE, struct.pack("!H", 1000)) * 2)
        assert ws.expect_close(1000)[0] == 1000
    target.assert_healthy()


def test_server_closes_tcp_after_closing_handshake(target):
    """After the close exchange the server closes TCP first (RFC 6455 7.1.1): we never
    close our side and still see EOF promptly, with nothing after the close frame."""
    with target.connect() as ws:
        ws.echo("before close")
        ws.send_close(1000, "done")
        frame = ws.next_frame()
        assert frame.opcode == Op.CLOSE and frame.fin
        assert ws.close_received[0] == 1000
        ws.wait_tcp_closed(1.0)
    target.assert_healthy()


def test_close_frame_in_chunks(target):
    with target.connect() as ws:
        ws.send_frame(Op.CLOSE, struct.pack("!H", 1000) + b"slow close", chunk=1, pause=0.001)
        assert ws.expect_close(1000)[0] == 1000
    target.assert_healthy()


def test_close_inside_fragmented_message_is_answered(target):
    """A close frame (control) may arrive between fragments: answered normally."""
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"frag", fin=False)
        ws.send_close(1000)
        assert ws.expect_close(1000)[0] == 1000
    target.assert_healthy()
