"""The Redis broker: rooms shared by every process and host that uses one Redis.

Set ``WSAPP_REDIS_URL=redis://host:6379/0`` to use it. One Redis (not Redis Cluster).
Key layout in :mod:`.keys`, the Lua scripts in the ``.lua`` files of this package.

Ids are Redis stream ids (``<ms>-<seq>``) assigned by XADD inside a Lua script that also
PUBLISHes the message: id assignment, history append and fan-out are one atomic step, so
every subscriber of a room sees its messages in id order.

Process model: one command connection pool and one pub/sub connection per process
(:mod:`.link`), a listener greenlet that delivers the events of rooms with local
subscribers and resyncs after reconnects (:mod:`.listener`), and a heartbeat greenlet for
presence (:mod:`.presence`).

Outages: any connection error or timeout (``timeout``, WSAPP_REDIS_TIMEOUT) marks the
broker down (``healthy()`` False, ``/readyz`` 503; publish, history and presence raise
BrokerUnavailable at once, so a sender gets an ``error`` event); a probe notices a stalled
Redis within ``timeout + probe_interval``. A publish whose reply was lost raises
OutcomeUnknown, and its script refuses to run after the point where we gave up, so it is
not published later either; with a sender and a ref, a retry cannot publish it twice.
The listener reconnects, catches up, restores this process's presence, then reports
healthy. See docs/redis.md.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

import gevent

from ..base import (
    Broker,
    BrokerUnavailable,
    Callback,
    Member,
    Message,
    RoomEvent,
    RoomInfo,
    Subscription,
    parse_stream_id,
)
from .keys import Keys, event_payload, stream_messages
from .keys import text as as_text
from .link import Link
from .listener import Listener
from .presence import Presence, heartbeat_forever
from .scripts import Scripts

if TYPE_CHECKING:
    from wsapp.settings import Settings

log = logging.getLogger("wsapp.chat.broker")


class RedisBroker(Broker):
    """The :class:`Broker` of processes that share rooms through one Redis."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        history: int = 100,
        presence_ttl: float = 30.0,
        room_ttl: float = 0.0,
        ref_ttl: float = 300.0,
        prefix: str = "wsapp:",
        timeout: float = 1.5,
        connect_timeout: float = 2.0,
        subscribe_timeout: float = 10.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
        max_connections: int = 64,
        slot_timeout: float = 30.0,
        start_wait: float = 3.0,
        probe_interval: float = 0.5,
        probe_bytes: int = 17 * 1024,
    ) -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        self.url = url
        self.history_size = history
        self.presence_ttl = presence_ttl
        self.room_ttl = room_ttl
        self.room_ttl_ms = int(room_ttl * 1000)
        self.ref_ttl_ms = int(ref_ttl * 1000)
        self.prefix = prefix
        self.start_wait = start_wait
        self.proc = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.keys = Keys(prefix)
        self.link = Link(
            url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            slot_timeout=slot_timeout,
        )
        self.scripts = Scripts(self.link.client)
        self.presence = Presence(
            self.link, self.keys, self.scripts, self.proc, presence_ttl, room_ttl
        )
        self.listener = Listener(
            self.link,
            self.keys,
            self.scripts,
            on_resynced=self.presence.restore,
            subscribe_timeout=subscribe_timeout,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
        )
        self.probe_interval = probe_interval
        self.probe_bytes = probe_bytes
        self._listener: gevent.Greenlet | None = None
        self._heartbeat: gevent.Greenlet | None = None
        self._prober: gevent.Greenlet | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisBroker:
        return cls(
            settings.redis_url,
            history=settings.history,
            presence_ttl=settings.presence_ttl,
            room_ttl=settings.room_ttl,
            ref_ttl=settings.ref_ttl,
            timeout=settings.redis_timeout,
            probe_bytes=settings.max_chat_bytes + 1024,  # a largest message and its name
        )

    @property
    def reconnects(self) -> int:
        """How many times the listener connected (the first connection included)."""
        return self.listener.reconnects

    # ---- life cycle

    def start(self) -> None:
        if self._listener is not None:
            return
        self._listener = gevent.spawn(self.listener.run_forever)
        self._heartbeat = gevent.spawn(
            heartbeat_forever,
            self.link,
            self.presence,
            self.listener.ping,
            self.listener.ping_overdue,
        )
        self._prober = gevent.spawn(
            self.link.probe_forever,
            self.keys.alive(self.proc),
            self.probe_bytes,
            self.probe_interval,
        )
        if self.start_wait > 0 and not self.link.up_event.wait(self.start_wait):
            log.warning(
                "redis broker: %s not reachable yet (%s); retrying in the background",
                self.link.safe_url(),
                self.link.error,
            )

    def close(self) -> None:
        self.link.closed = True
        self.link.up = False
        for g in (self._listener, self._heartbeat, self._prober):
            if g is not None:
                g.kill(block=False)
        self.listener.close()
        self.link.close()

    def healthy(self) -> bool:
        return self.link.healthy()

    def _mark_down(self, error: BaseException | str) -> None:
        """Treat the connection as lost (as a connection error would)."""
        self.link.mark_down(error)

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
        k = self.keys
        keys = [k.stream(room), k.meta(room), k.epoch, k.known, k.procs(room)]
        if sender is not None and ref is not None and self.ref_ttl_ms > 0:
            keys.append(k.ref(room, sender, ref))
        reply = self.link.call(
            self.scripts.publish,
            keys=keys,
            args=[
                self.history_size,
                name,
                text,
                k.channel(room),
                room,
                self.room_ttl_ms,
                self.presence.keep_ms,
                self.link.deadline_ms(),
                self.ref_ttl_ms,
            ],
        )
        status = as_text(reply[0])
        if status == "late":  # Redis ran it after we would have given up: it did nothing
            raise BrokerUnavailable("redis answered too late: the message was not published")
        mid = as_text(reply[1])
        if status == "dup" and len(reply) > 2:  # the stored message, as first published
            fields = dict(zip(reply[2][::2], reply[2][1::2], strict=True))
            name, text = as_text(fields.get(b"n", name)), as_text(fields.get(b"t", text))
        return Message(room=room, id=mid, name=name, text=text, ts=parse_stream_id(mid)[0])

    def history(
        self, room: str, since: str | None = None, limit: int | None = None
    ) -> list[Message]:
        if since is not None:
            self.id_key(since)  # validate before anything else
        if limit == 0:
            return []
        stream = self.keys.stream(room)
        client, call = self.link.client, self.link.call
        if since is None:
            if limit is None:
                entries = call(client.xrange, stream, "-", "+")
            else:
                entries = list(reversed(call(client.xrevrange, stream, "+", "-", count=limit)))
        else:
            entries = call(client.xrange, stream, "(" + since, "+", count=limit)
        messages = stream_messages(room, entries)
        if messages:
            self.listener.await_dispatch(room, parse_stream_id(messages[-1].id))
        return messages

    def covers(self, room: str, since: str) -> bool:
        since_key = self.id_key(since)
        epoch, floor = self.link.call(
            self.scripts.covers,
            keys=[self.keys.epoch, self.keys.meta(room)],
            args=[self.room_ttl_ms],
        )
        return since_key >= max(parse_stream_id(as_text(epoch)), parse_stream_id(as_text(floor)))

    # ---- fan-out

    def subscribe(self, room: str, callback: Callback) -> Subscription:
        return self.listener.subscribe(room, callback)

    def unsubscribe(self, subscription: Subscription) -> None:
        self.listener.remove(subscription)

    def emit(self, event: RoomEvent) -> None:
        reply = self.link.call(
            self.scripts.emit,
            keys=[],
            args=[self.keys.channel(event.room), event_payload(event), self.link.deadline_ms()],
        )
        if int(reply) < 0:  # Redis ran it after we would have given up: it did nothing
            raise BrokerUnavailable("redis answered too late: the event was not published")

    # ---- presence

    def join(self, room: str, member: Member) -> None:
        self.presence.join(room, member)

    def leave(self, room: str, member_id: str) -> None:
        self.presence.leave(room, member_id)

    def members(self, room: str) -> list[Member]:
        return self.presence.members(room)

    def rooms(self) -> list[RoomInfo]:
        flat = self.link.call(
            self.scripts.rooms, keys=[self.keys.rooms, self.keys.known], args=[self.prefix]
        )
        out = [
            RoomInfo(
                room=as_text(flat[i]),
                members=int(flat[i + 1]),
                last_id=as_text(flat[i + 2]) or None,
            )
            for i in range(0, len(flat), 3)
        ]
        out.sort(key=lambda r: r.room)
        return out

