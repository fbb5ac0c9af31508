"""The sans-I/O session: every rule with bytes in and bytes out, no sockets."""

from __future__ import annotations

import pytest

from wsapp.protocol.frames import Opcode, encode_close, encode_frame
from wsapp.protocol.session import CloseCause, Session, State

MASK = b"\x0a\x0b\x0c\x0d"


def client(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=MASK)


def session(limit: int = 1 << 20, fragments: int = 1 << 20) -> Session:
    return Session(limit, fragments)


def close_code_of(frame: bytes) -> int:
    assert frame[0] == 0x88, frame
    return int.from_bytes(frame[2:4], "big")


def test_messages_come_out_in_order_and_nothing_is_sent():
    s = session()
    s.receive_data(client(Opcode.TEXT, b"one") + client(Opcode.BINARY, b"\x00two"))
    assert s.events_received() == ["one", b"\x00two"]
    assert s.events_received() == []
    assert s.data_to_send() == []
    assert s.state is State.OPEN and not s.close_expected()


def test_ping_is_answered_with_a_pong_of_the_same_payload():
    s = session()
    s.receive_data(client(Opcode.PING, b"are you there"))
    assert s.data_to_send() == [encode_frame(Opcode.PONG, b"are you there")]
    assert s.events_received() == []


def test_pong_is_counted_not_answered():
    s = session()
    s.receive_data(client(Opcode.PONG, b"x"))
    assert s.pongs_received == 1 and s.data_to_send() == []


def test_ping_between_fragments_is_answered_before_the_message_completes():
    s = session()
    s.receive_data(client(Opcode.TEXT, b"frag", fin=False) + client(Opcode.PING, b"p"))
    assert s.data_to_send() == [encode_frame(Opcode.PONG, b"p")]
    assert s.events_received() == []
    s.receive_data(client(Opcode.CONTINUATION, b"ment"))
    assert s.events_received() == ["fragment"]


def test_peer_close_is_echoed_and_the_server_ends_tcp():
    s = session()
    s.receive_data(client(Opcode.CLOSE, b"\x0f\xa0bye"))
    assert s.data_to_send() == [encode_close(4000, "")]
    assert s.state is State.CLOSING and s.close_expected()
    assert (s.close_code, s.close_initiator, s.cause) == (4000, "client", CloseCause.CLIENT)
    s.receive_eof()
    assert s.state is State.CLOSED and s.close_code == 4000


def test_close_without_code_is_answered_1000():
    s = session()
    s.receive_data(client(Opcode.CLOSE))
    assert s.data_to_send() == [encode_close(1000, "")]


def test_messages_before_a_close_are_handed_out_before_the_close_is_answered():
    s = session()
    s.receive_data(client(Opcode.TEXT, b"last words") + client(Opcode.CLOSE, b"\x03\xe8"))
    assert s.close_pending()
    assert s.data_to_send() == []  # the messages have not been taken yet
    assert s.events_received() == ["last words"]
    assert s.state is State.OPEN  # replies to them may still go out
    assert s.data_to_send() == [encode_close(1000, "")]
    assert s.close_expected()


def test_our_close_waits_for_the_reply_and_ignores_data_meanwhile():
    s = session()
    s.close(4002, "done")
    assert s.data_to_send() == [encode_close(4002, "done")]
    assert s.state is State.CLOSING and not s.close_expected()
    s.receive_data(client(Opcode.TEXT, b"late") + client(Opcode.PING, b"p"))
    assert s.events_received() == [] and s.data_to_send() == []
    s.receive_data(client(Opcode.CLOSE, b"\x0f\xa2"))
    assert s.close_expected() and s.data_to_send() == []
    assert (s.close_code, s.close_initiator) == (4002, "server")


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (encode_frame(Opcode.TEXT, b"unmasked"), 1002),
        (client(Opcode.TEXT, b"x", rsv=1), 1002),
        (client(0x3, b"x"), 1002),
        (client(Opcode.PING, b"x", fin=False), 1002),
        (client(Opcode.PING, b"x" * 126), 1002),
        (client(Opcode.CONTINUATION, b"x"), 1002),
        (client(Opcode.TEXT, b"a", fin=False) + client(Opcode.TEXT, b"b"), 1002),
        (client(Opcode.TEXT, b"\xff"), 1007),
        (client(Opcode.TEXT, b"\xed\xa0", fin=False), 1007),
        (client(Opcode.CLOSE, b"\x03"), 1002),
        (client(Opcode.CLOSE, b"\x03\xed"), 1002),
        (client(Opcode.CLOSE, b"\x03\xe8\xff"), 1007),
        (client(Opcode.BINARY, b"x" * 101), 1009),
    ],
)
def test_violations_fail_the_connection_with_the_right_code(wire: bytes, code: int):
    s = session(limit=100)
    s.receive_data(wire)
    out = s.data_to_send()
    assert out and close_code_of(out[-1]) == code
    assert s.failed and s.close_expected() and s.close_code == code
    assert s.events_received() == []


def test_a_message_before_a_bad_frame_is_handed_out_then_the_connection_fails():
    s = session()
    s.receive_data(client(Opcode.TEXT, b"good") + client(Opcode.TEXT, b"\xff"))
    assert s.data_to_send() == []
    assert s.events_received() == ["good"]
    out = s.data_to_send()
    assert close_code_of(out[-1]) == 1007 and s.failed


def test_too_many_fragments_is_1009():
    s = session(fragments=3)
    s.receive_data(
        client(Opcode.BINARY, b"a", fin=False)
        + client(Opcode.CONTINUATION, b"b", fin=False)
        + client(Opcode.CONTINUATION, b"c", fin=False)
    )
    assert not s.failed
    s.receive_data(client(Opcode.CONTINUATION, b"d"))
    assert s.failed and s.close_code == 1009 and "3 fragments" in s.close_reason


def test_fragments_are_coalesced_not_kept_one_object_each():
    s = session()
    s.receive_data(client(Opcode.BINARY, b"x", fin=False))
    s.receive_data(b"".join(client(Opcode.CONTINUATION, b"x", fin=False) for _ in range(5000)))
    parser = s.parser  # 5001 one-byte pieces: joined 512 at a time
    assert len(parser._msg_parts) <= 10 and len(parser._msg_small) < 512, "one object per fragment"
    s.receive_data(client(Opcode.CONTINUATION, b"y"))
    assert s.events_received() == [b"x" * 5001 + b"y"]


def test_eof_without_close_is_1006_connection_lost():
    s = session()
    s.receive_eof()
    assert (s.state, s.close_code, s.cause) == (State.CLOSED, 1006, CloseCause.CONNECTION_LOST)


def test_sending_after_close_raises_and_ping_is_ignored():
    s = session()
    s.send_text("hi")
    assert s.data_to_send() == [encode_frame(Opcode.TEXT, b"hi")]
    s.close()
    s.data_to_send()
    s.ping(b"x")
    assert s.data_to_send() == []
    with pytest.raises(Exception):  # noqa: B017 - any: not open
        s.send_binary(b"no")
