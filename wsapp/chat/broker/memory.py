"""The embedded broker: one process, state in dicts, delivery by direct calls.

Ids use the Redis stream format ``"<unix ms>-<seq>"`` (per room: the millisecond clock,
never going back, and a sequence within one millisecond), so they stay increasing across
restarts of the process and compare the same way as the Redis broker's ids.

Every method runs without yielding to other greenlets, so id assignment, the history
append and delivery to subscribers are atomic: subscribers see a room's events in id order.

Rooms are freed (docs/reliability.md, "Rooms and history"):

* **History budget** (``history_bytes``, WSAPP_HISTORY_BYTES): the bytes charged for every
  stored message of every room (:func:`message_bytes`) plus :data:`ROOM_OVERHEAD` per room
  that ever had a message stay within it. Over budget, whole *idle* rooms (no members, no
  subscribers) are forgotten, least recently used first; if only rooms in use are left,
  the oldest messages of the least recently published room are trimmed.
* **Idle-room TTL** (``room_ttl``, WSAPP_ROOM_TTL): a room idle for that long since its
  last publish, join or leave is forgotten by a sweep greenlet (started by :meth:`start`),
  at most :data:`SWEEP_BATCH` rooms per tick. 0 keeps idle rooms (within the budget).

A forgotten room is gone from ``rooms()`` and its history is empty. Its ids are not
reused: a room created again continues after the newest id of every room forgotten so
far, and ``covers()`` says False for any ``since`` older than that, so a client resuming
into a freed room learns (``hello.recovered: false``) that messages may be missing.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gevent

from .base import (
    Broker,
    Callback,
    Member,
    Message,
    PresenceEvent,
    RoomEvent,
    RoomInfo,
    Subscription,
    fan_out,
)

if TYPE_CHECKING:
    from wsapp.settings import Settings

log = logging.getLogger("wsapp.chat.broker")

#: Bytes charged per stored message besides its text and name: the Message object, its id
#: and timestamp, the history slot, and the two string headers (docs/reliability.md).
MESSAGE_OVERHEAD = 512
#: Extra bytes charged for a message published with a (sender, ref) pair: the dedup entry.
REF_OVERHEAD = 256
#: Bytes charged per room that had a message (its dicts, deque and bookkeeping).
ROOM_OVERHEAD = 2048
#: Rooms the TTL sweep forgets at most per tick (bounded work between yields).
SWEEP_BATCH = 1000

def text_bytes(s: str) -> int:
    """UTF-8 length of `s`, or the bytes Python holds for its characters when larger.

    CPython stores a string 1, 2 or 4 bytes per character depending on its widest one,
    so a text mixing ASCII with one emoji takes 4 bytes per character in memory."""
    if s.isascii():
        return len(s)
    widest = max(s)
    per_char = 1 if widest <= "\xff" else 2 if widest <= "\uffff" else 4
    return max(len(s.encode("utf-8", "surrogatepass")), len(s) * per_char)


def message_bytes(name: str, text: str, sender: str | None = None, ref: str | None = None) -> int:
    """What one stored message counts against the history budget."""
    size = text_bytes(text) + text_bytes(name) + MESSAGE_OVERHEAD
    if sender is not None and ref is not None:
        size += text_bytes(sender) + text_bytes(ref) + REF_OVERHEAD
    return size


_Ref = tuple[str, str]  # (sender, ref)


@dataclass(eq=False)
class _Room:
    name: str
    # (message, bytes charged, its dedup key or None), oldest first
    history: deque[tuple[Message, int, _Ref | None]] = field(default_factory=deque)
    last: tuple[int, int] | None = None  # (ms, seq) of the newest id ever assigned
    last_id: str | None = None
    floor: tuple[int, int] = (0, 0)  # history holds every message after this key
    members: dict[str, Member] = field(default_factory=dict)  # insertion = join order
    subscribers: list[Subscription] = field(default_factory=list)
    refs: dict[_Ref, Message] = field(default_factory=dict)  # messages still in history
    charged: int = 0  # bytes counted against the budget (history + ROOM_OVERHEAD)
    used: float = 0.0  # monotonic time of the last publish, join, leave or subscription

    @property
    def idle(self) -> bool:
        return not self.members and not self.subscribers


class MemoryBroker(Broker):
    """The in-process :class:`Broker` (no WSAPP_REDIS_URL): one process, rooms in memory."""

    kind = "memory"

    def __init__(
        self,
        history: int = 100,
        clock: Callable[[], float] = time.time,
        *,
        history_bytes: int = 64 * 1024 * 1024,
        room_ttl: float = 0.0,
        ref_ttl: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        if history_bytes < 1 or room_ttl < 0 or ref_ttl < 0:
            raise ValueError("history_bytes must be >= 1, room_ttl and ref_ttl >= 0")
        self._max_history = history
        self._clock = clock
        self._monotonic = monotonic
        self.history_bytes = history_bytes
        self.room_ttl = room_ttl
        self._ref_ttl_ms = int(ref_ttl * 1000)
        # Every room, least recently used first; rooms with history, least recently
        # published first; idle rooms, least recently used first. All kept in that order
        # by moving a room to the end when it is used, so each pick is O(1).
        self._rooms: OrderedDict[str, _Room] = OrderedDict()
        self._published: OrderedDict[str, _Room] = OrderedDict()
        self._idle: OrderedDict[str, _Room] = OrderedDict()
        self.charged = 0  # bytes counted against history_bytes, all rooms
        self.rooms_forgotten = 0
        # Anything published before this process started is unknown to us; so is anything
        # in a room we forgot. Both floors only grow.
        self._start_key = (self._now_ms(), 0)
        self._forgotten: tuple[int, int] = (0, 0)  # newest id of any forgotten room
        self._sweeper: gevent.Greenlet | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryBroker:
        return cls(
            history=settings.history,
            history_bytes=settings.history_bytes,
            room_ttl=settings.room_ttl,
            ref_ttl=settings.ref_ttl,
        )

    # ---- life cycle

    def start(self) -> None:
        if self.room_ttl > 0 and self._sweeper is None:
            self._sweeper = gevent.spawn(self._sweep_forever)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.kill(block=False)
            self._sweeper = None

    # ---- rooms

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _floor(self) -> tuple[int, int]:
        return max(self._start_key, self._forgotten)

    def _room(self, room: str) -> _Room:
        r = self._rooms.get(room)
        if r is None:
            forgotten = self._forgotten
            r = _Room(room, last=forgotten if forgotten != (0, 0) else None, floor=self._floor())
            self._rooms[room] = r
        return r

    def _touch(self, r: _Room) -> None:
        """`r` was used now: move it to the recent end of every order it is in."""
        r.used = self._monotonic()
        self._rooms.move_to_end(r.name)
        if r.idle:
            self._idle[r.name] = r
            self._idle.move_to_end(r.name)
        else:
            self._idle.pop(r.name, None)

    def _forget(self, r: _Room) -> None:
        """Drop a room and everything it holds."""
        self._rooms.pop(r.name, None)
        self._published.pop(r.name, None)
        self._idle.pop(r.name, None)
        self.charged -= r.charged
        r.charged = 0
        if r.last is not None and r.last > self._forgotten:
            self._forgotten = r.last
        self.rooms_forgotten += 1

    def _forget_if_empty(self, r: _Room) -> None:
        # Idle rooms that never kept a message are dropped at once, so that a scan of
        # random room names cannot grow memory; rooms with history wait for the budget or
        # the TTL.
        if r.idle and r.last_id is None:
            self._rooms.pop(r.name, None)
            self._idle.pop(r.name, None)

    def _drop_oldest(self, r: _Room) -> None:
        msg, size, ref = r.history.popleft()
        r.floor = self.id_key(msg.id)
        r.charged -= size
        self.charged -= size
        if ref is not None and r.refs.get(ref) is msg:
            del r.refs[ref]
        if not r.history:
            self._published.pop(r.name, None)

    def _enforce_budget(self) -> None:
        """Forget idle rooms, then trim rooms in use, until the budget holds."""
        while self.charged > self.history_bytes and self._idle:
            self._forget(next(iter(self._idle.values())))
        while self.charged > self.history_bytes and self._published:
            self._drop_oldest(next(iter(self._published.values())))

    def sweep(self, limit: int = SWEEP_BATCH) -> int:
        """Forget up to `limit` rooms idle for room_ttl or longer; how many were forgotten."""
        if self.room_ttl <= 0:
            return 0
        horizon = self._monotonic() - self.room_ttl
        done = 0
        while done < limit and self._idle:
            r = next(iter(self._idle.values()))
            if r.used > horizon:
                break  # the others were used more recently still
            self._forget(r)
            done += 1
        return done

    def _sweep_forever(self) -> None:
        tick = min(1.0, self.room_ttl / 4)
        while True:
            gevent.sleep(tick)
            try:
                self.sweep()
            except Exception:  # pragma: no cover - a bug must not stop the sweeps
                log.exception("memory broker: room sweep failed")

    # ---- messages

    def publish(
        self,
        room: str,
        name: str,
        text: str,
        *,
        sender: str | None = None,
        ref: str | None = None,
    ) -> Message:
        r = self._room(room)
        ms = self._now_ms()
        key_ref = (sender, ref) if sender is not None and ref is not None else None
        if key_ref is not None and self._ref_ttl_ms > 0:
            seen = r.refs.get(key_ref)
            if seen is not None and ms - seen.ts <= self._ref_ttl_ms:
                self._touch(r)
                return seen  # a retry of a message we have: same id, no second delivery
        key = (ms, 0) if r.last is None or ms > r.last[0] else (r.last[0], r.last[1] + 1)
        r.last = key
        msg = Message(room=room, id=f"{key[0]}-{key[1]}", name=name, text=text, ts=key[0])
        if r.last_id is None:
            r.charged += ROOM_OVERHEAD
            self.charged += ROOM_OVERHEAD
        r.last_id = msg.id
        if self._max_history == 0:
            r.floor = key
        else:
            if len(r.history) == self._max_history:
                self._drop_oldest(r)
            if self._ref_ttl_ms == 0:
                key_ref = None
            size = message_bytes(name, text, *(key_ref or (None, None)))
            r.history.append((msg, size, key_ref))
            r.charged += size
            self.charged += size
            if key_ref is not None:
                r.refs[key_ref] = msg
            self._published[room] = r
            self._published.move_to_end(room)
        self._touch(r)
        fan_out(r.subscribers, msg)
        self._enforce_budget()
        return msg

    def history(
        self, room: str, since: str | None = None, limit: int | None = None
    ) -> list[Message]:
        since_key = None if since is None else self.id_key(since)  # validate first
        r = self._rooms.get(room)
        if r is None or limit == 0:
            return []
        if since_key is None:
            items = [entry[0] for entry in r.history]
            return items if limit is None else items[-limit:]
        out: list[Message] = []
        # Newest first until we reach `since`; history is small (WSAPP_HISTORY).
        for msg, _, _ in reversed(r.history):
            if self.id_key(msg.id) <= since_key:
                break
            out.append(msg)
        out.reverse()
        return out if limit is None else out[:limit]

    def covers(self, room: str, since: str) -> bool:
        since_key = self.id_key(since)
        r = self._rooms.get(room)
        floor = r.floor if r is not None else self._floor()
        return since_key >= floor

    # ---- fan-out

    def subscribe(self, room: str, callback: Callback) -> Subscription:
        sub = Subscription(room, callback)
        r = self._room(room)
        r.subscribers.append(sub)
        self._touch(r)
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.active = False
        r = self._rooms.get(subscription.room)
        if r is not None and subscription in r.subscribers:
            r.subscribers.remove(subscription)
            self._touch(r)
            self._forget_if_empty(r)

    def emit(self, event: RoomEvent) -> None:
        # Nothing is stored, and a room nobody subscribed is not created for it.
        r = self._rooms.get(event.room)
        if r is not None and r.subscribers:
            fan_out(r.subscribers, event)

    # ---- presence

    def join(self, room: str, member: Member) -> None:
        r = self._room(room)
        r.members[member.id] = member
        self._touch(r)
        fan_out(r.subscribers, PresenceEvent(room, "join", member))

    def leave(self, room: str, member_id: str) -> None:
        r = self._rooms.get(room)
        if r is None:
            return
        member = r.members.pop(member_id, None)
        if member is not None:
            self._touch(r)
            fan_out(r.subscribers, PresenceEvent(room, "leave", member))
        self._forget_if_empty(r)

    def members(self, room: str) -> list[Member]:
        r = self._rooms.get(room)
        return list(r.members.values()) if r is not None else []

    def rooms(self) -> list[RoomInfo]:
        return [
            RoomInfo(room=name, members=len(r.members), last_id=r.last_id)
            for name, r in sorted(self._rooms.items())
            if r.members or r.last_id is not None
        ]
