"""Pure chat protocol functions: names, client input, event encoding (no sockets)."""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsapp.chat import events
from wsapp.chat.broker.base import Member, Message, PresenceEvent
from wsapp.chat.events import ValidationError, parse_client_text

ROOM_CHARS = set(string.ascii_letters + string.digits + "_-.")


# ---- room names -------------------------------------------------------------------------


@pytest.mark.parametrize("char", [chr(c) for c in range(0, 256)])
def test_room_charset_is_exactly_the_documented_one(char: str) -> None:
    # "." alone is a dot-segment
    assert events.is_valid_room(char) == (char in ROOM_CHARS and char != ".")
    assert events.is_valid_room("ab" + char + "cd") == (char in ROOM_CHARS)


@pytest.mark.parametrize("room", ["a", "lobby", "A-Z_a-z.0-9", "x" * 64, "...", "-", "ops.prod-2"])
def test_valid_rooms(room: str) -> None:
    assert events.is_valid_room(room)


@pytest.mark.parametrize(
    "room",
    [
        "", "x" * 65, "a b", "a/b", "café", "ロビー", "a\n", "\nabc", "a%20b", "a?b", "a#b", "a:b",
        None, 123, b"lobby", ".", "..",
    ],
)
def test_invalid_rooms(room: object) -> None:
    assert not events.is_valid_room(room)


# ---- nicknames --------------------------------------------------------------------------

GUEST = re.compile(r"guest-[0-9a-f]{4}")


@pytest.mark.parametrize("raw", [None, "", " ", "\t \t"])
def test_missing_or_blank_name_is_a_generated_guest(raw: str | None) -> None:
    name = events.normalize_name(raw)
    assert GUEST.fullmatch(name), name


def test_guest_names_vary() -> None:
    assert len({events.normalize_name(None) for _ in range(50)}) > 40


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("bob", "bob"),
        ("  bob  ", "bob"),
        ("Bob the Builder", "Bob the Builder"),
        ("x" * 32, "x" * 32),
        ("  " + "y" * 32 + "\n", "y" * 32),
        ("Zoë 🎉", "Zoë 🎉"),
        ("a", "a"),
        ("<script>", "<script>"),
    ],
)
def test_valid_names_are_trimmed(raw: str, want: str) -> None:
    assert events.normalize_name(raw) == want


@pytest.mark.parametrize(
    "raw",
    ["x" * 33, "a\tb", "a\x00b", "bell\x07", "a\x7fb", "a\u2028b", "\ud800x", "a\nb",
     "\u202eevil", "a\u2066b", "a\u200fb", "a\x9bb", "a\x1b[31mb", "a\rb"],
)
def test_invalid_names(raw: str) -> None:
    with pytest.raises(ValidationError):
        events.normalize_name(raw)


# ---- client input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text", "ref"),
    [
        ("hello", "hello", None),
        ("  spaced  ", "  spaced  ", None),
        ('{"type": "message", "text": "hi"}', "hi", None),
        ('{"type": "message", "text": "hi", "ref": "r-1"}', "hi", "r-1"),
        ('{"type": "message", "text": "hi", "ref": 7}', "hi", "7"),
        ('{"type": "message", "text": "hi", "ref": null}', "hi", None),
        ('  {"type":"message","text":"x"}', "x", None),
        ('{"text": "no type"}', '{"text": "no type"}', None),
        ("[1, 2]", "[1, 2]", None),
        ("{not json", "{not json", None),
        ('"a json string"', '"a json string"', None),
        ("42", "42", None),
        ('{"type": "message", "text": "multi\\nline"}', "multi\nline", None),
        ('{"type": "message", "text": "\\u00e9"}', "é", None),
    ],
)
def test_parse_client_text(raw: str, text: str, ref: str | None) -> None:
    assert parse_client_text(raw, 1000) == events.ChatInput(text, ref)


