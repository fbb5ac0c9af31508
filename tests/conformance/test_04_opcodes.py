"""Family 4: reserved opcodes (RFC 6455 5.2): non-control 0x3-0x7 and control 0xB-0xF
fail the connection with 1002."""

from __future__ import annotations

import pytest

from tests.support.rawws import Op, encode_frame

RESERVED = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF]


@pytest.mark.parametrize("opcode", RESERVED, ids=[f"op{o:X}" for o in RESERVED])
@pytest.mark.parametrize("payload", [b"", b"reserved opcode payload"], ids=["empty", "payload"])
def test_reserved_opcode_is_1002(target, opcode, payload):
    with target.connect() as ws:
        ws.send_frame(opcode, payload)
        ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize("opcode", RESERVED, ids=[f"op{o:X}" for o in RESERVED])
def test_echo_before_reserved_opcode_then_ping_not_answered(target, opcode):
    """Autobahn 4.1.3/4.2.3: message, reserved opcode, ping -> echo, then close 1002."""
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"before")
        ws.send_frame(opcode, b"")
        ws.try_send(encode_frame(Op.PING, b"after"))
        assert ws.recv_message() == (Op.TEXT, b"before")
        ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize("opcode", [0x3, 0xB], ids=["op3", "opB"])
def test_reserved_opcode_inside_fragmented_message_is_1002(target, opcode):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"frag", fin=False)
        ws.send_frame(opcode, b"x")
        ws.expect_close(1002)
    target.assert_healthy()
