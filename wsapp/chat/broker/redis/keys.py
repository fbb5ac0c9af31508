"""Where the Redis broker keeps its state: key and channel names, and value formats.

Keys (``P`` is the prefix, ``wsapp:`` by default; ``R`` a room name)::

    P s:R            STREAM   the room's history: fields n (name), t (text); XADD MAXLEN history
    P m:R            HASH     the room's meta: last (newest id ever assigned), floor (newest
                              id trimmed from the stream: the resume floor)
    P known          ZSET     room -> when its s:R and m:R expire (Redis ms; +inf: never):
                              rooms with history, for /api/rooms
    P c:R            channel  pub/sub fan-out of the room's events (JSON, see decode_event)
    P p:R:PROC       HASH     presence of one process in a room: member id -> "seq<TAB>name";
                              PEXPIRE 2 x WSAPP_PRESENCE_TTL, refreshed by the heartbeat
    P procs:R        ZSET     process -> deadline (Redis ms): a process is present in R until then
    P rooms          ZSET     room -> deadline: rooms with members somewhere
    P seq            STRING   join counter (members are listed in join order across processes)
    P epoch          STRING   "<ms>-0" when this Redis dataset first served wsapp (resume floor)
    P alive:PROC     STRING   written by a process's probe (does Redis take writes?); expires
    P d:R:N:S:REF    STRING   id of the message sender S (N: len(S)) published with ref REF;
                              PEXPIRE WSAPP_REF_TTL (idempotent publish)

Rooms are freed by Redis itself: ``s:R`` and ``m:R`` carry an expiry of WSAPP_ROOM_TTL,
extended by every publish and join and, while members are present, by the heartbeat;
set to exactly WSAPP_ROOM_TTL when the room's last member leaves (the Lua prelude's
``keep_room``). Presence keys expire on their own.

Pub/sub payloads are JSON objects with a kind ``k``: ``m`` message (``id``, ``n`` name, ``t``
text), ``j``/``l`` join/leave (``id`` member id, ``n`` name), ``k`` the room's newest id
(``id``) published by the ``mark`` script right after a subscription, ``e`` a named event
(``e`` name, ``d`` its data as JSON text, optional ``s`` sender ``[id, name]`` and ``x`` the
connection id that must not get it), published by the ``emit`` script.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..base import Event, Member, Message, PresenceEvent, RoomEvent, parse_stream_id


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel names under one prefix."""

    prefix: str = "wsapp:"

    @property
    def known(self) -> str:
        return self.prefix + "known"

    @property
    def epoch(self) -> str:
        return self.prefix + "epoch"

    @property
    def rooms(self) -> str:
        return self.prefix + "rooms"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    def alive(self, proc: str) -> str:
        return f"{self.prefix}alive:{proc}"

    def ref(self, room: str, sender: str, ref: str) -> str:
        """The dedup key of one (sender, ref) pair; the length makes it unambiguous."""
        return f"{self.prefix}d:{room}:{len(sender)}:{sender}:{ref}"

    def stream(self, room: str) -> str:
        return f"{self.prefix}s:{room}"

    def meta(self, room: str) -> str:
        return f"{self.prefix}m:{room}"

    def channel(self, room: str) -> str:
        return f"{self.prefix}c:{room}"

    def room_of_channel(self, channel: str) -> str:
        """The room a ``P c:R`` channel name belongs to."""
        return channel[len(self.prefix) + 2 :]

    def presence_prefix(self, room: str) -> str:
        return f"{self.prefix}p:{room}:"

    def presence(self, room: str, proc: str) -> str:
        return self.presence_prefix(room) + proc

    def procs(self, room: str) -> str:
        return f"{self.prefix}procs:{room}"


def text(value: Any) -> str:
    """A Redis reply value (bytes, or already str) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def stream_messages(room: str, entries: list) -> list[Message]:
    """XRANGE/XREVRANGE entries ``[(id, {b"n": name, b"t": text}), ...]`` as Messages."""
    out = []
    for raw_id, fields in entries:
        mid = text(raw_id)
        out.append(
            Message(
                room=room,
                id=mid,
                name=text(fields.get(b"n", b"")),
                text=text(fields.get(b"t", b"")),
                ts=parse_stream_id(mid)[0],
            )
        )
    return out


def presence_value(seq: int, name: str) -> str:
    """A member's value in a presence hash: its join sequence number and its name."""
    return f"{seq}\t{name}"


def parse_presence_value(value: Any) -> tuple[int, str]:
    seq, _, name = text(value).partition("\t")
    return int(seq), name


def event_payload(event: RoomEvent) -> str:
    """The pub/sub payload of a named event (kind ``e``; :func:`decode_event` reads it)."""
    obj: dict[str, Any] = {"k": "e", "e": event.name, "d": event.data}
    if event.sender is not None:
        obj["s"] = [event.sender.id, event.sender.name]
    if event.skip is not None:
        obj["x"] = event.skip
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def decode_event(room: str, data: dict[str, Any]) -> Event | None:
    """A pub/sub payload as a broker Event (``None`` for kinds that are not events)."""
    k = data.get("k")
    if k == "e":  # from any process that can PUBLISH (Publisher): skipped unless well formed
        name, body, sender, skip = data.get("e"), data.get("d"), data.get("s"), data.get("x")
        if not (isinstance(name, str) and isinstance(body, str)):
            return None
        if sender is not None and not (
            isinstance(sender, list)
            and len(sender) == 2
            and all(isinstance(v, str) for v in sender)
        ):
            return None
        member = Member(sender[0], sender[1]) if sender else None
        return RoomEvent(room, name, body, member, skip if isinstance(skip, str) else None)
    if k == "m":
        mid = data["id"]
        ts = parse_stream_id(mid)[0]
        return Message(room=room, id=mid, name=data["n"], text=data["t"], ts=ts)
    if k in ("j", "l"):
        member = Member(data["id"], data["n"])
        return PresenceEvent(room, "join" if k == "j" else "leave", member)
    return None
