"""Family 9: large messages and many messages (Autobahn 9.x, limbo-free version).

Runs against a server started with WSAPP_MAX_MESSAGE_BYTES = 16 MiB + headroom."""

from __future__ import annotations

import pytest

from tests.support.rawws import Op, encode_frame

from .conftest import TIMEOUT

KIB = 1024
MIB = 1024 * KIB
SIZES = [64 * KIB, 256 * KIB, 1 * MIB, 4 * MIB, 16 * MIB]
IDS = ["64KiB", "256KiB", "1MiB", "4MiB", "16MiB"]

# Multi-byte text so 64 KiB fragment boundaries fall inside characters.
_TEXT_UNIT = "ab\u00e9\u20ac\U0001d11e-".encode()  # 1 + 1 + 2 + 3 + 4 + 1 = 12 bytes


def make_payload(kind: str, size: int) -> bytes:
    if kind == "text":
        reps, rest = divmod(size, len(_TEXT_UNIT))
        return _TEXT_UNIT * reps + b"x" * rest
    unit = bytes(range(256))
    return unit * (size // 256) + unit[: size % 256]


def big_timeout(size: int) -> float:
    return max(TIMEOUT, 5.0 + size / MIB)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("framing", ["one-frame", "64KiB-fragments"])
def test_large_message_echoed(big_target, kind, size, framing):
    opcode = Op.TEXT if kind == "text" else Op.BINARY
    payload = make_payload(kind, size)
    with big_target.connect() as ws:
        if framing == "one-frame":
            ws.send_frame(opcode, payload)
        else:
            ws.send_fragmented(opcode, payload, 64 * KIB)
        got_op, got = ws.recv_message(big_timeout(size))
        assert got_op == opcode
        assert len(got) == len(payload)
        assert got == payload
    big_target.assert_healthy()


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_thousand_small_messages_in_a_row(target, kind):
    opcode = Op.TEXT if kind == "text" else Op.BINARY
    msgs = [f"message {i} \u00e9".encode() for i in range(1000)]
    with target.connect() as ws:
        ws.send_raw(b"".join(encode_frame(opcode, m) for m in msgs))
        for i, m in enumerate(msgs):
            assert ws.recv_message() == (opcode, m), f"message {i}"
    target.assert_healthy()


def test_thousand_round_trips(target):
    with target.connect() as ws:
        for i in range(1000):
            ws.send_frame(Op.BINARY, i.to_bytes(2, "big"))
            assert ws.recv_message() == (Op.BINARY, i.to_bytes(2, "big"))
    target.assert_healthy()
