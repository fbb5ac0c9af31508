"""Family 3: reserved bits. No extension is negotiated, so a frame with RSV1/2/3 set
must fail the connection with 1002 (RFC 6455 5.2); what came before is still answered."""

from __future__ import annotations

import pytest

from tests.support.rawws import Op, close_payload, encode_frame

RSV = {"rsv1": 4, "rsv2": 2, "rsv3": 1, "rsv12": 6, "rsv123": 7}
FRAMES = {
    "text": (Op.TEXT, b"Hello, world!"),
    "binary": (Op.BINARY, b"\x00\xff\xfe"),
    "ping": (Op.PING, b"ping"),
    "pong": (Op.PONG, b"pong"),
    "close": (Op.CLOSE, close_payload(1000)),
}


@pytest.mark.parametrize("kind", list(FRAMES))
@pytest.mark.parametrize("rsv", list(RSV.values()), ids=list(RSV))
def test_reserved_bits_fail_with_1002(target, kind, rsv):
    opcode, payload = FRAMES[kind]
    with target.connect() as ws:
        ws.send_frame(opcode, payload, rsv=rsv)
        ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize("kind", ["text", "binary", "ping"])
def test_echo_before_reserved_bits_still_answered(target, kind):
    """Autobahn 3.2: a valid message, then a bad frame, then a ping: the message is echoed,
    then close 1002; the ping after the bad frame is never answered."""
    opcode, payload = FRAMES[kind]
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"before")
        ws.send_frame(opcode, payload, rsv=2)
        ws.try_send(encode_frame(Op.PING, b"after"))
        assert ws.recv_message() == (Op.TEXT, b"before")
        ws.expect_close(1002)
    target.assert_healthy()


def test_reserved_bit_on_continuation_is_1002(target):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"frag", fin=False)
        ws.send_frame(Op.CONT, b"ment", rsv=4)
        ws.expect_close(1002)
    target.assert_healthy()
