"""The broker's link to Redis: connections, the up/down state, and guarded calls.

One command connection pool (calls from request greenlets, at most ``max_connections`` at
once), a factory for the listener's pub/sub connection, and a probe connection of its own.
The link is *up* once the listener has subscribed and caught up, and *down* after any
connection error: while down, every request fails at once with :class:`BrokerUnavailable`
instead of waiting on the network, and ``/readyz`` answers 503. Whoever notices an error
marks the link down; only the listener marks it up again (after its resync).

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
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.socket
import redis
import redis.connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..base import BrokerUnavailable

log = logging.getLogger("wsapp.chat.broker")

#: errors that mean the connection is gone (or never came)
NET_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def refuses_writes(exc: BaseException) -> bool:
    """True for the error replies of a Redis that is up but takes no writes right now."""
    if isinstance(exc, (OutOfMemoryError, ReadOnlyError)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(("MISCONF", "NOREPLICAS"))


class GeventConnection(redis.connection.Connection):
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


class Link:
    """Connections to one Redis and whether it can be used right now."""

    def __init__(
        self,
        url: str,
        *,
        command_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_connections: int = 64,
        slot_timeout: float = 30.0,
    ) -> None:
        self.url = url
        pool_kwargs: dict[str, Any] = {
            "socket_timeout": command_timeout,
            "socket_connect_timeout": connect_timeout,
            "protocol": 2,  # RESP2: pub/sub messages are plain replies, not RESP3 push frames
        }
        if url.startswith("redis://"):
            pool_kwargs["connection_class"] = GeventConnection
        self.pool = redis.ConnectionPool.from_url(url, **pool_kwargs)
        self.client = redis.Redis(connection_pool=self.pool)
        # At most `max_connections` request greenlets talk to Redis at once; the others wait
        # their turn (a join storm), up to `slot_timeout`. Waiting too long fails that one
        # call, it does not mean Redis is down.
        self._slots = gevent.lock.BoundedSemaphore(max_connections)
        self.slot_timeout = slot_timeout
        ps_kwargs = dict(self.pool.connection_kwargs)
        ps_kwargs["socket_timeout"] = None  # the listener blocks; liveness comes from PINGs
        self._ps_kwargs = ps_kwargs
        self._probe_pool = redis.ConnectionPool.from_url(url, max_connections=1, **pool_kwargs)
        self.probe_client = redis.Redis(connection_pool=self._probe_pool)

        self.up = False
        self.writable = True
        self.write_error = ""
        self.closed = False
        self.error = "not connected yet"
        self.up_event = gevent.event.Event()
        #: called (without arguments) whenever the link goes down: drop the pub/sub connection
        self.on_down: Callable[[], None] = lambda: None

    def pubsub_connection(self) -> Any:
        """A new, unconnected connection for the listener (no read timeout)."""
        return self.pool.connection_class(**self._ps_kwargs)

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
        """Write `value` at `key` (expiring after `ttl_ms`): does Redis take writes?"""
        try:
            self.probe_client.set(key, value, px=ttl_ms)
        except NET_ERRORS as exc:
            self.mark_down(exc)
        except RedisError as exc:
            if refuses_writes(exc):
                self.writes_refused(exc)
            else:
                log.warning("redis broker: probe failed: %s", exc)
        else:
            self.writes_work()

    def probe_forever(self, key: str, size: int, interval: float) -> None:
        """The probe greenlet: :meth:`probe` with `size` bytes every `interval` s while up."""
        ttl_ms = max(1000, int(interval * 4000))
        value = b"p" * size
        while not self.closed:
            gevent.sleep(interval)
            if self.up:
                self.probe(key, value, ttl_ms)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one Redis call for a request: fail fast while down, BrokerUnavailable on errors."""
        self.check_up()
        if not self._slots.acquire(timeout=self.slot_timeout):
            raise BrokerUnavailable(
                f"redis busy: no connection free within {self.slot_timeout:g}s"
            )
        try:
            return fn(*args, **kwargs)
        except RedisTimeoutError as exc:  # slow, maybe overloaded: fail this call only
            raise BrokerUnavailable(f"redis timeout: {exc}") from exc
        except (RedisConnectionError, OSError) as exc:
            self.mark_down(exc)
            raise BrokerUnavailable(f"redis unavailable: {exc}") from exc
        except RedisError as exc:  # e.g. OOM, READONLY replica, LOADING
            if refuses_writes(exc):
                self.writes_refused(exc)
                raise BrokerUnavailable(f"redis refuses writes: {exc}") from exc
            raise BrokerUnavailable(f"redis error: {exc}") from exc
        finally:
            self._slots.release()
