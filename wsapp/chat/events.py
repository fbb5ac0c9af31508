"""Chat protocol as pure functions: validation of names and client input, event encoding.

No sockets, no greenlets, no Flask: everything here is a function of its arguments and
is tested exhaustively in ``tests/chat/test_events.py``. The wire format is documented
in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .broker.base import Member, Message, PresenceEvent, RoomEvent

ROOM_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_NAME_CHARS = 32
MAX_REF_CHARS = 128
#: Deepest nesting of JSON arrays and objects parsed in a client frame (the object itself is
#: level 1). Chat messages are flat objects; deeper input is refused before json.loads, whose
#: C scanner recurses once per level and raises RecursionError near the interpreter's limit.
MAX_JSON_DEPTH = 32
#: JSON escapes take at most 6 characters per UTF-8 byte of text (``\u0001``), so a frame
#: longer than ``JSON_CHARS_PER_BYTE * max_bytes + JSON_SLACK_CHARS`` cannot carry an
#: acceptable text: it is refused unparsed, which bounds the parser's work per message.
JSON_CHARS_PER_BYTE = 6
JSON_SLACK_CHARS = 4096

# error event codes (docs/protocol.md)
E_TOO_LARGE = "message_too_large"
E_EMPTY = "empty_message"
E_BAD_MESSAGE = "invalid_message"
E_UNKNOWN_TYPE = "unknown_type"
E_UNAVAILABLE = "unavailable"
E_OUTCOME_UNKNOWN = "outcome_unknown"
E_RATE_LIMITED = "rate_limited"
E_BAD_EVENT = "invalid_event"

#: Event names: 1 to 64 of ``A-Z a-z 0-9 _ - . : /`` (docs/protocol.md, "Events").
EVENT_NAME_RE = re.compile(r"[A-Za-z0-9_.:/\-]{1,64}")


class ValidationError(ValueError):
    """Input we refuse; `code` is the error event code, `reason` a human sentence."""

    def __init__(self, code: str, reason: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.ref = ref


class EventError(ValidationError):
    """An event that cannot be emitted: a bad name, data that is not JSON, or too large.

    ``code`` is ``invalid_event`` or ``message_too_large``; ``reason`` says which and why."""


# ---- handshake parameters ---------------------------------------------------------------


#: ``.`` and ``..`` are dot-segments (RFC 3986 section 5.2.4): browsers and proxies remove
#: them from a URL path, so ``/chat/..`` never reaches the room it names. Refused.
DOT_SEGMENTS = frozenset({".", ".."})


def is_valid_room(room: object) -> bool:
    """Room names: 1 to 64 of ``A-Z a-z 0-9 _ - .``, except ``.`` and ``..``."""
    if not isinstance(room, str) or room in DOT_SEGMENTS:
        return False
    return ROOM_RE.fullmatch(room) is not None


def guest_name(token_hex: Callable[[int], str] = secrets.token_hex) -> str:
    return f"guest-{token_hex(2)}"


def normalize_name(raw: str | None, make_guest: Callable[[], str] = guest_name) -> str:
    """Nickname from ``?name=``: trimmed, 1 to 32 printable characters.

    Printable as `str.isprintable` says: no control characters (C0, C1), no format
    characters (every bidi control and zero-width character included) and no separator but
    the space. Missing or blank means a generated ``guest-XXXX``. Raises ValidationError
    otherwise."""
    if raw is None:
        return make_guest()
    name = raw.strip()
    if not name:
        return make_guest()
    if len(name) > MAX_NAME_CHARS:
        raise ValidationError(E_BAD_MESSAGE, f"name longer than {MAX_NAME_CHARS} characters")
    if not name.isprintable():
        raise ValidationError(E_BAD_MESSAGE, "name contains non-printable characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(E_BAD_MESSAGE, "name is not valid Unicode") from None
    return name


# ---- client -> server -------------------------------------------------------------------

#: Characters refused in message text (docs/protocol.md, "Characters"): C0 controls except
#: TAB and LF, DEL, C1 controls (U+0080-U+009F, which include the terminal CSI U+009B), and
#: the explicit bidirectional formatting characters of UAX #9 (embeddings and overrides
#: U+202A-U+202E, isolates U+2066-U+2069), which reorder how the rest of a line is shown
#: ("Trojan Source", CVE-2021-42574). The implicit marks LRM, RLM and ALM stay allowed:
#: they reorder nothing, and right-to-left writers use them.
FORBIDDEN_TEXT_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def check_text_chars(text: str, ref: str | None = None) -> None:
    """Raise ValidationError (``invalid_message``) if `text` holds a refused character.

    Refused, not stripped: the sender learns which character and where, and what is
    stored and shown is exactly what was sent."""
    if text.isprintable():  # the common case, one C loop: no control or format character
        return
    found = FORBIDDEN_TEXT_CHARS.search(text)
    if found is not None:
        raise ValidationError(
            E_BAD_MESSAGE,
            f"message text contains the control character U+{ord(found.group()):04X} "
            f"at position {found.start()}",
            ref,
        )


@dataclass(frozen=True, slots=True)
class ChatInput:
    """A message a client wants to send: its text and optional correlation ref."""

    text: str
    ref: str | None = None


def _ref(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(E_BAD_MESSAGE, "ref must be a string or a number")
    ref = value if isinstance(value, str) else json.dumps(value)
    if len(ref) > MAX_REF_CHARS:
        raise ValidationError(E_BAD_MESSAGE, f"ref longer than {MAX_REF_CHARS} characters")
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(E_BAD_MESSAGE, "ref is not valid Unicode") from None
    return ref


# A JSON string literal (RFC 8259 section 7); its contents never nest.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
# Opening brackets become "(", closing ones ")", everything else is deleted.
_BRACKETS = bytes.maketrans(b"[]{}", b"()()")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_over(raw: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if `raw` nests JSON arrays/objects deeper than `limit` levels.

    Counted outside string literals, so brackets inside a message's text are free. A frame
    with at most `limit` brackets in all cannot nest deeper: that test is two ``str.count``
    calls and covers every ordinary message. Otherwise the brackets are reduced to ``(``
    and ``)`` and every innermost pair ``()`` is deleted, `limit` times at most: each round
    takes exactly one level off every nest, so a pair left over means a deeper nest, and
    ``(`` left over without its ``)`` (not JSON) is as deep as the parser would have gone.
    """
    if raw.count("[") + raw.count("{") <= limit:
        return False
    skeleton = _JSON_STRING.sub("", raw).encode("utf-8", "surrogatepass")
    rest = skeleton.translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        reduced = rest.replace(b"()", b"")
        if len(reduced) == len(rest):
            break
        rest = reduced
    return b"()" in rest or rest.count(b"(") > limit


