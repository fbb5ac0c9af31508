"""The Redis broker: rooms shared by every process and host that uses one Redis.

Set ``WSAPP_REDIS_URL=redis://host:6379/0`` to use it. One Redis (not Redis Cluster).

Keys (``P`` is the prefix, ``wsapp:`` by default; ``R`` a room name)::

    P s:R            STREAM   the room's history: fields n (name), t (text); XADD MAXLEN history
    P c:R            channel  pub/sub fan-out of the room's events (JSON, see _dispatch)
    P last           HASH     room -> newest id ever assigned (rooms with history, /api/rooms)
    P floor          HASH     room -> newest id trimmed from the stream (resume floor)
    P p:R:PROC       HASH     presence of one process in a room: member id -> "seq<TAB>name";
                              PEXPIRE 2 x WSAPP_PRESENCE_TTL, refreshed by the heartbeat
    P procs:R        ZSET     process -> deadline (Redis ms): a process is present in R until then
    P rooms          ZSET     room -> deadline: rooms with members somewhere
    P seq            STRING   join counter (members are listed in join order across processes)
    P epoch          STRING   "<ms>-0" when this Redis dataset first served wsapp (resume floor)

Ids are Redis stream ids (``<ms>-<seq>``) assigned by XADD inside a Lua script that also
PUBLISHes the message: id assignment, history append and fan-out are one atomic step, so
every subscriber of a room sees its messages in id order.

Process model: one command connection pool (calls from request greenlets), and ONE pub/sub
connection per process, read by a listener greenlet, subscribed to ``P c:R`` for exactly
the rooms that have local subscribers. A heartbeat greenlet refreshes this process's
presence keys every ``presence_ttl / 3`` and sweeps processes whose deadline passed
(publishing ``leave`` for their members), and pings the pub/sub connection.

Outages: any connection error marks the broker down (``healthy()`` False, ``/readyz`` 503;
publish, history and presence raise BrokerUnavailable at once, so a sender gets an
``error`` event). The listener reconnects with exponential backoff and jitter, subscribes
again, fetches from the streams every message published while it was away (after the last
id it delivered in each room), restores this process's presence, then reports healthy.

Works with and without gevent's monkey patching: without it, sockets are wrapped in gevent
sockets so the listener greenlet never blocks the process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock
import gevent.socket
import redis
import redis.connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import (
    Broker,
    BrokerUnavailable,
    Callback,
    Event,
    Member,
    Message,
    PresenceEvent,
    RoomInfo,
    Subscription,
    parse_stream_id,
)

if TYPE_CHECKING:
    from wsapp.settings import Settings

log = logging.getLogger("wsapp.chat.broker")

_NET_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class _GeventConnection(redis.connection.Connection):
    """A TCP connection whose socket cooperates with gevent even without monkey patching."""

    def _connect(self):
        if socket.socket is gevent.socket.socket:  # patched: already cooperative
            return super()._connect()
        sock = gevent.socket.create_connection((self.host, self.port), timeout=self.socket_connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.socket_keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.settimeout(self.socket_timeout)
        return sock


# ---- Lua: every multi-key step is one script, so it is atomic in Redis ------------------

_NOW = """
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
"""

# KEYS: stream, last, epoch, floor   ARGV: maxlen, name, text, channel, room
# floor: room -> the newest id trimmed from history (history holds everything after it)
_PUBLISH = _NOW + """
redis.call('SET', KEYS[3], string.format('%d-0', now), 'NX')
local maxlen = tonumber(ARGV[1])
local n = redis.call('XLEN', KEYS[1])
if maxlen > 0 and n >= maxlen then
  local drop = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - maxlen + 1)
  redis.call('HSET', KEYS[4], ARGV[5], drop[#drop][1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'n', ARGV[2], 't', ARGV[3])
if maxlen == 0 then redis.call('HSET', KEYS[4], ARGV[5], id) end
redis.call('HSET', KEYS[2], ARGV[5], id)
redis.call('PUBLISH', ARGV[4], cjson.encode({k='m', id=id, n=ARGV[2], t=ARGV[3]}))
return id
"""

# KEYS: presence hash, procs, rooms, seq   ARGV: member id, name, proc, ttl ms, key ttl ms, room, channel
_JOIN = _NOW + """
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], ARGV[1], seq .. '\\t' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[6])
redis.call('PUBLISH', ARGV[7], cjson.encode({k='j', id=ARGV[1], n=ARGV[2]}))
return seq
"""

# KEYS: procs, rooms   ARGV: room, member id, own proc, presence key prefix, channel
_LEAVE = """
local procs = redis.call('ZRANGE', KEYS[1], 0, -1)
table.insert(procs, 1, ARGV[3])
for _, p in ipairs(procs) do
  local key = ARGV[4] .. p
  local v = redis.call('HGET', key, ARGV[2])
  if v then
    redis.call('HDEL', key, ARGV[2])
    if redis.call('HLEN', key) == 0 then
      redis.call('DEL', key)
      redis.call('ZREM', KEYS[1], p)
    end
    if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
    local name = string.sub(v, string.find(v, '\\t', 1, true) + 1)
    redis.call('PUBLISH', ARGV[5], cjson.encode({k='l', id=ARGV[2], n=name}))
    return 1
  end
