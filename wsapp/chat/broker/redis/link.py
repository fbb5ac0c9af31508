"""The broker's link to Redis: connections, the up/down state, and guarded calls.

One command connection pool (calls from request greenlets, at most ``max_connections`` at
once), a factory for the listener's pub/sub connection, and a probe connection of its own.
The link is *up* once the listener has subscribed and caught up, and *down* after any
connection error or timeout: while down, every request fails at once with
:class:`BrokerUnavailable` instead of waiting on the network, and ``/readyz`` answers 503.
Whoever notices an error marks the link down; only the listener marks it up again (after
its resync).

A stalled Redis (SIGSTOP, a long blocking command, a frozen VM) still accepts TCP and
buffers what we send. Every command therefore has ``timeout`` seconds to be answered, and
the probe greenlet sends one every ``probe_interval`` seconds, so a stall marks the link
down within ``timeout + probe_interval``. A command whose reply did not come
(:class:`ReplyLost`) may still run when Redis wakes up: the caller is told the outcome is
unknown (:class:`OutcomeUnknown`), never that nothing happened, and writes carry a deadline
on Redis's clock (:meth:`Link.deadline_ms`, kept in step with ours by the probe) after
which their script refuses to run.

Up is not enough to be ready: a Redis that refuses writes (``maxmemory`` reached with the
``noeviction`` policy: "OOM command not allowed", a read-only replica after a failover,
MISCONF after a failed save) fails every publish and join. The probe greenlet writes an
expiring key as large as the largest message every ``probe_interval`` (Redis counts the
request itself against ``maxmemory``, so a Redis a few KiB under its limit takes small
writes but refuses a full-size message); while that write (or any request's) is
refused, :meth:`Link.healthy` is False, and it is True again after the next write works.

Works with and without gevent's monkey patching: without it, sockets are made as gevent
sockets so that the listener greenlet never blocks the process.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.socket
import redis
import redis.backoff
import redis.connection
import redis.retry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..base import BrokerUnavailable, OutcomeUnknown

log = logging.getLogger("wsapp.chat.broker")

#: errors that mean the connection is gone (or never came)
NET_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def refuses_writes(exc: BaseException) -> bool:
    """True for the error replies of a Redis that is up but takes no writes right now."""
    if isinstance(exc, (OutOfMemoryError, ReadOnlyError)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(("MISCONF", "NOREPLICAS"))


class ReplyLost(RedisConnectionError):
    """A command was sent, but reading its reply failed or timed out: Redis may run it."""


class _TagReplyLoss:
    """Connection mixin: a failure while reading a reply raises :class:`ReplyLost`.

    Failures before that (connecting, sending) mean Redis has no complete command: it
    cannot run it. Only a lost reply leaves the outcome open."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ReplyLost:
            raise
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise ReplyLost(str(exc)) from exc


