"""Rooms are freed in Redis too, and a Redis that refuses writes is not ready (issue 13 item 2).

Real redis-server processes: the room TTL is Redis key expiry (checked on the keys
themselves), and a Redis at ``maxmemory`` with ``noeviction`` ("OOM command not allowed")
makes a real wsapp server's /readyz answer 503 and its senders get an ``error`` event,
until Redis takes writes again.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.chat.clients import ChatClient
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import ServerProcess, running_server
from wsapp.chat.broker import Member
from wsapp.chat.broker.redis import RedisBroker

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as r:
        yield r


def room() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


def test_room_keys_expire_after_the_room_ttl_and_live_while_members_are_present(
    redis_server: RedisServer,
) -> None:
    ttl = 30.0
    b = RedisBroker(redis_server.url, room_ttl=ttl, presence_ttl=5.0)
    b.start()
    try:
        cli = redis_server.client()
        r = room()
        stream, meta = f"wsapp:s:{r}", f"wsapp:m:{r}"
        b.publish(r, "ann", "hi")
        for key in (stream, meta):
            assert 0 < cli.pttl(key) <= ttl * 1000
        assert cli.zscore("wsapp:known", r) is not None
        cli.pexpire(stream, 5000)
        cli.pexpire(meta, 5000)
        b.join(r, Member("m-1", "ann"))  # a member: at least the presence keys' life
        assert cli.pttl(meta) > 5000
        b.leave(r, "m-1")  # the last member left: exactly the room TTL from now
        assert ttl * 1000 - 2000 < cli.pttl(meta) <= ttl * 1000
        assert ttl * 1000 - 2000 < cli.pttl(stream) <= ttl * 1000
        # Redis forgets the room by itself; the listing follows the index
        cli.pexpire(stream, 1)
        cli.pexpire(meta, 1)
        cli.zadd("wsapp:known", {r: 0})
        time.sleep(0.05)
        assert r not in {x.room for x in b.rooms()}
        assert b.history(r) == []
    finally:
        b.close()


def test_room_ttl_zero_leaves_room_keys_without_expiry(redis_server: RedisServer) -> None:
    b = RedisBroker(redis_server.url, room_ttl=0)
    b.start()
    try:
        cli = redis_server.client()
        r = room()
        b.publish(r, "ann", "hi")
        assert cli.pttl(f"wsapp:s:{r}") == -1 and cli.pttl(f"wsapp:m:{r}") == -1
        assert r in {x.room for x in b.rooms()}
    finally:
        b.close()


def readyz(srv: ServerProcess) -> int:
    try:
        with urllib.request.urlopen(srv.http_url("/readyz"), timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_readyz(srv: ServerProcess, status: int, timeout: float) -> float:
    started = time.monotonic()
    while readyz(srv) != status:
        assert time.monotonic() - started < timeout, f"/readyz not {status} within {timeout}s"
        time.sleep(0.05)
    return time.monotonic() - started


def fill_until_oom(cli: redis.Redis) -> int:
    """Write 10 KB values until Redis refuses with OOM; returns how many were written."""
    for i in range(10_000):
        try:
            cli.set(f"fill:{i}", "x" * 10_000)
        except redis.exceptions.OutOfMemoryError:
            return i
    raise AssertionError("Redis never refused a write")


def answer(client: ChatClient, ref: str) -> dict:
    """The ack or error event for `ref`."""
    deadline = time.monotonic() + 10
    while True:
        event = client.next(timeout=max(0.1, deadline - time.monotonic()))
        if event["type"] in ("ack", "error") and event.get("ref") == ref:
            return event


def history_texts(srv: ServerProcess, r: str) -> list[str]:
    with urllib.request.urlopen(srv.http_url(f"/api/rooms/{r}/messages"), timeout=5) as resp:
        return [m["text"] for m in json.load(resp)["messages"]]


def test_a_redis_out_of_memory_is_not_ready_and_senders_are_told(
    redis_server: RedisServer,
) -> None:
    env = {"WSAPP_REDIS_URL": redis_server.url, "WSAPP_RATE_LIMIT": "0"}
    with running_server("serve", env=env) as srv:
        wait_readyz(srv, 200, 10)
        r = room()
        with ChatClient(srv, r, "ann") as ann:
            ann.say("before", ref="b1")
            assert answer(ann, "b1")["type"] == "ack"
            cli = redis_server.client()
            cli.config_set("maxmemory-policy", "noeviction")
            cli.config_set("maxmemory", "2mb")
            fill_until_oom(cli)
            took = wait_readyz(srv, 503, 5)
            assert took < 3, f"/readyz took {took:.1f}s to notice"
            refused = "refused " + "x" * 16_000  # Redis is within 10 KB of its limit
            ann.say(refused, ref="r1")
            event = answer(ann, "r1")
            assert event["type"] == "error" and event["code"] == "unavailable", event
            assert refused not in history_texts(srv, r)  # reads still work; nothing stored

            cli.config_set("maxmemory", "0")  # room again
            assert wait_readyz(srv, 200, 5) < 3
            ann.say("after", ref="a1")
            assert answer(ann, "a1")["type"] == "ack"

            cli.config_set("maxmemory", "2mb")
            fill_until_oom(cli)
            wait_readyz(srv, 503, 5)
            cli.flushall()  # memory back below maxmemory
            assert wait_readyz(srv, 200, 5) < 3
            ann.say("after flush", ref="a2")
            assert answer(ann, "a2")["type"] == "ack"
        assert "Traceback" not in srv.log_text()
        assert "refuses writes" in srv.log_text()
