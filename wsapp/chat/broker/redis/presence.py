"""Presence across processes, and the heartbeat that keeps it true.

``join``/``leave`` are Lua scripts on this process's own hash ``P p:R:PROC`` and the room's
``P procs:R`` set, publishing ``join``/``leave`` events. A heartbeat greenlet, every
``presence_ttl / 3``, extends this process's deadline and hash expiry in each room where it
has members, rewrites the hash if Redis lost it, and sweeps processes whose deadline passed
(publishing ``leave`` for their members). ``members()`` only reads processes whose deadline
is in the future, so a SIGKILLed process's members are gone within the TTL. Local state
(``room -> member id -> (seq, name)``) is what gets restored after Redis lost it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent

from ..base import BrokerUnavailable, Member
from .keys import Keys, parse_presence_value, presence_value, text
from .link import NET_ERRORS, Link

log = logging.getLogger("wsapp.chat.broker")


class Presence:
    """This process's members in Redis, and every process's members as Redis has them."""

    def __init__(
        self, link: Link, keys: Keys, scripts: Any, proc: str, ttl: float, room_ttl: float = 0.0
    ) -> None:
        self.link = link
        self.keys = keys
        self.scripts = scripts
        self.proc = proc
        self.ttl = ttl
        self.ttl_ms = int(ttl * 1000)
        self.key_ttl_ms = self.ttl_ms * 2 + 1000
        self.room_ttl_ms = int(room_ttl * 1000)
        # While a process has members in a room, the room's history keys live at least as
        # long as its presence keys (the heartbeat extends both), so they never expire
        # under a member; 0 (rooms never expire) stays 0.
        self.keep_ms = max(self.room_ttl_ms, self.key_ttl_ms) if self.room_ttl_ms else 0
        self.local: dict[str, dict[str, tuple[int, str]]] = {}

    def join(self, room: str, member: Member) -> None:
        k = self.keys
        seq = self.link.call(
            self.scripts.join,
            keys=[
                k.presence(room, self.proc),
                k.procs(room),
                k.rooms,
                k.seq,
                k.stream(room),
                k.meta(room),
                k.known,
            ],
            args=[
                member.id,
                member.name,
                self.proc,
                self.ttl_ms,
                self.key_ttl_ms,
                room,
                k.channel(room),
                self.keep_ms,
                self.link.deadline_ms(),
            ],
        )
        if not seq:
            raise BrokerUnavailable("redis answered too late: the join was not recorded")
        self.local.setdefault(room, {})[member.id] = (int(seq), member.name)

    def leave(self, room: str, member_id: str) -> None:
        local = self.local.get(room)
        if local is not None:
            local.pop(member_id, None)
            if not local:
                del self.local[room]
        k = self.keys
        self.link.call(
            self.scripts.leave,
            keys=[k.procs(room), k.rooms, k.stream(room), k.meta(room), k.known],
            args=[
                room,
                member_id,
                self.proc,
                k.presence_prefix(room),
                k.channel(room),
                self.room_ttl_ms,
            ],
        )

    def members(self, room: str) -> list[Member]:
        flat = self.link.call(
            self.scripts.members,
            keys=[self.keys.procs(room)],
            args=[self.keys.presence_prefix(room)],
        )
        rows = []
        for i in range(0, len(flat), 2):
            seq, name = parse_presence_value(flat[i + 1])
            rows.append((seq, text(flat[i]), name))
        rows.sort()
        return [Member(mid, name) for _, mid, name in rows]

    # ---- heartbeat

    def beat(self) -> None:
        """Refresh our presence in every room we have members in; sweep dead processes."""
        k = self.keys
        for room in list(self.local):
            self.refresh_room(room)
            self.scripts.sweep(
                keys=[k.procs(room), k.rooms, k.stream(room), k.meta(room), k.known],
                args=[k.presence_prefix(room), k.channel(room), room, self.room_ttl_ms],
            )

    def refresh_room(self, room: str, full: bool = False) -> None:
        local = self.local.get(room)
        if not local:
            return
        k = self.keys
        key = k.presence(room, self.proc)
        ok = self.scripts.refresh(
            keys=[key, k.procs(room), k.rooms, k.epoch, k.stream(room), k.meta(room), k.known],
            args=[self.ttl_ms, self.key_ttl_ms, self.proc, room, self.keep_ms],
        )
        if full or not ok:  # after a reconnect, or Redis lost our presence (restart, swept)
            args: list[Any] = [self.key_ttl_ms, k.channel(room)]
            for mid, (seq, name) in list(local.items()):
                args += [mid, presence_value(seq, name)]
            self.scripts.rewrite(keys=[key], args=args)

    def restore(self) -> None:
        """Write every local member back (after a reconnect: Redis may have lost them)."""
        for room in list(self.local):
            self.refresh_room(room, full=True)


def heartbeat_forever(link: Link, presence: Presence, ping: Callable[[], None],
                      ping_overdue: Callable[[float], bool]) -> None:
    """The heartbeat greenlet: pub/sub liveness (PING/PONG) and presence refresh.

    `ping()` PINGs the pub/sub connection; `ping_overdue(limit)` is True when a PING has
    waited longer than `limit` seconds for its PONG, which counts as a lost connection."""
    interval = max(0.1, presence.ttl / 3)
    ping_every = min(5.0, interval)
    next_beat = 0.0
    while not link.closed:
        gevent.sleep(min(ping_every, interval) / 2)
        if not link.up:
            continue
        now = time.monotonic()
        try:
            if ping_overdue(max(10.0, 2 * ping_every)):
                link.mark_down("no PONG on the pub/sub connection")
                continue
            ping()
            if now >= next_beat:
                next_beat = now + interval
                presence.beat()
        except (BrokerUnavailable, *NET_ERRORS) as exc:  # timeouts included: stalled
            link.mark_down(exc)
        except Exception:
            log.exception("redis broker: heartbeat failed")
