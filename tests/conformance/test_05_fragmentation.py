"""Family 5: fragmentation (RFC 6455 5.4)."""

from __future__ import annotations

import pytest

from tests.support.rawws import Op, close_payload, encode_frame

KINDS = {"text": (Op.TEXT, b"fragment1fragment2"), "binary": (Op.BINARY, b"\x00\xfffragment\xfe")}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("pieces", [2, 3, 7])
def test_fragmented_message_reassembled(target, kind, pieces):
    opcode, payload = KINDS[kind]
    size = -(-len(payload) // pieces)
    with target.connect() as ws:
        ws.send_fragmented(opcode, payload, size)
        assert ws.recv_message() == (opcode, payload)
    target.assert_healthy()


@pytest.mark.parametrize("kind", list(KINDS))
def test_fragments_with_empty_payloads(target, kind):
    opcode, payload = KINDS[kind]
    with target.connect() as ws:
        ws.send_frame(opcode, b"", fin=False)
        ws.send_frame(Op.CONT, payload, fin=False)
        ws.send_frame(Op.CONT, b"", fin=False)
        ws.send_frame(Op.CONT, b"", fin=True)
        assert ws.recv_message() == (opcode, payload)
        # and an entirely empty fragmented message
        ws.send_frame(opcode, b"", fin=False)
        ws.send_frame(Op.CONT, b"", fin=True)
        assert ws.recv_message() == (opcode, b"")
    target.assert_healthy()


@pytest.mark.parametrize("kind", list(KINDS))
def test_ping_between_fragments_answered(target, kind):
    """Control frames may be injected in the middle of a fragmented message (5.4)."""
    opcode, payload = KINDS[kind]
    with target.connect() as ws:
        ws.send_frame(opcode, payload[:5], fin=False)
        ws.send_frame(Op.PING, b"in the middle")
        # the pong must come while the message is still incomplete
        assert ws.recv_pong() == b"in the middle"
        ws.send_frame(Op.CONT, payload[5:], fin=True)
        assert ws.recv_message() == (opcode, payload)
    target.assert_healthy()


def test_pong_between_fragments_ignored(target):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"frag", fin=False)
        ws.send_frame(Op.PONG, b"unsolicited")
        ws.send_frame(Op.CONT, b"ment", fin=True)
        assert ws.recv_message() == (Op.TEXT, b"fragment")
    target.assert_healthy()


def test_fragments_and_pings_written_byte_by_byte(target):
    """Autobahn 5.8 style: fragment, ping, fragment, every frame over 1-byte writes."""
    with target.connect() as ws:
        data = (
            encode_frame(Op.TEXT, b"fragment1", fin=False)
            + encode_frame(Op.PING, b"ping payload")
            + encode_frame(Op.CONT, b"fragment2", fin=True)
        )
        ws.send_raw_chunked(data, chunk=1)
        assert ws.recv_pong() == b"ping payload"
        assert ws.recv_message() == (Op.TEXT, b"fragment1fragment2")
    target.assert_healthy()


@pytest.mark.parametrize("opcode", [Op.PING, Op.PONG, Op.CLOSE], ids=["ping", "pong", "close"])
@pytest.mark.parametrize("second", ["none", "continuation"])
def test_fragmented_control_frame_is_1002(target, opcode, second):
    """Control frames MUST NOT be fragmented (5.5)."""
    payload = close_payload(1000) if opcode == Op.CLOSE else b"fragmented"
    with target.connect() as ws:
        ws.send_frame(opcode, payload, fin=False)
        if second == "continuation":
            ws.try_send(encode_frame(Op.CONT, b"tail", fin=True))
        ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize(
    "frames",
    [
        [(True, b"no start")],
        [(False, b"no start")],
        [(False, b"frag1"), (True, b"frag2")],
    ],
    ids=["cont-fin", "cont-nofin", "cont-nofin-then-cont-fin"],
)
def test_continuation_without_start_is_1002(target, frames):
    with target.connect() as ws:
        for fin, payload in frames:
            ws.try_send(encode_frame(Op.CONT, payload, fin=fin))
        ws.expect_close(1002)
    target.assert_healthy()


def test_continuation_after_complete_message_is_1002(target):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"complete")
        ws.send_frame(Op.CONT, b"stray", fin=True)
        assert ws.recv_message() == (Op.TEXT, b"complete")
        ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize("first", ["text", "binary"])
@pytest.mark.parametrize("inner", ["text", "binary"])
@pytest.mark.parametrize("inner_fin", [True, False], ids=["inner-fin", "inner-nofin"])
def test_new_message_inside_fragmented_message_is_1002(target, first, inner, inner_fin):
    ops = {"text": Op.TEXT, "binary": Op.BINARY}
    with target.connect() as ws:
        ws.send_frame(ops[first], b"frag1", fin=False)
        ws.try_send(encode_frame(ops[inner], b"new", fin=inner_fin))
        ws.try_send(encode_frame(Op.CONT, b"frag2", fin=True))
        ws.expect_close(1002)
    target.assert_healthy()


def test_many_one_byte_fragments(target):
    text = "Hello, wörld! \u20ac\U0001d11e"
    data = text.encode("utf-8")
    with target.connect() as ws:
        ws.send_fragmented(Op.TEXT, data, 1)  # splits multi-byte characters too
        assert ws.recv_message() == (Op.TEXT, data)
        blob = bytes(range(256)) * 4
        ws.send_fragmented(Op.BINARY, blob, 1)  # 1024 fragments
        assert ws.recv_message() == (Op.BINARY, blob)
    target.assert_healthy()


def test_one_byte_fragments_with_pings(target):
    """Autobahn 5.19/5.20 style: fragments with pings in between, spread over time."""
    with target.connect() as ws:
        for i, byte in enumerate(b"fragmented"):
            ws.send_frame(Op.TEXT if i == 0 else Op.CONT, bytes([byte]), fin=i == 9)
            if i in (2, 6):
                ws.send_frame(Op.PING, f"ping{i}".encode())
                assert ws.recv_pong() == f"ping{i}".encode()
        assert ws.recv_message() == (Op.TEXT, b"fragmented")
    target.assert_healthy()
