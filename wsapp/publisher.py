"""Emit events to rooms from a process that runs no server: a Celery task, a cron script.

    from wsapp import Publisher

    publisher = Publisher("redis://127.0.0.1:6379/0")    # or Publisher(): WSAPP_REDIS_URL
    publisher.emit("news", "push", {"data": "test message!"})
    publisher.emit(connection_id, "progress", {"done": 40})  # one client: its personal room

The servers must use the same Redis (WSAPP_REDIS_URL) and key prefix. Every server process
with members in the room gets the event once and delivers it to each of them, exactly as
`wsapp.Rooms.emit` would (same payload, same Lua script as the Redis broker's ``emit``,
same key names from ``wsapp.chat.broker.redis.keys``). Nothing else of the broker runs
here: no listener, no presence, no greenlets. Plain blocking sockets (cooperative under
gevent's monkey patching); one object may be shared by threads (redis-py's pool).

An event is published or not, never later: a call that gets no answer within the timeout
raises OutcomeUnknown (it may have been delivered), and the script refuses to run once the
deadline has passed on Redis's clock, so a stalled Redis does not deliver it behind the
caller's back. BrokerUnavailable means it was not delivered.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
import redis.backoff
import redis.retry
from redis.exceptions import RedisError

from wsapp.chat import events
from wsapp.chat.broker.base import BrokerUnavailable, Member, OutcomeUnknown, RoomEvent
from wsapp.chat.broker.redis.keys import Keys, event_payload, parse_presence_value, text
from wsapp.chat.broker.redis.link import NET_ERRORS, ReplyLost, connection_class
from wsapp.chat.broker.redis.scripts import SOURCES
from wsapp.settings import Settings

__all__ = ["Publisher"]

#: Seconds between two measurements of Redis's clock (the deadline of each emit uses it).
CLOCK_EVERY = 30.0


class Publisher:
    """Named events into rooms through Redis, without a server (see the module docstring).

    `redis_url`, `timeout` and `max_event_bytes` default to WSAPP_REDIS_URL,
    WSAPP_REDIS_TIMEOUT and WSAPP_MAX_EVENT_BYTES (read and validated like a server does);
    `prefix` must match the servers' (their default)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str = "wsapp:",
        timeout: float | None = None,
        max_event_bytes: int | None = None,
    ) -> None:
        if redis_url is None or timeout is None or max_event_bytes is None:
            settings = Settings.from_env()
            redis_url = redis_url if redis_url is not None else settings.redis_url
            timeout = timeout if timeout is not None else settings.redis_timeout
            if max_event_bytes is None:
                max_event_bytes = settings.max_event_bytes
        if not redis_url:
            raise ValueError("Publisher needs a Redis URL: pass one or set WSAPP_REDIS_URL")
        self.url = redis_url
        self.timeout = timeout
        self.max_event_bytes = max_event_bytes
        self.keys = Keys(prefix)
        self._pool = redis.ConnectionPool.from_url(
            redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            protocol=2,
            connection_class=connection_class(redis_url, cooperative=False),
            # never resend by itself: a resent event could be delivered twice
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        )
        self.client = redis.Redis(connection_pool=self._pool)
        self._emit = self.client.register_script(SOURCES["emit"])
        self._members = self.client.register_script(SOURCES["members"])
        self._clock_lock = threading.Lock()
        self._offset_ms: float | None = None  # Redis's clock minus ours
        self._measured = 0.0

    def emit(self, room: str, event: str, data: Any = None, *, skip: str | None = None) -> int:
        """Send event `event` with JSON `data` to every member of `room`, in every server.

        `skip`: a connection id that must not get it. Returns how many server processes
        had members there (0: nobody got it). Raises EventError (a ValueError) for a bad
        room or event name, data that is not JSON or over `max_event_bytes`;
        BrokerUnavailable when it was not sent, OutcomeUnknown when that is not known."""
        if not events.is_valid_room(room):
            raise events.EventError(
                "invalid_room", f"invalid room name {room!r:.80}: use 1 to 64 of A-Z a-z 0-9 _ - ."
            )
        name = events.check_event_name(event)
        body = events.encode_event_data(data, self.max_event_bytes)
        payload = event_payload(RoomEvent(room, name, body, None, skip))
        deadline = self._deadline_ms()
        reply = self._call(self._emit, keys=[], args=[self.keys.channel(room), payload, deadline])
        if int(reply) < 0:  # run after the deadline: it did nothing
            self._offset_ms = None  # measure the clock again next time
            raise BrokerUnavailable("redis answered too late: the event was not published")
        return int(reply)

    def members(self, room: str) -> list[Member]:
        """Who is in `room` now across every server process, in join order."""
        flat = self._call(
            self._members, keys=[self.keys.procs(room)], args=[self.keys.presence_prefix(room)]
        )
        rows = []
        for i in range(0, len(flat), 2):
            seq, name = parse_presence_value(flat[i + 1])
            rows.append((seq, text(flat[i]), name))
        rows.sort()
        return [Member(mid, name) for _, mid, name in rows]

    def close(self) -> None:
        """Close the connections (a later call opens new ones)."""
        self._pool.disconnect()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals

    def _deadline_ms(self) -> int:
        """Redis time after which an emit sent now must not run (see wsapp.chat.broker.redis
        .link.Link.deadline_ms): our clock, Redis's offset, half the timeout as margin."""
        now = time.time()
        with self._clock_lock:
            stale = self._offset_ms is None or now - self._measured > CLOCK_EVERY
        if stale:
            sent = time.time()
            try:
                seconds, micros = self._call(self.client.time)
            except OutcomeUnknown as exc:  # TIME is not the event: that was not sent
                raise BrokerUnavailable(str(exc)) from exc
            answered = time.time()
            with self._clock_lock:
                self._offset_ms = seconds * 1000 + micros / 1000 - (sent + answered) * 500
                self._measured = answered
        offset = self._offset_ms or 0.0
        return int(time.time() * 1000 + offset + self.timeout * 500)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ReplyLost as exc:
            raise OutcomeUnknown(f"redis did not answer: {exc}") from exc
        except NET_ERRORS as exc:  # nothing complete reached Redis
            raise BrokerUnavailable(f"redis unavailable: {exc}") from exc
        except RedisError as exc:  # e.g. OOM, READONLY replica, LOADING
            raise BrokerUnavailable(f"redis error: {exc}") from exc