@dataclass(frozen=True, slots=True)
class EventInput:
    """A named event a chat client wants relayed to its room: name, data as JSON text, ref."""

    name: str
    data: str
    ref: str | None = None


# ---- events (any room: chat clients, server code, the HTTP API, Publisher) ----------------


def check_event_name(name: object, ref: str | None = None) -> str:
    """`name` if it is a valid event name (EVENT_NAME_RE), else EventError."""
    if not isinstance(name, str):
        raise EventError(E_BAD_EVENT, "event name must be a string", ref)
    if EVENT_NAME_RE.fullmatch(name) is None:
        shown = json.dumps(name[:40])
        raise EventError(
            E_BAD_EVENT, f"invalid event name {shown}: use 1 to 64 of A-Z a-z 0-9 _ - . : /", ref
        )
    return name


def encode_event_data(data: Any, max_bytes: int, ref: str | None = None) -> str:
    """`data` as compact JSON text of at most `max_bytes` UTF-8 bytes, else EventError.

    Anything `json.dumps` takes, except NaN and the infinities (not JSON, RFC 8259 6) and
    strings that are not valid Unicode (lone surrogates)."""
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventError(E_BAD_EVENT, f"event data is not JSON: {exc}"[:200], ref) from None
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise EventError(E_BAD_EVENT, "event data is not valid Unicode", ref) from None
    if size > max_bytes:
        reason = f"event data is {size} bytes, over the {max_bytes} allowed"
        raise EventError(E_TOO_LARGE, reason, ref)
    return text


def parse_client_event(obj: dict[str, Any], ref: str | None, max_bytes: int) -> EventInput:
    """``{"type": "event", "event": name, "data": any (optional), "ref": ...}`` from a client."""
    name = check_event_name(obj.get("event"), ref)
    return EventInput(name, encode_event_data(obj.get("data"), max_bytes, ref), ref)


