"""The Broker contract: every implementation in broker_impls.IMPLS must pass all of these.

Delivery may be synchronous (memory) or come from a listener greenlet (Redis), so tests
wait for deliveries with `Collector.wait`, which yields to gevent. Rooms are fresh random
names, so a broker backed by a shared server is fine.
"""

from __future__ import annotations

import time

import gevent
import pytest

from tests.chat.conftest import new_room
from wsapp.chat.broker import (
    Broker,
    InvalidMessageId,
    Member,
    Message,
    PresenceEvent,
    RoomInfo,
    Subscription,
)


class Collector:
    """A subscription callback that records events."""

    def __init__(self) -> None:
        self.events: list[Message | PresenceEvent] = []

    def __call__(self, event: Message | PresenceEvent) -> None:
        self.events.append(event)

    @property
    def messages(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]

    @property
    def presence(self) -> list[PresenceEvent]:
        return [e for e in self.events if isinstance(e, PresenceEvent)]

    def wait(self, predicate, timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s; got {self.events!r}"[:2000]
                )
            gevent.sleep(0.005)

    def wait_messages(self, n: int, timeout: float = 3.0) -> list[Message]:
        self.wait(lambda c: len(c.messages) >= n, timeout)
        return self.messages


def settle(seconds: float = 0.1) -> None:
    """Give an asynchronous broker time to deliver anything it (wrongly) would."""
    gevent.sleep(seconds)


def publish_n(broker: Broker, room: str, n: int, prefix: str = "m") -> list[Message]:
    return [broker.publish(room, "ann", f"{prefix}{i}") for i in range(n)]


# ---- publish and ids --------------------------------------------------------------------


def test_publish_returns_the_stored_message(broker: Broker, room: str) -> None:
    before = int(time.time() * 1000)
    msg = broker.publish(room, "Zoë", "héllo 🎉")
    after = int(time.time() * 1000)
    assert isinstance(msg, Message)
    assert (msg.room, msg.name, msg.text) == (room, "Zoë", "héllo 🎉")
    assert isinstance(msg.id, str) and msg.id
    assert before - 1000 <= msg.ts <= after + 1000
    assert broker.is_valid_id(msg.id)
    assert broker.history(room) == [msg]


def test_ids_strictly_increase_within_a_room_even_in_one_millisecond(
    broker: Broker, room: str
) -> None:
    msgs = publish_n(broker, room, 300)
    keys = [broker.id_key(m.id) for m in msgs]
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False))
    assert len({m.id for m in msgs}) == 300


def test_ids_increase_per_room_independently(broker: Broker) -> None:
    a, b = new_room(), new_room()
    ids_a, ids_b = [], []
    for i in range(50):
        ids_a.append(broker.publish(a, "x", str(i)).id)
        if i % 3 == 0:
            ids_b.append(broker.publish(b, "y", str(i)).id)
    for ids in (ids_a, ids_b):
        keys = [broker.id_key(i) for i in ids]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [m.text for m in broker.history(b)] == [str(i) for i in range(0, 50, 3)]


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "1", "1-", "-1", "1-2-3", "1.5-0", " 1-0", "1-0 ", "01-0", "9" * 30 + "-0", "１-0"],
)
def test_malformed_ids_are_rejected(broker: Broker, room: str, bad: str) -> None:
    assert not broker.is_valid_id(bad)
    with pytest.raises(InvalidMessageId):
        broker.id_key(bad)
    with pytest.raises(InvalidMessageId):
        broker.history(room, since=bad)
    with pytest.raises(ValueError):  # InvalidMessageId is a ValueError too
        broker.history(room, since=bad)


def test_text_is_stored_exactly(broker: Broker, room: str) -> None:
    texts = [
        "",
        " ",
        "\x00nul",
        "line\nbreak",
        "tab\t",
        "🎉" * 100,
        "x" * 16384,
        '{"type":"message"}',
        "\\u0000",
    ]
    sent = [broker.publish(room, "n", t) for t in texts]
    assert [m.text for m in broker.history(room)] == texts
    assert broker.history(room) == sent


