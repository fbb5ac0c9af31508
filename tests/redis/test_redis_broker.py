"""Redis broker behaviour beyond the shared contract: outages, reconnect catch-up, presence
across processes, one pub/sub connection. Real redis-server, brokers in this process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import gevent
import gevent.event
import pytest

from tests.support.redis_server import RedisServer, running_redis
from wsapp.chat.broker import BrokerUnavailable, Member, Message, PresenceEvent
from wsapp.chat.broker.redis import RedisBroker

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as r:
        yield r


@pytest.fixture
def brokers(redis_server: RedisServer) -> Iterator[list[RedisBroker]]:
    made: list[RedisBroker] = []
    yield made
    for b in made:
        b.close()


def make(redis_server: RedisServer, made: list[RedisBroker], **kw) -> RedisBroker:
    kw.setdefault("backoff_max", 0.3)
    b = RedisBroker(redis_server.url, **kw)
    b.start()
    assert b.healthy()
    made.append(b)
    return b


def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what} not met within {timeout}s"
        gevent.sleep(0.01)
    return time.monotonic() - started


def room() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


def test_two_processes_share_ids_history_and_delivery(redis_server, brokers) -> None:
    a, b = make(redis_server, brokers), make(redis_server, brokers)
    r = room()
    got_a: list = []
    got_b: list = []
    a.subscribe(r, got_a.append)
    b.subscribe(r, got_b.append)
    sent = []
    for i in range(40):
        sent.append((a if i % 2 else b).publish(r, "x", str(i)))
    keys = [a.id_key(m.id) for m in sent]
    assert keys == sorted(keys) and len(set(keys)) == 40
    wait_for(lambda: len(got_a) == 40 and len(got_b) == 40)
    assert got_a == got_b == sent
    assert a.history(r) == b.history(r) == sent


def test_one_pubsub_connection_per_process_subscribed_to_local_rooms_only(
    redis_server, brokers
) -> None:
    b = make(redis_server, brokers)
    rooms = [room() for _ in range(5)]
    subs = [b.subscribe(r, lambda e: None) for r in rooms]
    cli = redis_server.client()
    chans = {c.decode() for c in cli.pubsub_channels("wsapp:c:*")}
    assert chans == {f"wsapp:c:{r}" for r in rooms}
    clients = cli.client_list()
    assert sum(1 for c in clients if int(c.get("sub", 0)) > 0) == 1
    for s in subs[:3]:
        b.unsubscribe(s)
    wait_for(
        lambda: (
            {c.decode() for c in cli.pubsub_channels("wsapp:c:*")}
            == {f"wsapp:c:{r}" for r in rooms[3:]}
        )
    )


def test_outage_fails_fast_then_recovers_with_delivery_and_history(redis_server, brokers) -> None:
    a = make(redis_server, brokers)
    r = room()
    got: list = []
    a.subscribe(r, got.append)
    a.join(r, Member("m-1", "ann"))
    first = a.publish(r, "ann", "before")

    redis_server.stop()
    wait_for(lambda: not a.healthy(), 3, "broker notices the outage")
    for call in (
        lambda: a.publish(r, "ann", "lost"),
        lambda: a.history(r),
        lambda: a.members(r),
        lambda: a.subscribe(room(), got.append),
    ):
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            call()
        assert time.monotonic() - started < 0.5  # fail fast: no connect attempt per call

    redis_server.start()
    wait_for(a.healthy, 5, "reconnect")
    after = a.publish(r, "ann", "after")
    wait_for(lambda: after in got)
    assert [m.text for m in got if isinstance(m, Message)] == ["before", "after"]
    assert a.history(r) == [after]  # redis-server ran without persistence: old history is gone
    assert not a.covers(r, first.id)  # ... and the broker says so (hello.recovered false)
    assert a.members(r) == [Member("m-1", "ann")]  # presence restored from local state


def test_reconnect_delivers_what_was_published_while_the_listener_was_away(
    redis_server, brokers
) -> None:
    a = make(redis_server, brokers, backoff_min=0.3)
    b = make(redis_server, brokers)
    r = room()
    got: list[Message] = []
    a.subscribe(r, lambda e: got.append(e) if isinstance(e, Message) else None)
    sent = [b.publish(r, "bob", f"m{i}") for i in range(5)]
    wait_for(lambda: len(got) == 5)
    a._mark_down("test: pub/sub connection lost")  # as when a connection drops
    assert not a.healthy()
    sent += [b.publish(r, "bob", f"gap{i}") for i in range(20)]
    wait_for(a.healthy, 5, "reconnect")
    sent += [b.publish(r, "bob", f"late{i}") for i in range(5)]
    wait_for(lambda: len(got) >= 30)
    gevent.sleep(0.1)
    assert got == sent  # in order, nothing lost, nothing twice


def test_history_is_never_ahead_of_local_delivery(redis_server, brokers) -> None:
    """Once history() returned X, local subscribers have had every message up to X (as with
    the memory broker), so the hub's replay-then-live switch sends nothing twice."""
    a, b = make(redis_server, brokers), make(redis_server, brokers)
    r = room()
    got: list[Message] = []
    a.subscribe(r, lambda e: got.append(e) if isinstance(e, Message) else None)

    stop = gevent.event.Event()

    def publish() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            b.publish(r, "bob", str(i))
            i += 1
            if i % 20 == 0:
                gevent.sleep(0)

    g = gevent.spawn(publish)
    checks = 0
    deadline = time.monotonic() + 20
    # Check while messages flow, however slow the machine: until 30 checks saw history.
    while checks < 30 and not g.dead and time.monotonic() < deadline:
        hist = a.history(r, limit=3)
        if hist:
            assert hist[-1] in got
            checks += 1
        gevent.sleep(0)
    stop.set()
    g.get()
    assert checks >= 30