def parse_client_text(raw: str, max_bytes: int) -> ChatInput | EventInput:
    """Interpret one text frame from a client.

    * a JSON object with a ``"type"`` key is a protocol message:
      ``{"type": "message", "text": str, "ref": str|number (optional)}``, or an event
      ``{"type": "event", "event": name, "data": JSON (optional), "ref": ...}``
      (an :class:`EventInput`, its data at most `max_bytes` as JSON);
    * anything else (plain text, other JSON) is taken whole as the message text.

    The text must have a character other than white space (`str.isspace`), be at most
    `max_bytes` UTF-8 bytes, and be free of the characters `check_text_chars` refuses (TAB
    and LF are allowed). A frame that starts with ``{`` and nests deeper than
    MAX_JSON_DEPTH is refused (``invalid_message``), and one too long to hold `max_bytes` of
    escaped text is ``message_too_large`` unparsed. Raises ValidationError.
    """
    text: Any = raw
    ref: str | None = None
    stripped = raw.lstrip()
    if stripped.startswith("{"):
        if len(raw) > JSON_CHARS_PER_BYTE * max_bytes + JSON_SLACK_CHARS:
            raise ValidationError(E_TOO_LARGE, f"message is over {max_bytes} bytes")
        # The first test (repeated from json_depth_over, to spare ordinary messages a call)
        # admits every frame with at most MAX_JSON_DEPTH brackets.
        if raw.count("[") + raw.count("{") > MAX_JSON_DEPTH and json_depth_over(raw):
            raise ValidationError(E_BAD_MESSAGE, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None  # not JSON: plain text that happens to start with "{"
        if isinstance(obj, dict) and "type" in obj:
            ref = _ref(obj.get("ref"))
            if obj["type"] == "event":  # relayed to the room, not kept (docs/protocol.md)
                return parse_client_event(obj, ref, max_bytes)
            if obj["type"] != "message":
                raise ValidationError(
                    E_UNKNOWN_TYPE, f"unknown message type {json.dumps(obj['type'])[:40]}", ref
                )
            text = obj.get("text")
            if not isinstance(text, str):
                raise ValidationError(E_BAD_MESSAGE, "message needs a string 'text'", ref)
    if not text or text.isspace():
        raise ValidationError(E_EMPTY, "message text is empty or only white space", ref)
    if len(text) > max_bytes:  # n code points are at least n bytes
        raise ValidationError(E_TOO_LARGE, f"message text is over {max_bytes} bytes", ref)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape such as "\ud800"
        raise ValidationError(E_BAD_MESSAGE, "message text is not valid Unicode", ref) from None
    if size > max_bytes:
        raise ValidationError(E_TOO_LARGE, f"message text is over {max_bytes} bytes", ref)
    if not text.isprintable():  # the common case is printable: spare it the call
        check_text_chars(text, ref)
    return ChatInput(text, ref)


# ---- server -> client -------------------------------------------------------------------


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_hello(
    room: str,
    conn_id: str,
    name: str,
    members: Iterable[Member],
    history: int = 0,
    recovered: bool | None = None,
    max_text_bytes: int | None = None,
) -> bytes:
    """First event on every chat connection.

    ``history``: how many replayed messages follow; ``recovered`` only when ``since=``
    was given (False: some messages after it are no longer in history);
    ``max_text_bytes``: the largest message text the server takes (WSAPP_MAX_CHAT_BYTES)."""
    members = list(members)
    obj: dict[str, Any] = {
        "type": "hello",
        "room": room,
        "id": conn_id,
        "name": name,
        "members": [m.name for m in members],
        "presence": [{"id": m.id, "name": m.name} for m in members],
        "history": history,
    }
    if recovered is not None:
        obj["recovered"] = recovered
    if max_text_bytes is not None:
        obj["max_text_bytes"] = max_text_bytes
    return _dump(obj)


def encode_message(msg: Message, replay: bool = False) -> bytes:
    obj: dict[str, Any] = {"type": "message", **msg.to_dict()}
    if replay:
        obj["replay"] = True
    return _dump(obj)


def encode_ack(ref: str, message_id: str) -> bytes:
    return _dump({"type": "ack", "ref": ref, "id": message_id})


def encode_presence(event: PresenceEvent) -> bytes:
    return _dump(
        {"type": event.kind, "room": event.room, "name": event.member.name, "id": event.member.id}
    )


def encode_error(code: str, reason: str, ref: str | None = None) -> bytes:
    obj: dict[str, Any] = {"type": "error", "code": code, "reason": reason}
    if ref is not None:
        obj["ref"] = ref
    return _dump(obj)


def encode_event_ack(ref: str, name: str) -> bytes:
    """The ack of a client's event: it was handed to the broker (events have no id)."""
    return _dump({"type": "ack", "ref": ref, "event": name})


def encode_room_event(event: RoomEvent) -> bytes:
    """``{"type": "event", "event", "room"[, "sender"], "data"}``; data spliced in as it is."""
    head: dict[str, Any] = {"type": "event", "event": event.name, "room": event.room}
    if event.sender is not None:
        head["sender"] = {"id": event.sender.id, "name": event.sender.name}
    return b"".join((_dump(head)[:-1], b',"data":', event.data.encode("utf-8"), b"}"))


def encode_event(event: Message | PresenceEvent | RoomEvent) -> bytes:
    """A live broker event as the JSON payload every local member receives."""
    if isinstance(event, Message):
        return encode_message(event)
    if isinstance(event, RoomEvent):
        return encode_room_event(event)
    return encode_presence(event)
