"""Named events as pure functions: names, data, client frames, encodings (no sockets)."""

from __future__ import annotations

import json
import math

import pytest

from wsapp.chat import events
from wsapp.chat.broker import Member, RoomEvent
from wsapp.chat.broker.redis.keys import decode_event, event_payload
from wsapp.chat.events import EventError, EventInput, ValidationError, parse_client_text


@pytest.mark.parametrize("name", ["typing", "a", "x" * 64, "job.progress", "ns:push", "a/b-c_d"])
def test_valid_event_names(name: str) -> None:
    assert events.check_event_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "é", "new\nline", None, 5, ["typing"]])
def test_invalid_event_names_are_refused_with_a_reason(name: object) -> None:
    with pytest.raises(EventError) as info:
        events.check_event_name(name)
    assert info.value.code == events.E_BAD_EVENT
    assert "event name" in info.value.reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (None, "null"),
        ({"data": "test message!"}, '{"data":"test message!"}'),
        ([1, 2.5, True, "é"], '[1,2.5,true,"é"]'),
        ("plain", '"plain"'),
        (0, "0"),
    ],
)
def test_event_data_is_compact_json(data: object, text: str) -> None:
    assert events.encode_event_data(data, 1000) == text


@pytest.mark.parametrize("data", [math.nan, {"x": math.inf}, {1, 2}, object(), b"bytes"])
def test_event_data_that_is_not_json_is_refused(data: object) -> None:
    with pytest.raises(EventError) as info:
        events.encode_event_data(data, 1000)
    assert info.value.code == events.E_BAD_EVENT
    assert "not JSON" in info.value.reason


def test_event_data_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(EventError) as info:
        events.encode_event_data({"t": "\ud800"}, 1000)
    assert info.value.code == events.E_BAD_EVENT and "Unicode" in info.value.reason


@pytest.mark.parametrize("unit", ["a", "é", "🎉"])
def test_event_data_limit_counts_utf8_bytes_of_the_json_inclusive(unit: str) -> None:
    size = len(unit.encode())
    fits = unit * (20 // size)  # as JSON: two quotes more
    limit = len(fits.encode()) + 2
    assert events.encode_event_data(fits, limit) == json.dumps(fits, ensure_ascii=False)
    with pytest.raises(EventError) as info:
        events.encode_event_data(fits + unit, limit)
    assert info.value.code == events.E_TOO_LARGE
    assert f"over the {limit} allowed" in info.value.reason


def test_client_event_frames_parse_to_event_inputs() -> None:
    raw = json.dumps({"type": "event", "event": "typing", "data": {"typing": True}, "ref": "t1"})
    assert parse_client_text(raw, 1000) == EventInput("typing", '{"typing":true}', "t1")
    bare = parse_client_text('{"type": "event", "event": "wave"}', 1000)
    assert bare == EventInput("wave", "null", None)


@pytest.mark.parametrize(
    ("raw", "code", "ref"),
    [
        ('{"type": "event", "ref": "a"}', events.E_BAD_EVENT, "a"),
        ('{"type": "event", "event": "bad name", "ref": 3}', events.E_BAD_EVENT, "3"),
        ('{"type": "event", "event": "x", "data": NaN, "ref": "n"}', events.E_BAD_EVENT, "n"),
        ('{"type": "event", "event": "x", "data": "\\udfff"}', events.E_BAD_EVENT, None),
        ('{"type": "event", "event": "x", "data": "' + "y" * 99 + '", "ref": "b"}',
         events.E_TOO_LARGE, "b"),
        ('{"type": "event", "event": "x", "ref": true}', events.E_BAD_MESSAGE, None),
    ],
)
def test_bad_client_events_get_error_codes_with_their_ref(raw: str, code: str, ref: str | None):
    with pytest.raises(ValidationError) as info:
        parse_client_text(raw, 100)
    assert (info.value.code, info.value.ref) == (code, ref)
    json.loads(events.encode_error(info.value.code, info.value.reason, info.value.ref))


@pytest.mark.parametrize("text", [" ", "\t\n ", "\u00a0\u2003", "\u3000"])
def test_white_space_only_is_empty(text: str) -> None:
    for raw in (text, json.dumps({"type": "message", "text": text, "ref": "w"})):
        with pytest.raises(ValidationError) as info:
            parse_client_text(raw, 100)
        assert info.value.code == events.E_EMPTY
    assert parse_client_text(" x ", 100).text == " x "  # kept as sent otherwise


def test_room_event_frame_shape() -> None:
    ev = RoomEvent("news", "push", '{"data":"test message!"}')
    assert json.loads(events.encode_event(ev)) == {
        "type": "event", "event": "push", "room": "news", "data": {"data": "test message!"}}
    from_client = RoomEvent("lobby", "typing", "null", Member("c-1", "ann"), skip="c-1")
    assert json.loads(events.encode_event(from_client)) == {
        "type": "event", "event": "typing", "room": "lobby",
        "sender": {"id": "c-1", "name": "ann"}, "data": None}
    assert json.loads(events.encode_event_ack("r1", "typing")) == {
        "type": "ack", "ref": "r1", "event": "typing"}


def test_hello_tells_the_text_limit() -> None:
    hello = json.loads(events.encode_hello("r", "c-1", "ann", [], max_text_bytes=16384))
    assert hello["max_text_bytes"] == 16384
    assert "max_text_bytes" not in json.loads(events.encode_hello("r", "c-1", "ann", []))


@pytest.mark.parametrize(
    "event",
    [
        RoomEvent("r", "e", '{"a":[1,"é"]}'),
        RoomEvent("r", "typing", "true", Member("p-1", "bob"), "p-1"),
        RoomEvent("r", "e", "null", None, "p-9"),
    ],
)
def test_redis_payload_round_trip(event: RoomEvent) -> None:
    assert decode_event("r", json.loads(event_payload(event))) == event


@pytest.mark.parametrize(
    "payload",
    [{"k": "e"}, {"k": "e", "e": "x"}, {"k": "e", "e": 1, "d": "1"}, {"k": "e", "e": "x", "d": 1},
     {"k": "e", "e": "x", "d": "1", "s": "bob"}, {"k": "e", "e": "x", "d": "1", "s": [1, 2]}],
)
def test_malformed_redis_event_payloads_are_skipped(payload: dict) -> None:
    assert decode_event("r", payload) is None
