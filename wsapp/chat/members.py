"""A room's members in this process: who they are, what they were sent while joining.

`LocalMember` is one connection in a room (buffering live events until its history replay
is out, see `wsapp.chat.hub`); `_Room` is a room's members and the snapshots a broadcast
iterates over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import filterfalse
from operator import attrgetter
from typing import Any, Protocol

import gevent.event

from .broker.base import Event, Member, Message, Subscription

CLOSE_POLICY = 1008


class ChatConnection(Protocol):
    id: str

    def send_frame(self, frame: bytes) -> bool: ...

    def close_nowait(self, code: int = 1000, reason: str = "") -> Any: ...


def _send_each(conns: list[ChatConnection], frame: bytes, *groups: tuple[list, bytes]) -> None:
    for group, data in ((conns, frame), *groups):
        for conn in group:
            conn.send_frame(data)


def text_frame(payload: bytes) -> bytes:
    """Frame a UTF-8 JSON payload as one unmasked server text frame."""
    from wsapp.protocol.frames import Opcode, encode_frame

    return encode_frame(Opcode.TEXT, payload)


class LocalMember:
    """A connection in a room of this process."""

    __slots__ = (
        "buffer", "buffer_bytes", "buffer_limit", "conn", "deflate", "events_only", "live",
        "member", "room", "sender",
    )

    def __init__(
        self,
        conn: ChatConnection,
        room: str,
        member: Member,
        buffer_limit: int,
        client_id: str | None = None,
        events_only: bool = False,
    ) -> None:
        self.conn = conn
        self.room = room
        self.member = member
        # Who publishes, for idempotent retries by ref: the client's own id (``?client=``)
        # survives reconnects; without one, the connection id. "c:" keeps the two apart.
        self.sender = f"c:{client_id}" if client_id else member.id
        #: An event member (see the module docstring): live at once, named events only.
        self.events_only = events_only
        self.live = events_only
        self.buffer: list[tuple[Event, bytes]] | None = None if events_only else []
        self.deflate = False  # takes the broadcasts the hub compressed
        self.buffer_bytes = 0
        self.buffer_limit = buffer_limit  # bytes of frames buffered while joining

    @property
    def id(self) -> str:
        return self.member.id

    @property
    def name(self) -> str:
        return self.member.name

    def deliver(self, event: Event, frame: bytes) -> None:
        if self.live:
            self.conn.send_frame(frame)
            return
        buf = self.buffer
        if buf is None:  # overflowed while joining; already closing
            return
        if self.buffer_bytes + len(frame) > self.buffer_limit:
            self.buffer = None
            reason = "too slow: event buffer overflow while joining"
            self.conn.close_nowait(CLOSE_POLICY, reason)
            return
        buf.append((event, frame))
        self.buffer_bytes += len(frame)

    def go_live(
        self,
        last_key: tuple[int, ...] | None,
        id_key: Callable[[str], tuple[int, ...]],
        pace: Callable[[], bool] = lambda: True,
    ) -> bool:
        """Flush events buffered during the join, skipping replayed ids; then go live.

        `pace()` may yield (waiting for the queue to drain); events arriving meanwhile
        join the buffer, so we loop until a pass ends with nothing new, and switch to
        live without yielding after that last check. False if the member was closed."""
        while True:
            buf = self.buffer
            if buf is None:
                return False  # overflowed: the connection is closing
            if not buf:
                break
            self.buffer = []
            self.buffer_bytes = 0
            for event, frame in buf:
                if (
                    isinstance(event, Message)
                    and last_key is not None
                    and id_key(event.id) <= last_key
                ):
                    continue  # already sent as a replay
                if not pace():
                    self.buffer = None
                    return False
                self.conn.send_frame(frame)
        self.buffer = None
        self.live = True
        return True

    def abandon(self) -> None:
        """Stop buffering for a member that will never go live."""
        self.buffer = None


@dataclass(eq=False)
class _Room:
    name: str
    members: dict[str, LocalMember] = field(default_factory=dict)
    snapshot: tuple[LocalMember, ...] = ()  # every member: named events go to all
    chat: tuple[LocalMember, ...] = ()  # chat members: messages and presence
    event_members: int = 0
    subscription: Subscription | None = None
    ready: gevent.event.Event = field(default_factory=gevent.event.Event)
    error: BaseException | None = None
    deflating: int = 0  # members that take compressed broadcasts

    def add(self, lm: LocalMember) -> None:
        self.members[lm.id] = lm
        self.event_members += lm.events_only
        self.refresh()

    def remove(self, member_id: str) -> LocalMember | None:
        lm = self.members.pop(member_id, None)
        if lm is not None:
            self.event_members -= lm.events_only
            self.refresh()
        return lm

    def refresh(self) -> None:
        self.snapshot = tuple(self.members.values())
        # a pure chat room (the common case, and join storms) pays for one tuple only
        chat = tuple(filterfalse(_events_only, self.snapshot)) if self.event_members else None
        self.chat = self.snapshot if chat is None else chat
        self.deflating = sum(1 for lm in self.snapshot if lm.deflate)


_events_only = attrgetter("events_only")