@pytest.mark.parametrize(
    ("raw", "code", "ref"),
    [
        ("", events.E_EMPTY, None),
        ('{"type": "message", "text": ""}', events.E_EMPTY, None),
        ('{"type": "message", "text": "", "ref": "a"}', events.E_EMPTY, "a"),
        ('{"type": "message"}', events.E_BAD_MESSAGE, None),
        ('{"type": "message", "text": 5, "ref": "b"}', events.E_BAD_MESSAGE, "b"),
        ('{"type": "message", "text": null}', events.E_BAD_MESSAGE, None),
        ('{"type": "ping", "ref": "c"}', events.E_UNKNOWN_TYPE, "c"),
        ('{"type": null}', events.E_UNKNOWN_TYPE, None),
        ('{"type": "message", "text": "x", "ref": true}', events.E_BAD_MESSAGE, None),
        ('{"type": "message", "text": "x", "ref": {"a": 1}}', events.E_BAD_MESSAGE, None),
        (
            '{"type": "message", "text": "x", "ref": "' + "r" * 129 + '"}',
            events.E_BAD_MESSAGE,
            None,
        ),
        ('{"type": "message", "text": "\\ud800"}', events.E_BAD_MESSAGE, None),
        ('{"type": "message", "text": "x", "ref": "\\udfff"}', events.E_BAD_MESSAGE, None),
    ],
)
def test_parse_client_text_errors(raw: str, code: str, ref: str | None) -> None:
    with pytest.raises(ValidationError) as info:
        parse_client_text(raw, 1000)
    assert info.value.code == code
    assert info.value.ref == ref
    # every error is encodable as an error event
    json.loads(events.encode_error(info.value.code, info.value.reason, info.value.ref))


@pytest.mark.parametrize("unit", ["a", "é", "€", "🎉"])
def test_size_limit_counts_utf8_bytes_inclusive(unit: str) -> None:
    size = len(unit.encode())
    limit = 12
    fits = unit * (limit // size)
    assert parse_client_text(fits, limit).text == fits
    over = fits + unit
    with pytest.raises(ValidationError) as info:
        parse_client_text(over, limit)
    assert info.value.code == events.E_TOO_LARGE
    wrapped = json.dumps({"type": "message", "text": over, "ref": "big"})
    with pytest.raises(ValidationError) as info:
        parse_client_text(wrapped, limit)
    assert (info.value.code, info.value.ref) == (events.E_TOO_LARGE, "big")


def test_size_limit_applies_to_text_not_to_the_json_wrapper() -> None:
    text = "x" * 10
    raw = json.dumps({"type": "message", "text": text, "ref": "r" * 100})
    assert parse_client_text(raw, 10).text == text


@given(st.text(min_size=1, max_size=200))
def test_any_plain_text_not_looking_like_json_object_is_taken_whole(text: str) -> None:
    if text.lstrip().startswith("{"):
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # cannot arrive in a (UTF-8 validated) text frame
    if text.isspace():  # white space only is refused (test_white_space_only_is_empty)
        return
    if events.FORBIDDEN_TEXT_CHARS.search(text):
        with pytest.raises(ValidationError) as info:
            parse_client_text(text, 10_000)
        assert info.value.code == events.E_BAD_MESSAGE
        return
    assert parse_client_text(text, 10_000) == events.ChatInput(text)


@given(st.text(min_size=1, max_size=100), st.one_of(st.none(), st.text(max_size=20), st.integers()))
def test_json_message_roundtrip(text: str, ref: str | int | None) -> None:
    raw = json.dumps({"type": "message", "text": text, "ref": ref})
    try:
        text.encode("utf-8")
        if isinstance(ref, str):
            ref.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(ValidationError):
            parse_client_text(raw, 10_000)
        return
    # white space only (tests/rooms: test_white_space_only_is_empty) and refused characters
    if text.isspace() or events.FORBIDDEN_TEXT_CHARS.search(text):
        with pytest.raises(ValidationError):
            parse_client_text(raw, 10_000)
        return
    got = parse_client_text(raw, 10_000)
    assert got.text == text
    assert got.ref == (None if ref is None else str(ref))


# ---- server events ----------------------------------------------------------------------

MSG = Message(
    room="lobby", id="1700000000000-3", name="Zoë", text='héllo 🎉\n"q"', ts=1700000000000
)


def test_encode_message_live_and_replay() -> None:
    live = json.loads(events.encode_message(MSG))
    assert live == {
        "type": "message",
        "id": MSG.id,
        "room": "lobby",
        "name": "Zoë",
        "text": MSG.text,
        "ts": MSG.ts,
    }
    replay = json.loads(events.encode_message(MSG, replay=True))
    assert replay == {**live, "replay": True}


def test_encoding_is_compact_utf8_not_ascii_escaped() -> None:
    data = events.encode_message(MSG)
    assert isinstance(data, bytes)
    assert "Zoë".encode() in data and b"\\u" not in data
    assert b", " not in data and b": " not in data


def test_encode_event_dispatches() -> None:
    assert events.encode_event(MSG) == events.encode_message(MSG)
    ev = PresenceEvent("lobby", "join", Member("c-1", "bob"))
    assert events.encode_event(ev) == events.encode_presence(ev)


@pytest.mark.parametrize("kind", ["join", "leave"])
def test_encode_presence(kind: str) -> None:
    ev = PresenceEvent("r", kind, Member("c-9", "ann"))  # type: ignore[arg-type]
    assert json.loads(events.encode_presence(ev)) == {
        "type": kind,
        "room": "r",
        "name": "ann",
        "id": "c-9",
    }


def test_encode_hello() -> None:
    members = [Member("c-1", "ann"), Member("c-2", "bob"), Member("c-3", "ann")]
    hello = json.loads(events.encode_hello("r", "c-2", "bob", members, history=7))
    assert hello == {
        "type": "hello",
        "room": "r",
        "id": "c-2",
        "name": "bob",
        "members": ["ann", "bob", "ann"],
        "presence": [
            {"id": "c-1", "name": "ann"},
            {"id": "c-2", "name": "bob"},
            {"id": "c-3", "name": "ann"},
        ],
        "history": 7,
    }
    assert "recovered" not in hello
    for recovered in (True, False):
        assert (
            json.loads(events.encode_hello("r", "c", "n", [], recovered=recovered))["recovered"]
            is recovered
        )


def test_encode_ack_and_error() -> None:
    assert json.loads(events.encode_ack("r1", "5-0")) == {"type": "ack", "ref": "r1", "id": "5-0"}
    assert json.loads(events.encode_error("c", "why")) == {
        "type": "error",
        "code": "c",
        "reason": "why",
    }
    assert json.loads(events.encode_error("c", "why", "r")) == {
        "type": "error",
        "code": "c",
        "reason": "why",
        "ref": "r",
    }


@given(st.text(max_size=300))
def test_encode_message_roundtrips_any_valid_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    msg = Message("r", "1-0", "n", text, 1)
    assert json.loads(events.encode_message(msg).decode("utf-8"))["text"] == text


# ---- nesting depth (issue 13 item 7) -----------------------------------------------------


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet="[{k", max_size=2), inner, max_size=3),
    max_leaves=60,
)