def test_presence_of_a_dead_process_expires_and_survivors_hear_leave(redis_server, brokers) -> None:
    ttl = 1.0
    alive = make(redis_server, brokers, presence_ttl=ttl)
    doomed = make(redis_server, brokers, presence_ttl=ttl)
    r = room()
    events: list = []
    alive.subscribe(r, lambda e: events.append(e) if isinstance(e, PresenceEvent) else None)
    alive.join(r, Member("a-1", "ann"))
    doomed.join(r, Member("d-1", "dee"))
    doomed.join(r, Member("d-2", "dan"))
    assert [m.name for m in alive.members(r)] == ["ann", "dee", "dan"]
    assert {x.room: x.members for x in alive.rooms()}[r] == 3
    # the process vanishes without a word: no leave, no more heartbeats
    for g in (doomed._listener, doomed._heartbeat):
        g.kill()
    died = time.monotonic()
    wait_for(lambda: [m.name for m in alive.members(r)] == ["ann"], ttl + 1.0, "dead members gone")
    assert time.monotonic() - died <= ttl + 0.5
    assert {x.room: x.members for x in alive.rooms()}[r] == 1
    wait_for(
        lambda: {e.member.id for e in events if e.kind == "leave"} == {"d-1", "d-2"},
        ttl * 2 + 1,
        "leave events",
    )


def test_live_presence_survives_many_ttls(redis_server, brokers) -> None:
    a = make(redis_server, brokers, presence_ttl=1.0)
    b = make(redis_server, brokers, presence_ttl=1.0)
    r = room()
    a.join(r, Member("a-1", "ann"))
    gevent.sleep(2.5)
    assert b.members(r) == [Member("a-1", "ann")]


def test_redis_url_selects_the_redis_broker(redis_server) -> None:
    from wsapp.chat.broker import MemoryBroker, create_broker
    from wsapp.settings import Settings

    assert isinstance(create_broker(Settings()), MemoryBroker)
    broker = create_broker(Settings(redis_url=redis_server.url, presence_ttl=7.0, history=12))
    assert isinstance(broker, RedisBroker)
    assert (broker.presence_ttl, broker.history_size, broker.kind) == (7.0, 12, "redis")


def test_unreachable_at_start_is_not_fatal(brokers) -> None:
    from tests.support.servers import free_port

    port = free_port()
    b = RedisBroker(f"redis://127.0.0.1:{port}/0", start_wait=0.3, backoff_max=0.2)
    brokers.append(b)
    b.start()
    assert not b.healthy()
    with pytest.raises(BrokerUnavailable):
        b.publish("x", "n", "t")
    srv = RedisServer(port).start()
    try:
        wait_for(b.healthy, 5, "late connect")
        assert b.publish("x", "n", "t").text == "t"
    finally:
        srv.stop()