def test_a_retry_with_the_same_sender_and_ref_is_not_published_twice(
    broker: Broker, room: str
) -> None:
    got = Collector()
    broker.subscribe(room, got)
    first = broker.publish(room, "ann", "hello", sender="conn-1", ref="c-17")
    again = broker.publish(room, "ann", "hello", sender="conn-1", ref="c-17")
    assert again == first
    other_sender = broker.publish(room, "bob", "hello", sender="conn-2", ref="c-17")
    other_ref = broker.publish(room, "ann", "hello", sender="conn-1", ref="c-18")
    no_ref = [broker.publish(room, "ann", "hello", sender="conn-1") for _ in range(2)]
    assert len({m.id for m in (first, other_sender, other_ref, *no_ref)}) == 5
    assert got.wait_messages(5) == [first, other_sender, other_ref, *no_ref]
    settle()
    assert len(got.messages) == 5
    assert broker.history(room) == [first, other_sender, other_ref, *no_ref]


def test_refs_are_per_room(broker: Broker) -> None:
    a, b = new_room(), new_room()
    in_a = broker.publish(a, "ann", "x", sender="conn-1", ref="1")
    in_b = broker.publish(b, "ann", "x", sender="conn-1", ref="1")
    assert in_a.id != in_b.id or in_a.room != in_b.room
    assert broker.history(b) == [in_b]


# ---- history ----------------------------------------------------------------------------


def test_history_keeps_the_newest_messages_in_order(make_broker, room: str) -> None:
    broker = make_broker(history=10)
    msgs = publish_n(broker, room, 25)
    assert broker.history(room, limit=10) == msgs[-10:]
    assert broker.history(room, limit=3) == msgs[-3:]
    retained = broker.history(room)
    assert retained == msgs[-len(retained) :]
    assert len(retained) >= 10


def test_history_of_an_unknown_room_is_empty(broker: Broker) -> None:
    assert broker.history(new_room()) == []
    assert broker.history(new_room(), limit=5) == []


def test_history_since_returns_exactly_the_later_messages(broker: Broker, room: str) -> None:
    msgs = publish_n(broker, room, 30)
    for i in (0, 1, 10, 28, 29):
        assert broker.history(room, since=msgs[i].id) == msgs[i + 1 :]
    assert broker.history(room, since=msgs[-1].id) == []


def test_history_since_with_limit_returns_the_oldest_after_since(broker: Broker, room: str) -> None:
    msgs = publish_n(broker, room, 20)
    assert broker.history(room, since=msgs[4].id, limit=3) == msgs[5:8]


def test_history_since_an_id_from_the_future_is_empty(broker: Broker, room: str) -> None:
    publish_n(broker, room, 3)
    assert broker.history(room, since="99999999999999-0") == []


def test_covers_means_history_since_is_complete(make_broker, room: str) -> None:
    broker = make_broker(history=5)
    msgs = publish_n(broker, room, 20)
    retained = broker.history(room)
    assert retained[-5:] == msgs[-5:]
    for i, m in enumerate(msgs):
        if broker.covers(room, m.id):
            assert broker.history(room, since=m.id) == msgs[i + 1 :]
    assert broker.covers(room, msgs[-1].id)
    assert broker.covers(room, msgs[-2].id)
    if len(retained) < 19:
        assert not broker.covers(room, msgs[0].id)


def test_history_zero_keeps_nothing_but_ids_still_increase(make_broker, room: str) -> None:
    broker = make_broker(history=0)
    msgs = publish_n(broker, room, 5)
    keys = [broker.id_key(m.id) for m in msgs]
    assert keys == sorted(keys) and len(set(keys)) == 5
    assert broker.history(room, limit=0) == []


# ---- subscriptions ----------------------------------------------------------------------


def test_subscriber_gets_every_message_in_order(broker: Broker, room: str) -> None:
    got = Collector()
    sub = broker.subscribe(room, got)
    assert isinstance(sub, Subscription)
    msgs = publish_n(broker, room, 100)
    assert got.wait_messages(100) == msgs
    broker.unsubscribe(sub)


def test_delivered_message_equals_the_stored_one(broker: Broker, room: str) -> None:
    got = Collector()
    broker.subscribe(room, got)
    msg = broker.publish(room, "ann", "x")
    assert got.wait_messages(1) == [msg] == broker.history(room)