def _nest(value: object, levels: int) -> object:
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@given(_json_values, st.integers(min_value=0, max_value=40))
def test_json_depth_over_is_exact_for_any_json(value: object, extra: int) -> None:
    obj = {"v": _nest(value, extra)}
    raw = json.dumps(obj, separators=(",", ":"))
    assert events.json_depth_over(raw) == (_depth(obj) > events.MAX_JSON_DEPTH)
    deep = _depth(obj) > events.MAX_JSON_DEPTH
    assert events.json_depth_over(json.dumps(obj, indent=1)) == deep


@pytest.mark.parametrize(
    ("raw", "over"),
    [
        ("{" * 32, False),  # not JSON, but the parser would stop at depth 32
        ("{" * 33, True),
        ("[" * 100_000, True),
        ('{"a":"' + "[" * 100 + '"}', False),
        ('{"a":"\\"' + "[" * 100 + '"}', False),  # an escaped quote does not end the string
        ("{" + "[]," * 10_000 + "[]}", False),
        ("]" * 50 + "[" * 20, False),
    ],
)
def test_json_depth_over_cases(raw: str, over: bool) -> None:
    assert events.json_depth_over(raw) is over


def test_deep_frames_are_invalid_message_and_long_ones_too_large() -> None:
    with pytest.raises(ValidationError) as info:
        parse_client_text('{"type":"message","text":' + "[" * 100_000, 16384)
    assert info.value.code == events.E_BAD_MESSAGE
    with pytest.raises(ValidationError) as info:
        parse_client_text("{" + " " * (6 * 100 + events.JSON_SLACK_CHARS), 100)
    assert info.value.code == events.E_TOO_LARGE
    nested = '{"type":"message","text":"[[[[","x":' + "[" * 31 + "]" * 31 + "}"
    assert parse_client_text(nested, 100).text == "[[[["


# ---- characters in message text (issue 13 item 9) ---------------------------------------

REFUSED = [chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]] + [
    chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
]
ALLOWED = [
    "\t", "\n", "\u200e", "\u200f", "\u061c", "\u200b", "\u200d", "\u2028", "\u00a0", "\u00ad",
    "\ufeff",
]


@pytest.mark.parametrize("char", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
def test_control_and_bidi_override_characters_are_refused(char: str) -> None:
    for raw in (f"a{char}b", json.dumps({"type": "message", "text": f"ok {char}", "ref": "r"})):
        with pytest.raises(ValidationError) as info:
            parse_client_text(raw, 1000)
        assert info.value.code == events.E_BAD_MESSAGE
        assert f"U+{ord(char):04X}" in info.value.reason
    assert info.value.ref == "r"


@pytest.mark.parametrize("char", ALLOWED, ids=[f"U+{ord(c):04X}" for c in ALLOWED])
def test_newlines_tabs_and_bidi_marks_are_allowed(char: str) -> None:
    text = f"line one{char}line two"
    assert parse_client_text(json.dumps({"type": "message", "text": text}), 1000).text == text
