"""The listener: this process's one pub/sub connection, its subscriptions and resync.

ONE pub/sub connection per process, read by one listener greenlet, subscribed to ``P c:R``
for exactly the rooms that have local subscribers (UNSUBSCRIBE when the last one goes).
:meth:`Listener.subscribe` returns once Redis confirmed the subscription, so "every event
published after subscribe returned" holds.

After a connection error the listener reconnects with exponential backoff and jitter,
subscribes again, buffers the live events of those rooms, fetches from the streams every
message published while it was away (after the last id it delivered in each room),
flushes the buffer deduplicated by id, calls ``on_resynced`` (the broker restores this
process's presence there), and only then marks the link up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..base import (
    BrokerUnavailable,
    Callback,
    Message,
    Subscription,
    fan_out,
    parse_stream_id,
)
from .keys import Keys, decode_event, stream_messages, text
from .link import NET_ERRORS, Link

log = logging.getLogger("wsapp.chat.broker")


class Listener:
    """Subscriptions of this process and the greenlet that delivers their events."""

    def __init__(
        self,
        link: Link,
        keys: Keys,
        scripts: Any,
        *,
        on_resynced: Callable[[], None] = lambda: None,
        subscribe_timeout: float = 10.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self.link = link
        self.keys = keys
        self.scripts = scripts
        self.on_resynced = on_resynced
        self.subscribe_timeout = subscribe_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.reconnects = 0
        # State shared by request greenlets and the listener greenlet; no I/O happens
        # between a read and the write that depends on it.
        self.subs: dict[str, list[Subscription]] = {}
        self._pending: dict[str, deque[gevent.event.AsyncResult]] = {}
        self.last_key: dict[str, tuple[int, int]] = {}  # newest id delivered per room
        self._resync: set[str] | None = None  # rooms whose live events wait for the catch-up
        self._resync_wait: set[str] = set()  # rooms whose re-SUBSCRIBE is not confirmed yet
        self._resync_buffer: list[tuple[str, dict[str, Any]]] = []
        self._ps: Any = None  # the pub/sub connection while connected
        self._ps_lock = gevent.lock.Semaphore()
        self.ping_sent: float | None = None  # monotonic time of an unanswered PING
        link.on_down = self.drop_connection

    # ---- subscriptions (request greenlets)

    def subscribe(self, room: str, callback: Callback) -> Subscription:
        sub = Subscription(room, callback)
        subs = self.subs.get(room)
        if subs:
            subs.append(sub)
            return sub
        self.link.check_up()
        self.subs[room] = [sub]
        waiter = gevent.event.AsyncResult()
        self._pending.setdefault(room, deque()).append(waiter)
        try:
            self.send("SUBSCRIBE", self.keys.channel(room))
            waiter.get(timeout=self.subscribe_timeout)
        except BaseException as exc:
            self.remove(sub)  # a late confirmation pops this (stale) waiter, in order
            if isinstance(exc, (BrokerUnavailable, gevent.Timeout, *NET_ERRORS)):
                raise BrokerUnavailable(f"cannot subscribe room {room}: {exc}") from exc
            raise
        # Tell the listener the newest id at this point of the channel's event order, so it
        # can resume from there after a reconnect even if no message arrives before.
        try:
            self.scripts.mark(keys=[self.keys.meta(room)], args=[self.keys.channel(room)])
        except RedisError as exc:
            log.debug("redis broker: mark of %s failed: %s", room, exc)
        return sub

    def remove(self, sub: Subscription) -> None:
        """Stop deliveries to `sub`; UNSUBSCRIBE its room when it was the last one."""
        sub.active = False
        subs = self.subs.get(sub.room)
        if subs is None:
            return
        if sub in subs:
            subs.remove(sub)
        if subs:
            return
        del self.subs[sub.room]
        self.last_key.pop(sub.room, None)
        try:
            self.send("UNSUBSCRIBE", self.keys.channel(sub.room))
        except (BrokerUnavailable, *NET_ERRORS):
            pass  # not connected: the reconnect subscribes only rooms still wanted

    def await_dispatch(self, room: str, key: tuple[int, int], timeout: float = 2.0) -> None:
        """Wait until the listener has delivered `room`'s messages up to `key` locally.

        Delivery is asynchronous (pub/sub), so a message can be in history before our
        subscribers got it. The hub replays history, then goes live, skipping buffered
        ids it replayed; without this wait a message still in flight on the pub/sub
        connection would arrive after that and be sent twice. Same guarantee as the memory
        broker: once history() returned X, local subscribers have had every id <= X."""
        if room not in self.subs:
            return
        last = self.last_key.get(room)
        if last is not None and last >= key:
            return
        deadline = time.monotonic() + timeout
        while self.link.up and room in self.subs and time.monotonic() < deadline:
            gevent.sleep(0.001)
            last = self.last_key.get(room)
            if last is not None and last >= key:
                return
        log.debug("redis broker: delivery of %s up to %s not seen in time", room, key)

    # ---- the pub/sub connection

    def send(self, *args: str) -> None:
        """Send one command on the pub/sub connection (SUBSCRIBE, UNSUBSCRIBE, PING)."""
        with self._ps_lock:
            ps = self._ps
            if ps is None:
                raise BrokerUnavailable(f"redis unavailable: {self.link.error}")
            try:
                ps.send_command(*args, check_health=False)
            except NET_ERRORS as exc:
                self.link.mark_down(exc)
                raise BrokerUnavailable(f"redis unavailable: {exc}") from exc

    def ping(self) -> None:
        """PING the pub/sub connection unless a PING is still unanswered."""
        if self.ping_sent is None:
            self.ping_sent = time.monotonic()
            self.send("PING")

    def ping_overdue(self, limit: float) -> bool:
        """True when a PING has waited more than `limit` seconds for its PONG."""
        sent = self.ping_sent
        return sent is not None and time.monotonic() - sent > limit

    def drop_connection(self) -> None:
        ps, self._ps = self._ps, None
        if ps is not None:
            with contextlib.suppress(Exception):
                ps.disconnect()

    def fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for waiters in pending.values():
            for w in waiters:
                if not w.ready():
                    w.set_exception(BrokerUnavailable(reason))

    def close(self) -> None:
        self.drop_connection()
        self.fail_pending("broker closed")

    # ---- the listener greenlet

    def run_forever(self) -> None:
        delay = self.backoff_min
        while not self.link.closed:
            try:
                self._connect_and_listen()
                delay = self.backoff_min
            except gevent.GreenletExit:
                raise
            except Exception as exc:
                self.link.mark_down(exc)
                self.fail_pending(f"redis unavailable: {exc}")
                self._resync = None
                self._resync_wait = set()
                self._resync_buffer = []
                sleep = delay * (0.5 + random.random())
                log.debug("redis broker: reconnect in %.2fs after %s", sleep, exc)
                gevent.sleep(sleep)
                delay = min(self.backoff_max, delay * 2)

    def _connect_and_listen(self) -> None:
        ps = self.link.pubsub_connection()
        ps.connect()
        self.link.sync_clock()  # the command path works too; publish deadlines need it
        self.ping_sent = None
        rooms = list(self.subs)
        self._resync = set(rooms)
        self._resync_wait = set(rooms)
        self._resync_buffer = []
        with self._ps_lock:
            self._ps = ps
            if rooms:
                channels = (self.keys.channel(r) for r in rooms)
                ps.send_command("SUBSCRIBE", *channels, check_health=False)
        if not rooms:
            self._finish_resync()
        while not self.link.closed:
            if self._ps is not ps:
                raise RedisConnectionError(self.link.error)
            # no read timeout: the connection idles between events; the heartbeat's PINGs and
            # the link's probe notice a dead or stalled Redis and drop it (mark_down)
            self._handle_reply(ps.read_response(timeout=None))

    def _finish_resync(self) -> None:
        """After (re)subscribing: deliver what was published while we were away, then go up."""
        rooms = self._resync or set()
        for room in rooms:
            last = self.last_key.get(room)
            if last is None or room not in self.subs:
                continue
            entries = self.link.client.xrange(self.keys.stream(room), f"({last[0]}-{last[1]}", "+")
            for msg in stream_messages(room, entries):
                self._dispatch(room, {"k": "m", "id": msg.id, "n": msg.name, "t": msg.text})
        self._resync = None
        buffered, self._resync_buffer = self._resync_buffer, []
        for room, data in buffered:
            self._dispatch(room, data)
        self.on_resynced()
        url = self.link.safe_url()
        if self.reconnects:
            log.warning(
                "redis broker: reconnected to %s (%d room(s) resubscribed)", url, len(rooms)
            )
        else:
            log.info("redis broker: connected to %s", url)
        self.reconnects += 1
        self.link.mark_up()

    def _handle_reply(self, reply: Any) -> None:
        if isinstance(reply, (bytes, str)):  # "PONG" with no subscriptions
            self.ping_sent = None
            return
        if not isinstance(reply, list) or not reply:
            return
        kind = text(reply[0])
        if kind == "message":
            room = self.keys.room_of_channel(text(reply[1]))
            data = json.loads(reply[2])
            if self._resync is not None and room in self._resync:
                self._resync_buffer.append((room, data))
            else:
                self._dispatch(room, data)
        elif kind == "subscribe":
            room = self.keys.room_of_channel(text(reply[1]))
            if room in self._resync_wait:
                self._resync_wait.discard(room)
                if not self._resync_wait:
                    self._finish_resync()
                return
            waiters = self._pending.get(room)
            if waiters:
                w = waiters.popleft()
                if not waiters:
                    del self._pending[room]
                w.set(True)
        elif kind == "pong":
            self.ping_sent = None

    def _dispatch(self, room: str, data: dict[str, Any]) -> None:
        if data.get("k") == "k":  # where the room stands right after our SUBSCRIBE
            key = parse_stream_id(data["id"])
            if room in self.subs:
                last = self.last_key.get(room)
                self.last_key[room] = key if last is None else max(last, key)
            return
        event = decode_event(room, data)
        if event is None:
            return
        if isinstance(event, Message):
            key = parse_stream_id(event.id)
            last = self.last_key.get(room)
            if last is not None and key <= last:
                return  # already delivered (resync overlap)
            if room in self.subs:
                self.last_key[room] = key
        subs = self.subs.get(room)
        if subs:
            fan_out(subs, event)