def test_rooms_are_isolated(broker: Broker) -> None:
    a, b = new_room(), new_room()
    got_a, got_b = Collector(), Collector()
    broker.subscribe(a, got_a)
    broker.subscribe(b, got_b)
    ma = broker.publish(a, "x", "for a")
    mb = broker.publish(b, "y", "for b")
    assert got_a.wait_messages(1) == [ma]
    assert got_b.wait_messages(1) == [mb]
    settle()
    assert got_a.messages == [ma] and got_b.messages == [mb]


def test_two_subscribers_and_unsubscribe(broker: Broker, room: str) -> None:
    one, two = Collector(), Collector()
    s1 = broker.subscribe(room, one)
    broker.subscribe(room, two)
    m1 = broker.publish(room, "x", "1")
    one.wait_messages(1)
    two.wait_messages(1)
    broker.unsubscribe(s1)
    broker.unsubscribe(s1)  # harmless twice
    m2 = broker.publish(room, "x", "2")
    assert two.wait_messages(2) == [m1, m2]
    settle()
    assert one.messages == [m1]


def test_no_delivery_of_messages_published_before_subscribing(broker: Broker, room: str) -> None:
    publish_n(broker, room, 3)
    got = Collector()
    broker.subscribe(room, got)
    m = broker.publish(room, "x", "after")
    assert got.wait_messages(1) == [m]
    settle()
    assert got.messages == [m]


def test_a_failing_subscriber_does_not_starve_others(broker: Broker, room: str) -> None:
    def boom(event) -> None:
        raise RuntimeError("subscriber bug")

    broker.subscribe(room, boom)
    got = Collector()
    broker.subscribe(room, got)
    msgs = publish_n(broker, room, 3)
    assert got.wait_messages(3) == msgs


def test_unsubscribe_from_inside_a_callback(broker: Broker, room: str) -> None:
    got = Collector()
    subs: list[Subscription] = []

    def once(event) -> None:
        got(event)
        broker.unsubscribe(subs[0])

    subs.append(broker.subscribe(room, once))
    other = Collector()
    broker.subscribe(room, other)
    publish_n(broker, room, 3)
    other.wait_messages(3)
    settle()
    assert len(got.messages) == 1


def test_subscribe_then_history_has_no_gap_while_publishing(broker: Broker, room: str) -> None:
    """The resume recipe at broker level: subscribe, read history, merge by id."""
    published: list[Message] = []
    stop = False

    def publisher() -> None:
        i = 0
        while not stop:
            published.append(broker.publish(room, "pub", f"p{i}"))
            i += 1
            gevent.sleep(0.0005 if i % 5 == 0 else 0)

    g = gevent.spawn(publisher)
    gevent.sleep(0.02)
    got = Collector()
    broker.subscribe(room, got)
    hist = broker.history(room)
    gevent.sleep(0.05)
    stop = True
    g.join(2)
    assert hist, "the publisher should have published before history was read"
    got.wait(lambda c: c.messages and c.messages[-1].id == published[-1].id)
    last = broker.id_key(hist[-1].id)
    merged = hist + [m for m in got.messages if broker.id_key(m.id) > last]
    expected = published[published.index(hist[0]) :]
    assert [m.id for m in merged] == [m.id for m in expected]


# ---- presence ---------------------------------------------------------------------------


def test_join_and_leave_update_members_and_notify(broker: Broker, room: str) -> None:
    got = Collector()
    broker.subscribe(room, got)
    ann, bob, ann2 = Member("m-1", "ann"), Member("m-2", "bob"), Member("m-3", "ann")
    for m in (ann, bob, ann2):
        broker.join(room, m)
    assert broker.members(room) == [ann, bob, ann2]  # join order, names may repeat
    got.wait(lambda c: len(c.presence) == 3)
    assert got.presence == [PresenceEvent(room, "join", m) for m in (ann, bob, ann2)]
    broker.leave(room, "m-2")
    assert broker.members(room) == [ann, ann2]
    got.wait(lambda c: len(c.presence) == 4)
    assert got.presence[-1] == PresenceEvent(room, "leave", bob)


def test_leave_of_an_unknown_member_is_silent(broker: Broker, room: str) -> None:
    got = Collector()
    broker.subscribe(room, got)
    broker.leave(room, "nobody")
    broker.leave(new_room(), "nobody")
    broker.join(room, Member("m-1", "ann"))
    broker.leave(room, "m-1")
    broker.leave(room, "m-1")
    got.wait(lambda c: len(c.presence) >= 2)
    settle()
    assert [e.kind for e in got.presence] == ["join", "leave"]
    assert broker.members(room) == []


