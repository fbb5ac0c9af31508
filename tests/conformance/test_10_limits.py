"""Size limits and masking (wsapp policy on top of RFC 6455 sections 5.1, 7.4.1).

The default WSAPP_MAX_MESSAGE_BYTES is 1 MiB, inclusive. A message over the limit gets
close 1009 (message too big) as soon as a header reveals it: the server must not wait for,
or buffer, the payload. A client frame without the mask bit fails with 1002."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.rawws import Op, encode_frame, encode_header

from .conftest import BIG_LIMIT, DEFAULT_LIMIT, TIMEOUT

KEY = b"\x11\x22\x33\x44"


def _payload(kind: str, size: int) -> bytes:
    return b"t" * size if kind == "text" else bytes(range(256)) * (size // 256)


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("framing", ["one-frame", "64KiB-fragments"])
def test_message_of_exactly_the_limit_is_echoed(target, kind, framing):
    opcode = Op.TEXT if kind == "text" else Op.BINARY
    payload = _payload(kind, DEFAULT_LIMIT)
    with target.connect() as ws:
        if framing == "one-frame":
            ws.send_frame(opcode, payload)
        else:
            ws.send_fragmented(opcode, payload, 64 * 1024)
        assert ws.recv_message(max(TIMEOUT, 10.0)) == (opcode, payload)
    target.assert_healthy()


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize(
    "announced",
    [DEFAULT_LIMIT + 1, 2 * DEFAULT_LIMIT, 2**32, 2**63 - 1],
    ids=["limit+1", "2x-limit", "2**32", "2**63-1"],
)
def test_header_announcing_too_much_is_1009_without_payload(target, kind, announced):
    """Only the header is sent; the payload never comes: 1009 must come promptly."""
    opcode = Op.TEXT if kind == "text" else Op.BINARY
    with target.connect() as ws:
        started = time.monotonic()
        ws.send_raw(encode_header(opcode, announced, fin=True, mask_key=KEY))
        ws.expect_close(1009)
        assert time.monotonic() - started < TIMEOUT
    target.assert_healthy()


def test_header_announcing_too_much_unfragmented_after_small_fragment(target):
    with target.connect() as ws:
        ws.send_frame(Op.BINARY, b"x" * 10, fin=False)
        ws.send_raw(
            encode_header(Op.CONT, DEFAULT_LIMIT, fin=True, mask_key=KEY)
        )  # total limit + 10
        ws.expect_close(1009)
    target.assert_healthy()


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_fragmented_total_over_limit_is_1009_at_the_header(target, kind):
    """Sixteen 64 KiB fragments (exactly the limit so far), then the header of a 1-byte
    final fragment: that header already makes the message too big."""
    opcode = Op.TEXT if kind == "text" else Op.BINARY
    with target.connect() as ws:
        piece = _payload(kind, 64 * 1024)
        ws.send_raw(
            b"".join(
                encode_frame(opcode if i == 0 else Op.CONT, piece, fin=False) for i in range(16)
            )
        )
        ws.send_raw(encode_header(Op.CONT, 1, fin=True, mask_key=KEY))
        ws.expect_close(1009, timeout=max(TIMEOUT, 5.0))
    target.assert_healthy()


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_fragmented_total_over_limit_sent_in_full_is_1009(target, kind):
    """Three 512 KiB fragments sent completely (by a writer thread, while we read)."""
    opcode = Op.TEXT if kind == "text" else Op.BINARY
    piece = _payload(kind, 512 * 1024)
    data = b"".join(
        encode_frame(opcode if i == 0 else Op.CONT, piece, fin=i == 2) for i in range(3)
    )
    with target.connect() as ws:
        writer = threading.Thread(target=ws.try_send, args=(data,), daemon=True)
        writer.start()
        ws.expect_close(1009, timeout=max(TIMEOUT, 5.0))
        writer.join(5)
    target.assert_healthy()


def test_big_server_limit_plus_one_is_1009(big_target):
    with big_target.connect() as ws:
        ws.send_raw(encode_header(Op.BINARY, BIG_LIMIT + 1, fin=True, mask_key=KEY))
        ws.expect_close(1009)
    big_target.assert_healthy()


@pytest.mark.parametrize(
    "opcode,payload",
    [
        (Op.TEXT, b"unmasked"),
        (Op.BINARY, b"\x00\xff"),
        (Op.TEXT, b""),
        (Op.PING, b"unmasked ping"),
        (Op.CLOSE, b"\x03\xe8"),
    ],
    ids=["text", "binary", "empty-text", "ping", "close"],
)
def test_unmasked_client_frame_is_1002(target, opcode, payload):
    with target.connect() as ws:
        ws.send_frame(opcode, payload, mask=False)
        ws.expect_close(1002)
    target.assert_healthy()


def test_unmasked_frame_after_valid_message(target):
    with target.connect() as ws:
        ws.echo("masked is fine")
        ws.send_frame(Op.TEXT, b"unmasked", mask=False)
        ws.expect_close(1002)
    target.assert_healthy()
