"""The embedded broker: one process, state in dicts, delivery by direct calls.

Ids use the Redis stream format ``"<unix ms>-<seq>"`` (per room: the millisecond clock,
never going back, and a sequence within one millisecond), so they stay increasing across
restarts of the process and compare the same way as the Redis broker's ids.

Every method runs without yielding to other greenlets, so id assignment, the history
append and delivery to subscribers are atomic: subscribers see a room's events in id order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import (
    Broker,
    Callback,
    Member,
    Message,
    PresenceEvent,
    RoomInfo,
    Subscription,
    fan_out,
)


@dataclass
class _Room:
    history: deque[Message]
    last: tuple[int, int] | None = None  # (ms, seq) of the newest id ever assigned
    last_id: str | None = None
    floor: tuple[int, int] = (0, 0)  # history holds every message after this key
    members: dict[str, Member] = field(default_factory=dict)  # insertion = join order
    subscribers: list[Subscription] = field(default_factory=list)


class MemoryBroker(Broker):
    kind = "memory"

    def __init__(self, history: int = 100, clock: Callable[[], float] = time.time) -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        self._max_history = history
        self._clock = clock
        self._rooms: dict[str, _Room] = {}
        # Anything published before this process started is unknown to us.
        self._start_key = (self._now_ms(), 0)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _room(self, room: str) -> _Room:
        r = self._rooms.get(room)
        if r is None:
            r = self._rooms[room] = _Room(history=deque(maxlen=self._max_history or None), floor=self._start_key)
        return r

    # ---- messages

    def publish(self, room: str, name: str, text: str) -> Message:
        r = self._room(room)
        ms = self._now_ms()
        key = (ms, 0) if r.last is None or ms > r.last[0] else (r.last[0], r.last[1] + 1)
        r.last = key
        msg = Message(room=room, id=f"{key[0]}-{key[1]}", name=name, text=text, ts=key[0])
        r.last_id = msg.id
        if self._max_history == 0:
            r.floor = key
        else:
            if len(r.history) == self._max_history:
                r.floor = self.id_key(r.history[0].id)  # about to be evicted
            r.history.append(msg)
        fan_out(r.subscribers, msg)
        return msg

    def history(self, room: str, since: str | None = None, limit: int | None = None) -> list[Message]:
        since_key = None if since is None else self.id_key(since)  # validate first
        r = self._rooms.get(room)
        if r is None or limit == 0:
            return []
        if since_key is None:
            items = list(r.history)
            return items if limit is None else items[-limit:]
        out: list[Message] = []
        # Newest first until we reach `since`; history is small (WSAPP_HISTORY).
        for msg in reversed(r.history):
            if self.id_key(msg.id) <= since_key:
                break
            out.append(msg)
        out.reverse()
        return out if limit is None else out[:limit]

    def covers(self, room: str, since: str) -> bool:
        since_key = self.id_key(since)
        r = self._rooms.get(room)
        floor = r.floor if r is not None else self._start_key
        return since_key >= floor

    # ---- fan-out

    def subscribe(self, room: str, callback: Callback) -> Subscription:
        sub = Subscription(room, callback)
        self._room(room).subscribers.append(sub)
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.active = False
        r = self._rooms.get(subscription.room)
        if r is not None and subscription in r.subscribers:
            r.subscribers.remove(subscription)
            self._forget_if_empty(subscription.room, r)

    # ---- presence

    def join(self, room: str, member: Member) -> None:
        r = self._room(room)
        r.members[member.id] = member
        fan_out(r.subscribers, PresenceEvent(room, "join", member))

    def leave(self, room: str, member_id: str) -> None:
        r = self._rooms.get(room)
        if r is None:
            return
        member = r.members.pop(member_id, None)
        if member is not None:
            fan_out(r.subscribers, PresenceEvent(room, "leave", member))
        self._forget_if_empty(room, r)

    def members(self, room: str) -> list[Member]:
        r = self._rooms.get(room)
        return list(r.members.values()) if r is not None else []

    def rooms(self) -> list[RoomInfo]:
        return [
            RoomInfo(room=name, members=len(r.members), last_id=r.last_id)
            for name, r in sorted(self._rooms.items())
            if r.members or r.last_id is not None
        ]

    def _forget_if_empty(self, room: str, r: _Room) -> None:
        # Rooms nobody is in and that never kept a message are dropped, so that a scan
        # of random room names cannot grow memory. Rooms with history stay (they are
        # bounded by WSAPP_HISTORY each).
        if not r.members and not r.subscribers and r.last_id is None:
            self._rooms.pop(room, None)
