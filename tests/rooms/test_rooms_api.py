"""The Rooms API in-process, no sockets: clear errors for bad rooms, names and data."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.support.socketpair_ws import make_pair
from wsapp import ConnectionClosed, EventError, Rooms
from wsapp.protocol.frames import Opcode, encode_frame


@pytest.fixture
def rooms() -> Rooms:
    return Rooms(Flask(__name__))


@pytest.mark.parametrize(
    ("room", "event", "data", "code", "words"),
    [
        ("bad room", "e", None, "invalid_room", "invalid room name"),
        ("x" * 65, "e", None, "invalid_room", "invalid room name"),
        ("ok", "", None, "invalid_event", "invalid event name"),
        ("ok", "has space", None, "invalid_event", "invalid event name"),
        ("ok", 7, None, "invalid_event", "must be a string"),
        ("ok", "e", {"x": float("nan")}, "invalid_event", "not JSON"),
        ("ok", "e", object(), "invalid_event", "not JSON"),
        ("ok", "e", "x" * 65_535, "message_too_large", "over the 65536 allowed"),
    ],
)
def test_emit_refuses_with_a_code_and_a_reason(rooms, room, event, data, code, words) -> None:
    with pytest.raises(EventError) as info:
        rooms.emit(room, event, data)
    assert info.value.code == code
    assert words in info.value.reason


def test_emit_to_nobody_and_at_the_limit(rooms) -> None:
    rooms.emit("ok", "e", "x" * 65_534)  # 65536 bytes as JSON: the limit itself is allowed
    assert rooms.members("ok") == []


def test_unbound_rooms_say_so() -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        Rooms().emit("ok", "e")


def test_join_refuses_bad_rooms_names_and_closed_sockets(rooms) -> None:
    ws, client = make_pair()
    with pytest.raises(ValueError, match="invalid room name"):
        rooms.join(ws, "no/slash")
    with pytest.raises(ValueError, match="name"):
        rooms.join(ws, "ok", name="x" * 40)
    rooms.join(ws, "ok", name="  ann  ")
    assert [(m.id, m.name) for m in rooms.members("ok")] == [(ws.id, "ann")]
    assert rooms.rooms_of(ws) == [ws.id, "ok"]
    client.sendall(encode_frame(Opcode.CLOSE, b"\x03\xe8", mask=b"abcd"))
    assert ws.receive() is None
    ws.wait_closed(5)
    assert rooms.members("ok") == []  # left on close
    assert rooms.rooms_of(ws) == []
    with pytest.raises(ConnectionClosed):
        rooms.join(ws, "later")