end
return 0
"""

# KEYS: procs   ARGV: presence key prefix  -> flat [member id, "seq\\tname", ...] of live processes
_MEMBERS = _NOW + """
local out = {}
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local h = redis.call('HGETALL', ARGV[1] .. p)
  for i = 1, #h do out[#out + 1] = h[i] end
end
return out
"""

# KEYS: rooms, last   ARGV: prefix -> flat [room, members, last id or '', ...]
_ROOMS = _NOW + """
local names = {}
local seen = {}
for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  seen[r] = true; names[#names + 1] = r
end
for _, r in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not seen[r] then seen[r] = true; names[#names + 1] = r end
end
local out = {}
for _, r in ipairs(names) do
  local n = 0
  for _, p in ipairs(redis.call('ZRANGEBYSCORE', ARGV[1] .. 'procs:' .. r, now, '+inf')) do
    n = n + redis.call('HLEN', ARGV[1] .. 'p:' .. r .. ':' .. p)
  end
  local last = redis.call('HGET', KEYS[2], r) or ''
  if n > 0 or last ~= '' then
    out[#out + 1] = r; out[#out + 1] = n; out[#out + 1] = last
  end
end
return out
"""

# KEYS: epoch, floor   ARGV: room -> {epoch, newest trimmed id}
_COVERS = _NOW + """
redis.call('SET', KEYS[1], string.format('%d-0', now), 'NX')
return {redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], ARGV[1]) or '0-0'}
"""

# KEYS: last   ARGV: room, channel: tell this room's subscribers the newest id right now
_MARK = """
local id = redis.call('HGET', KEYS[1], ARGV[1]) or '0-0'
redis.call('PUBLISH', ARGV[2], cjson.encode({k='k', id=id}))
return id
"""

# KEYS: presence hash, procs, rooms, epoch   ARGV: ttl ms, key ttl ms, proc, room
# -> 1 if our presence hash still existed (else the caller rewrites it)
_REFRESH = _NOW + """
redis.call('SET', KEYS[4], string.format('%d-0', now), 'NX')
local ok = redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), ARGV[4])
return ok
"""

# KEYS: presence hash   ARGV: key ttl ms, channel, member id, "seq\\tname", ...
# Make our presence hash hold exactly these members; publish leave for any other.
_REWRITE = """
local want = {}
for i = 3, #ARGV, 2 do want[ARGV[i]] = ARGV[i + 1] end
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if not want[h[i]] then
    redis.call('HDEL', KEYS[1], h[i])
    local v = h[i + 1]
    local name = string.sub(v, string.find(v, '\\t', 1, true) + 1)
    redis.call('PUBLISH', ARGV[2], cjson.encode({k='l', id=h[i], n=name}))
  end