def test_members_of_rooms_are_separate(broker: Broker) -> None:
    a, b = new_room(), new_room()
    broker.join(a, Member("m-1", "ann"))
    broker.join(b, Member("m-2", "bob"))
    assert broker.members(a) == [Member("m-1", "ann")]
    assert broker.members(b) == [Member("m-2", "bob")]
    assert broker.members(new_room()) == []


def test_rooms_lists_members_and_last_id(broker: Broker) -> None:
    busy, quiet, gone, never = new_room("a"), new_room("b"), new_room("c"), new_room("d")
    broker.join(busy, Member("m-1", "ann"))
    broker.join(busy, Member("m-2", "bob"))
    last = publish_n(broker, busy, 3)[-1]
    broker.join(quiet, Member("m-3", "cy"))
    m = broker.publish(gone, "x", "left behind")
    broker.join(gone, Member("m-4", "dee"))
    broker.leave(gone, "m-4")
    broker.join(never, Member("m-5", "eve"))
    broker.leave(never, "m-5")
    infos = {r.room: r for r in broker.rooms()}
    assert infos[busy] == RoomInfo(busy, 2, last.id)
    assert infos[quiet] == RoomInfo(quiet, 1, None)
    assert infos[gone] == RoomInfo(gone, 0, m.id)
    assert never not in infos  # no members, no messages
    names = [r.room for r in broker.rooms()]
    assert names == sorted(names)


# ---- rooms are freed (WSAPP_ROOM_TTL) ----------------------------------------------------


def wait_gone(broker: Broker, room: str, timeout: float) -> float:
    """Seconds until `room` is no longer listed by rooms(); fails after `timeout`."""
    started = time.monotonic()
    while room in {r.room for r in broker.rooms()}:
        assert time.monotonic() - started < timeout, f"{room} still listed after {timeout}s"
        gevent.sleep(0.02)
    return time.monotonic() - started


def test_an_idle_room_is_forgotten_after_the_room_ttl_and_not_before(make_broker) -> None:
    ttl = 0.6
    broker = make_broker(room_ttl=ttl)
    room = new_room("idle")
    first = broker.publish(room, "ann", "one")
    gevent.sleep(ttl / 2)
    broker.publish(room, "ann", "two")  # activity: the TTL counts from here
    last_use = time.monotonic()
    assert room in {r.room for r in broker.rooms()}
    wait_gone(broker, room, ttl + 3)
    assert time.monotonic() - last_use >= ttl - 0.05  # never before the TTL
    assert broker.history(room) == []
    assert not broker.covers(room, first.id)  # a resume learns that messages are gone
    again = broker.publish(room, "bob", "three")  # ids are not reused
    assert broker.id_key(again.id) > broker.id_key(first.id)
    assert broker.history(room) == [again]


def test_a_room_with_members_is_kept_past_the_ttl_then_freed_after_the_last_leave(
    make_broker,
) -> None:
    ttl = 0.5
    broker = make_broker(room_ttl=ttl)
    room = new_room("used")
    broker.join(room, Member("m-1", "ann"))
    kept = broker.publish(room, "ann", "kept while ann is there")
    gevent.sleep(ttl * 4)
    assert {r.room: r for r in broker.rooms()}[room] == RoomInfo(room, 1, kept.id)
    assert broker.history(room) == [kept]
    broker.leave(room, "m-1")
    left = time.monotonic()
    wait_gone(broker, room, ttl + 3)
    assert time.monotonic() - left >= ttl - 0.05
    assert broker.history(room) == []


def test_room_ttl_zero_keeps_idle_rooms(make_broker) -> None:
    broker = make_broker(room_ttl=0.0)
    room = new_room("kept")
    msg = broker.publish(room, "ann", "stays")
    gevent.sleep(0.3)
    assert {r.room: r for r in broker.rooms()}[room] == RoomInfo(room, 0, msg.id)
    assert broker.history(room) == [msg]


# ---- health -----------------------------------------------------------------------------


def test_healthy_and_ready(broker: Broker) -> None:
    assert broker.healthy() is True
    assert broker.ready is True
    assert isinstance(broker.kind, str) and broker.kind != "abstract"
