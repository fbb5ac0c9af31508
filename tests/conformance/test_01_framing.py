"""Family 1: framing. Text and binary messages of boundary lengths (7-bit, 16-bit and
64-bit length encodings), in one write and with the frame split over many writes."""

from __future__ import annotations

import os

import pytest

from tests.support.rawws import Op

LENGTHS = [0, 125, 126, 127, 128, 65535, 65536]


def text_payload(n: int) -> bytes:
    return (b"*" * n) if n else b""


def binary_payload(n: int) -> bytes:
    return bytes((i * 7 + 0xFE) & 0xFF for i in range(n))


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_single_frame_echo(target, kind, length):
    opcode, payload = (
        (Op.TEXT, text_payload(length)) if kind == "text" else (Op.BINARY, binary_payload(length))
    )
    with target.connect() as ws:
        ws.send_frame(opcode, payload)
        assert ws.recv_message() == (opcode, payload)
    target.assert_healthy()


@pytest.mark.parametrize(
    "length,chunk,pause",
    [
        (65536, 997, 0.0),
        (65535, 4096, 0.0),
        (125, 1, 0.001),
        (126, 1, 0.0),
        (128, 3, 0.001),
        (0, 1, 0.005),
    ],
)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_frame_written_in_chunks(target, kind, length, chunk, pause):
    """Autobahn 1.1.8/1.2.8 style: the frame's bytes (header included) over many writes."""
    opcode, payload = (
        (Op.TEXT, text_payload(length)) if kind == "text" else (Op.BINARY, binary_payload(length))
    )
    with target.connect() as ws:
        ws.send_frame(opcode, payload, chunk=chunk, pause=pause)
        assert ws.recv_message() == (opcode, payload)
    target.assert_healthy()


def test_explicit_mask_keys(target):
    """Any mask key is valid, including all-zero (payload unchanged) and all-ones."""
    with target.connect() as ws:
        for key in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x03\x04", os.urandom(4)):
            ws.send_frame(Op.BINARY, b"\x00\x01masked\xff", mask=key)
            assert ws.recv_message() == (Op.BINARY, b"\x00\x01masked\xff")
    target.assert_healthy()


def test_several_frames_in_one_write(target):
    from tests.support.rawws import encode_frame

    with target.connect() as ws:
        ws.send_raw(b"".join(encode_frame(Op.TEXT, f"m{i}".encode()) for i in range(20)))
        for i in range(20):
            assert ws.recv_message() == (Op.TEXT, f"m{i}".encode())
    target.assert_healthy()


def test_text_and_binary_interleaved(target):
    with target.connect() as ws:
        for i in range(10):
            ws.echo(f"text {i}")
            ws.echo(bytes([i]) * (i + 1))
    target.assert_healthy()