end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS: procs, rooms   ARGV: presence key prefix, channel, room
# Processes whose deadline passed (SIGKILLed, partitioned): drop them, publish their leaves.
_SWEEP = _NOW + """
local gone = 0
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local key = ARGV[1] .. p
  local h = redis.call('HGETALL', key)
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], p)
  for i = 1, #h, 2 do
    local v = h[i + 1]
    local name = string.sub(v, string.find(v, '\\t', 1, true) + 1)
    redis.call('PUBLISH', ARGV[2], cjson.encode({k='l', id=h[i], n=name}))
    gone = gone + 1
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[3]) end
return gone
"""


def _s(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisBroker(Broker):
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        history: int = 100,
        presence_ttl: float = 30.0,
        prefix: str = "wsapp:",
        command_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        subscribe_timeout: float = 10.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
        max_connections: int = 64,
        slot_timeout: float = 30.0,
        start_wait: float = 3.0,
    ) -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        self.url = url
        self.history_size = history
        self.presence_ttl = presence_ttl
        self.prefix = prefix
        self.subscribe_timeout = subscribe_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.start_wait = start_wait
        self.proc = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl_ms = int(presence_ttl * 1000)
        self.key_ttl_ms = self.ttl_ms * 2 + 1000

        pool_kwargs: dict[str, Any] = {
            "socket_timeout": command_timeout,
            "socket_connect_timeout": connect_timeout,
            "protocol": 2,  # RESP2: pub/sub messages are plain replies, not RESP3 push frames
        }
        if url.startswith("redis://"):
            pool_kwargs["connection_class"] = _GeventConnection
        self._pool = redis.ConnectionPool.from_url(url, **pool_kwargs)
        # At most `max_connections` request greenlets talk to Redis at once; the others wait
        # their turn (a join storm), up to `slot_timeout`. Waiting too long fails that one
        # call, it does not mean Redis is down.
        self._slots = gevent.lock.BoundedSemaphore(max_connections)
        self.slot_timeout = slot_timeout
        self._redis = redis.Redis(connection_pool=self._pool)
        ps_kwargs = dict(self._pool.connection_kwargs)
        ps_kwargs["socket_timeout"] = None  # the listener blocks; liveness comes from PINGs
        self._ps_factory = lambda: self._pool.connection_class(**ps_kwargs)

        self._scripts = {
            name: self._redis.register_script(src)
            for name, src in {
                "publish": _PUBLISH,
                "join": _JOIN,
                "leave": _LEAVE,
                "members": _MEMBERS,
                "rooms": _ROOMS,
                "covers": _COVERS,
                "mark": _MARK,
                "refresh": _REFRESH,
                "rewrite": _REWRITE,
                "sweep": _SWEEP,
            }.items()
        }

        # subscriptions (touched by request greenlets and the listener; no I/O between reads/writes)
        self._subs: dict[str, list[Subscription]] = {}
        self._pending: dict[str, deque[gevent.event.AsyncResult]] = {}
        self._last_key: dict[str, tuple[int, int]] = {}
        self._resync: set[str] | None = None  # rooms whose live events wait for the catch-up
        self._resync_wait: set[str] = set()  # rooms whose re-SUBSCRIBE is not confirmed yet
        self._resync_buffer: list[tuple[str, dict[str, Any]]] = []
        # local presence: room -> member id -> (seq, name); restored after Redis lost it
        self._local: dict[str, dict[str, tuple[int, str]]] = {}

        self._ps: Any = None  # the pub/sub connection while connected
        self._ps_lock = gevent.lock.Semaphore()
        self._ping_sent: float | None = None
        self._up = False
        self._closed = False
        self._error = "not connected yet"
        self._up_event = gevent.event.Event()
        self._listener: gevent.Greenlet | None = None
        self._heartbeat: gevent.Greenlet | None = None
        self.reconnects = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisBroker:
        return cls(settings.redis_url, history=settings.history, presence_ttl=settings.presence_ttl)

    # ---- keys

    def _stream(self, room: str) -> str:
        return f"{self.prefix}s:{room}"

    def _channel(self, room: str) -> str:
        return f"{self.prefix}c:{room}"

    def _presence_prefix(self, room: str) -> str:
        return f"{self.prefix}p:{room}:"

    def _procs(self, room: str) -> str:
        return f"{self.prefix}procs:{room}"

    # ---- life cycle

    def start(self) -> None:
        if self._listener is not None:
            return
        self._listener = gevent.spawn(self._listen_forever)
        self._heartbeat = gevent.spawn(self._heartbeat_forever)
        if self.start_wait > 0 and not self._up_event.wait(self.start_wait):
            log.warning("redis broker: %s not reachable yet (%s); retrying in the background", self._safe_url(), self._error)

    def close(self) -> None:
        self._closed = True
        self._up = False
        for g in (self._listener, self._heartbeat):
            if g is not None:
                g.kill(block=False)
        self._drop_ps()
        self._fail_pending("broker closed")
        self._pool.disconnect()

    def healthy(self) -> bool:
        return self._up and not self._closed

    def _safe_url(self) -> str:
        head, sep, tail = self.url.rpartition("@")
        return f"redis://***@{tail}" if sep else self.url

    def _check_up(self) -> None:
        if not self._up:
            raise BrokerUnavailable(f"redis unavailable: {self._error}")

    def _mark_down(self, error: BaseException | str) -> None:
        if self._closed:
            return
        self._error = str(error) or type(error).__name__
        if self._up:
            log.warning("redis broker: connection lost (%s); reconnecting", self._error)
        self._up = False
        self._up_event.clear()
        self._drop_ps()

    def _call(self, fn, *args, **kwargs):
        """Run one Redis call for a request: fail fast while down, BrokerUnavailable on errors."""
        self._check_up()
        if not self._slots.acquire(timeout=self.slot_timeout):
            raise BrokerUnavailable(f"redis busy: no connection free within {self.slot_timeout:g}s")
        try:
            return fn(*args, **kwargs)
        except RedisTimeoutError as exc:  # slow, maybe overloaded: fail this call only
            raise BrokerUnavailable(f"redis timeout: {exc}") from exc
        except (RedisConnectionError, OSError) as exc:
            self._mark_down(exc)
            raise BrokerUnavailable(f"redis unavailable: {exc}") from exc
        except RedisError as exc:  # e.g. OOM, READONLY replica, LOADING
            raise BrokerUnavailable(f"redis error: {exc}") from exc
        finally:
            self._slots.release()

    # ---- messages

    def publish(self, room: str, name: str, text: str) -> Message:
        raw = self._call(
            self._scripts["publish"],
            keys=[self._stream(room), self.prefix + "last", self.prefix + "epoch", self.prefix + "floor"],
            args=[self.history_size, name, text, self._channel(room), room],
        )
        mid = _s(raw)
        return Message(room=room, id=mid, name=name, text=text, ts=parse_stream_id(mid)[0])

    def _messages(self, room: str, entries: list) -> list[Message]:
        out = []
        for raw_id, fields in entries:
            mid = _s(raw_id)
            out.append(
                Message(
                    room=room,
                    id=mid,
                    name=_s(fields.get(b"n", b"")),
                    text=_s(fields.get(b"t", b"")),
                    ts=parse_stream_id(mid)[0],
                )
            )
        return out

    def history(self, room: str, since: str | None = None, limit: int | None = None) -> list[Message]:
        if since is not None:
            self.id_key(since)  # validate before anything else
        if limit == 0:
            return []
        stream = self._stream(room)
        if since is None:
            if limit is None:
                entries = self._call(self._redis.xrange, stream, "-", "+")
            else:
                entries = list(reversed(self._call(self._redis.xrevrange, stream, "+", "-", count=limit)))
        else:
            entries = self._call(self._redis.xrange, stream, "(" + since, "+", count=limit)
        messages = self._messages(room, entries)
        if messages and room in self._subs:
            self._await_dispatch(room, parse_stream_id(messages[-1].id))
        return messages

    def _await_dispatch(self, room: str, key: tuple[int, int], timeout: float = 2.0) -> None:
        """Wait until the listener has delivered `room`'s messages up to `key` locally.

        Delivery is asynchronous (pub/sub), so a message can be in history before our
        subscribers got it. The hub replays history, then goes live, skipping buffered
        ids it replayed; without this wait a message still in flight on the pub/sub
        connection would arrive after that and be sent twice. Same guarantee as the memory
        broker: once history() returned X, local subscribers have had every id <= X."""
        last = self._last_key.get(room)
        if last is not None and last >= key:
            return
        deadline = time.monotonic() + timeout
        while self._up and room in self._subs and time.monotonic() < deadline:
            gevent.sleep(0.001)
            last = self._last_key.get(room)
            if last is not None and last >= key:
                return
        log.debug("redis broker: delivery of %s up to %s not seen in time", room, key)

    def covers(self, room: str, since: str) -> bool:
        since_key = self.id_key(since)
        epoch, deleted = self._call(
            self._scripts["covers"], keys=[self.prefix + "epoch", self.prefix + "floor"], args=[room]
        )
        return since_key >= parse_stream_id(_s(epoch)) and since_key >= parse_stream_id(_s(deleted))

    # ---- fan-out

    def subscribe(self, room: str, callback: Callback) -> Subscription:
        sub = Subscription(room, callback)
        subs = self._subs.get(room)
        if subs:
            subs.append(sub)
            return sub
        self._check_up()
        self._subs[room] = [sub]
        waiter = gevent.event.AsyncResult()
        self._pending.setdefault(room, deque()).append(waiter)
        try:
            self._ps_send("SUBSCRIBE", self._channel(room))
            waiter.get(timeout=self.subscribe_timeout)
        except BaseException as exc:
            self._remove_sub(sub)  # a late confirmation pops this (stale) waiter, in order
            if isinstance(exc, (BrokerUnavailable, gevent.Timeout, *_NET_ERRORS)):
                raise BrokerUnavailable(f"cannot subscribe room {room}: {exc}") from exc
            raise
        # Tell the listener the newest id at this point of the channel's event order, so it
        # can resume from there after a reconnect even if no message arrives before.
        try:
            self._scripts["mark"](keys=[self.prefix + "last"], args=[room, self._channel(room)])
        except RedisError as exc:
            log.debug("redis broker: mark of %s failed: %s", room, exc)
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.active = False
        self._remove_sub(subscription)

    def _remove_sub(self, sub: Subscription) -> None:
        sub.active = False
        subs = self._subs.get(sub.room)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if subs:
            return
        del self._subs[sub.room]
        self._last_key.pop(sub.room, None)
        try:
            self._ps_send("UNSUBSCRIBE", self._channel(sub.room))
        except (BrokerUnavailable, *_NET_ERRORS):
            pass  # not connected: the reconnect subscribes only rooms still wanted

    def _ps_send(self, *args: str) -> None:
        with self._ps_lock:
            ps = self._ps
            if ps is None:
                raise BrokerUnavailable(f"redis unavailable: {self._error}")
            try:
                ps.send_command(*args, check_health=False)
            except _NET_ERRORS as exc:
                self._mark_down(exc)
                raise BrokerUnavailable(f"redis unavailable: {exc}") from exc

    def _drop_ps(self) -> None:
        ps, self._ps = self._ps, None
        if ps is not None:
            with contextlib.suppress(Exception):
                ps.disconnect()

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for waiters in pending.values():
            for w in waiters:
                if not w.ready():
                    w.set_exception(BrokerUnavailable(reason))

    # ---- listener

    def _listen_forever(self) -> None:
        delay = self.backoff_min
        while not self._closed:
            try:
                self._connect_and_listen()
                delay = self.backoff_min
            except gevent.GreenletExit:
                raise
            except Exception as exc:
                self._mark_down(exc)
                self._fail_pending(f"redis unavailable: {exc}")
                self._resync = None
                self._resync_wait = set()
                self._resync_buffer = []
                sleep = delay * (0.5 + random.random())
                log.debug("redis broker: reconnect in %.2fs after %s", sleep, exc)
                gevent.sleep(sleep)
                delay = min(self.backoff_max, delay * 2)

    def _connect_and_listen(self) -> None:
        ps = self._ps_factory()
        ps.connect()
        self._redis.ping()  # the command path works too
        self._ping_sent = None
        rooms = list(self._subs)
        self._resync = set(rooms)
        self._resync_wait = set(rooms)
        self._resync_buffer = []
        with self._ps_lock:
            self._ps = ps
            if rooms:
                ps.send_command("SUBSCRIBE", *(self._channel(r) for r in rooms), check_health=False)
        if not rooms:
            self._finish_resync()
        while not self._closed:
            if self._ps is not ps:
                raise RedisConnectionError(self._error)
            reply = ps.read_response()
            self._handle_reply(reply)

    def _finish_resync(self) -> None:
        """After (re)subscribing: deliver what was published while we were away, then go up."""
        rooms = self._resync or set()
        for room in rooms:
            last = self._last_key.get(room)
            if last is None or room not in self._subs:
                continue
            entries = self._redis.xrange(self._stream(room), f"({last[0]}-{last[1]}", "+")
            for msg in self._messages(room, entries):
                self._dispatch(room, {"k": "m", "id": msg.id, "n": msg.name, "t": msg.text})
        self._resync = None
        buffered, self._resync_buffer = self._resync_buffer, []
        for room, data in buffered:
            self._dispatch(room, data)
        self._restore_presence()
        if self.reconnects:
            log.warning("redis broker: reconnected to %s (%d room(s) resubscribed)", self._safe_url(), len(rooms))
        else:
            log.info("redis broker: connected to %s", self._safe_url())
        self.reconnects += 1
        self._error = ""
        self._up = True
        self._up_event.set()

    def _handle_reply(self, reply: Any) -> None:
        if isinstance(reply, (bytes, str)):  # "PONG" with no subscriptions
            self._ping_sent = None
            return
        if not isinstance(reply, list) or not reply:
            return
        kind = _s(reply[0])
        if kind == "message":
            room = _s(reply[1])[len(self.prefix) + 2 :]
            data = json.loads(reply[2])
            if self._resync is not None and room in self._resync:
                self._resync_buffer.append((room, data))
            else:
                self._dispatch(room, data)
        elif kind == "subscribe":
            room = _s(reply[1])[len(self.prefix) + 2 :]
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
            self._ping_sent = None

    def _dispatch(self, room: str, data: dict[str, Any]) -> None:
        k = data.get("k")
        if k == "m":
            key = parse_stream_id(data["id"])
            last = self._last_key.get(room)
            if last is not None and key <= last:
                return  # already delivered (resync overlap)
            if room in self._subs:
                self._last_key[room] = key
            event: Event = Message(room=room, id=data["id"], name=data["n"], text=data["t"], ts=key[0])
        elif k == "k":
            key = parse_stream_id(data["id"])
            if room in self._subs:
                last = self._last_key.get(room)
                self._last_key[room] = key if last is None else max(last, key)
            return
        elif k in ("j", "l"):
            event = PresenceEvent(room, "join" if k == "j" else "leave", Member(data["id"], data["n"]))
        else:
            return
        for sub in tuple(self._subs.get(room, ())):
            if not sub.active:
                continue
            try:
                sub.callback(event)
            except Exception:  # one broken subscriber must not starve the others
                log.exception("chat subscriber %s of room %s failed", sub.id, sub.room)

    # ---- heartbeat: presence refresh, sweep of dead processes, pub/sub liveness

    def _heartbeat_forever(self) -> None:
        interval = max(0.1, self.presence_ttl / 3)
        ping_every = min(5.0, interval)
        next_beat = 0.0
        while not self._closed:
            gevent.sleep(min(ping_every, interval) / 2)
            if not self._up:
                continue
            now = time.monotonic()
            try:
                if self._ping_sent is not None and now - self._ping_sent > max(10.0, 2 * ping_every):
                    self._mark_down("no PONG on the pub/sub connection")
                    continue
                if self._ping_sent is None:
                    self._ping_sent = now
                    self._ps_send("PING")
                if now >= next_beat:
                    next_beat = now + interval
                    self._beat()
            except RedisTimeoutError as exc:  # slow, not gone: the PONG watchdog decides
                log.warning("redis broker: heartbeat timed out: %s", exc)
            except (BrokerUnavailable, *_NET_ERRORS) as exc:
                self._mark_down(exc)
            except Exception:
                log.exception("redis broker: heartbeat failed")

    def _beat(self) -> None:
        for room in list(self._local):
            self._refresh_room(room)
            self._scripts["sweep"](
                keys=[self._procs(room), self.prefix + "rooms"],
                args=[self._presence_prefix(room), self._channel(room), room],
            )

    def _refresh_room(self, room: str, full: bool = False) -> None:
        local = self._local.get(room)
        if not local:
            return
        key = self._presence_prefix(room) + self.proc
        ok = self._scripts["refresh"](
            keys=[key, self._procs(room), self.prefix + "rooms", self.prefix + "epoch"],
            args=[self.ttl_ms, self.key_ttl_ms, self.proc, room],
        )
        if full or not ok:  # after a reconnect, or Redis lost our presence (restart, swept)
            args: list[Any] = [self.key_ttl_ms, self._channel(room)]
            for mid, (seq, name) in list(local.items()):
                args += [mid, f"{seq}\t{name}"]
            self._scripts["rewrite"](keys=[key], args=args)

    def _restore_presence(self) -> None:
        for room in list(self._local):
            self._refresh_room(room, full=True)

    # ---- presence

    def join(self, room: str, member: Member) -> None:
        seq = self._call(
            self._scripts["join"],
            keys=[self._presence_prefix(room) + self.proc, self._procs(room), self.prefix + "rooms", self.prefix + "seq"],
            args=[member.id, member.name, self.proc, self.ttl_ms, self.key_ttl_ms, room, self._channel(room)],
        )
        self._local.setdefault(room, {})[member.id] = (int(seq), member.name)

    def leave(self, room: str, member_id: str) -> None:
        local = self._local.get(room)
        if local is not None:
            local.pop(member_id, None)
            if not local:
                del self._local[room]
        self._call(
            self._scripts["leave"],
            keys=[self._procs(room), self.prefix + "rooms"],
            args=[room, member_id, self.proc, self._presence_prefix(room), self._channel(room)],
        )

    def members(self, room: str) -> list[Member]:
        flat = self._call(self._scripts["members"], keys=[self._procs(room)], args=[self._presence_prefix(room)])
        rows = []
        for i in range(0, len(flat), 2):
            seq, _, name = _s(flat[i + 1]).partition("\t")
            rows.append((int(seq), _s(flat[i]), name))
        rows.sort()
        return [Member(mid, name) for _, mid, name in rows]

    def rooms(self) -> list[RoomInfo]:
        flat = self._call(self._scripts["rooms"], keys=[self.prefix + "rooms", self.prefix + "last"], args=[self.prefix])
        out = [
            RoomInfo(room=_s(flat[i]), members=int(flat[i + 1]), last_id=_s(flat[i + 2]) or None)
            for i in range(0, len(flat), 3)
        ]
        out.sort(key=lambda r: r.room)
        return out