class GeventConnection(_TagReplyLoss, redis.connection.Connection):
    """A TCP connection whose socket cooperates with gevent even without monkey patching."""

    def _connect(self):
        if socket.socket is gevent.socket.socket:  # patched: already cooperative
            return super()._connect()
        sock = gevent.socket.create_connection(
            (self.host, self.port), timeout=self.socket_connect_timeout
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.socket_keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.settimeout(self.socket_timeout)
        return sock


class _SSLConnection(_TagReplyLoss, redis.connection.SSLConnection):
    pass


class _UnixConnection(_TagReplyLoss, redis.connection.UnixDomainSocketConnection):
    pass


class PlainConnection(_TagReplyLoss, redis.connection.Connection):
    """A TCP connection with plain sockets (cooperative only under monkey patching): for
    processes that run no gevent loop, such as ``wsapp.publisher.Publisher`` in a thread."""


def connection_class(url: str, *, cooperative: bool = True) -> type:
    """The connection class for `url`, tagging lost replies (:class:`ReplyLost`); TCP
    connections use gevent sockets unless `cooperative` is False."""
    if url.startswith("rediss://"):
        return _SSLConnection
    if url.startswith("unix://"):
        return _UnixConnection
    return GeventConnection if cooperative else PlainConnection


class Link:
    """Connections to one Redis and whether it can be used right now."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.5,
        connect_timeout: float = 2.0,
        max_connections: int = 64,
        slot_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        pool_kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": connect_timeout,
            "protocol": 2,  # RESP2: pub/sub messages are plain replies, not RESP3 push frames
            "connection_class": connection_class(url),
            # never resend a command by itself: a resent publish could be published twice
            "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        }
        self.pool = redis.ConnectionPool.from_url(url, **pool_kwargs)
        self.client = redis.Redis(connection_pool=self.pool)
        # At most `max_connections` request greenlets talk to Redis at once; the others wait
        # their turn (a join storm), up to `slot_timeout`. Waiting too long fails that one
        # call, it does not mean Redis is down.
        self._slots = gevent.lock.BoundedSemaphore(max_connections)
        self.slot_timeout = slot_timeout
        # The pub/sub connection has the same timeout for connecting and sending; the
        # listener reads it without one (Listener: read_response(timeout=None)).
        self._ps_kwargs = dict(self.pool.connection_kwargs)
        self._probe_pool = redis.ConnectionPool.from_url(url, max_connections=1, **pool_kwargs)
        self.probe_client = redis.Redis(connection_pool=self._probe_pool)

        self.clock_offset_ms = 0.0  # Redis's clock minus ours, measured by TIME
        self.up = False
        self.writable = True
        self.write_error = ""
        self.closed = False
        self.error = "not connected yet"
        self.up_event = gevent.event.Event()
        #: called (without arguments) whenever the link goes down: drop the pub/sub connection
        self.on_down: Callable[[], None] = lambda: None

    def pubsub_connection(self) -> Any:
        """A new, unconnected connection for the listener."""
        return self.pool.connection_class(**self._ps_kwargs)

    # ---- Redis's clock

    def _clock_from(self, redis_time: Any, sent: float, answered: float) -> None:
        seconds, micros = redis_time
        self.clock_offset_ms = seconds * 1000 + micros / 1000 - (sent + answered) * 500

    def sync_clock(self) -> None:
        """Measure Redis's clock against ours (TIME); raises the network errors."""
        sent = time.time()
        redis_time = self.client.time()
        self._clock_from(redis_time, sent, time.time())

    def deadline_ms(self) -> int:
        """Redis time after which a write sent now must not run any more.

        We give up waiting after ``timeout``; half of it is left as margin for the error of
        the clock offset (measured every probe: a round trip on loopback or a LAN)."""
        return int(time.time() * 1000 + self.clock_offset_ms + self.timeout * 500)

    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        head, sep, tail = self.url.rpartition("@")
        return f"redis://***@{tail}" if sep else self.url

    def healthy(self) -> bool:
        """Connected, caught up, and taking writes."""
        return self.up and self.writable and not self.closed

    def writes_refused(self, error: BaseException) -> None:
        """Redis answered but refused a write (see :func:`refuses_writes`)."""
        self.write_error = str(error) or type(error).__name__
        if self.writable:
            log.warning(
                "redis broker: Redis refuses writes (%s); not ready until it takes them again",
                self.write_error,
            )
        self.writable = False

    def writes_work(self) -> None:
        if not self.writable:
            log.warning("redis broker: Redis takes writes again")
        self.writable = True
        self.write_error = ""

    def check_up(self) -> None:
        if not self.up:
            raise BrokerUnavailable(f"redis unavailable: {self.error}")

    def mark_up(self) -> None:
        self.error = ""
        self.up = True
        self.up_event.set()

    def mark_down(self, error: BaseException | str) -> None:
        if self.closed:
            return
        self.error = str(error) or type(error).__name__
        if self.up:
            log.warning("redis broker: connection lost (%s); reconnecting", self.error)
        self.up = False
        self.up_event.clear()
        self.on_down()

    def close(self) -> None:
        self.closed = True
        self.up = False
        self.pool.disconnect()
        self._probe_pool.disconnect()

    def probe(self, key: str, value: bytes, ttl_ms: int) -> None:
        """Does Redis answer within ``timeout``, and take writes? Also measures its clock.

        One round trip: TIME and a write of `value` at `key` (expiring after `ttl_ms`)."""
        pipe = self.probe_client.pipeline(transaction=False)
        pipe.time()
        pipe.set(key, value, px=ttl_ms)
        sent = time.time()
        try:
            redis_time, written = pipe.execute(raise_on_error=False)
        except NET_ERRORS as exc:  # a timeout included: a stalled Redis is not ready
            self.mark_down(f"no answer to the probe within {self.timeout:g}s: {exc}")
            return
        except RedisError as exc:
            log.warning("redis broker: probe failed: %s", exc)
            return
        if not isinstance(redis_time, BaseException):
            self._clock_from(redis_time, sent, time.time())
        if not isinstance(written, BaseException):
            self.writes_work()
        elif refuses_writes(written):
            self.writes_refused(written)
        else:
            log.warning("redis broker: probe write failed: %s", written)

    def probe_forever(self, key: str, size: int, interval: float) -> None:
        """The probe greenlet: :meth:`probe` with `size` bytes every `interval` s while up."""
        ttl_ms = max(1000, int(interval * 4000))
        value = b"p" * size
        while not self.closed:
            gevent.sleep(interval)
            if self.up:
                self.probe(key, value, ttl_ms)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one Redis call for a request: fail fast while down, BrokerUnavailable on errors.

        OutcomeUnknown (a BrokerUnavailable) when the command went out and its reply did
        not come back: it may have run, or may still run."""
        self.check_up()
        if not self._slots.acquire(timeout=self.slot_timeout):
            raise BrokerUnavailable(
                f"redis busy: no connection free within {self.slot_timeout:g}s"
            )
        try:
            self.check_up()  # it may have gone down while we waited for a slot
            return fn(*args, **kwargs)
        except ReplyLost as exc:
            self.mark_down(exc)
            raise OutcomeUnknown(f"redis did not answer: {exc}") from exc
        except NET_ERRORS as exc:  # nothing complete reached Redis
            self.mark_down(exc)
            raise BrokerUnavailable(f"redis unavailable: {exc}") from exc
        except RedisError as exc:  # e.g. OOM, READONLY replica, LOADING
            if refuses_writes(exc):
                self.writes_refused(exc)
                raise BrokerUnavailable(f"redis refuses writes: {exc}") from exc
            raise BrokerUnavailable(f"redis error: {exc}") from exc
        finally:
            self._slots.release()
