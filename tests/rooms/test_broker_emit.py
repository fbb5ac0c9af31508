"""Broker.emit, for every implementation (memory, Redis): delivered now, kept nowhere."""

from __future__ import annotations

import gevent

from tests.chat.conftest import new_room
from tests.chat.test_broker_contract import Collector, settle
from wsapp.chat.broker import Broker, Member, Message, RoomEvent


def test_emit_reaches_every_subscriber_once_in_order_and_is_not_history(broker: Broker) -> None:
    room = new_room("emit")
    a, b = Collector(), Collector()
    broker.subscribe(room, a)
    broker.subscribe(room, b)
    sent = [RoomEvent(room, "n", str(i)) for i in range(20)]
    for event in sent:
        broker.emit(event)
    for c in (a, b):
        c.wait(lambda c: len(c.events) >= 20)
        assert c.events == sent
    settle()
    assert len(a.events) == 20  # once each
    assert broker.history(room) == []
    assert room not in [r.room for r in broker.rooms()]


def test_emit_keeps_sender_skip_and_order_with_messages(broker: Broker) -> None:
    room = new_room("mix")
    c = Collector()
    broker.subscribe(room, c)
    ev = RoomEvent(room, "typing", '{"typing":true}', Member("p-1", "ann"), "p-1")
    broker.publish(room, "ann", "before")
    broker.emit(ev)
    broker.publish(room, "ann", "after")
    c.wait(lambda c: len(c.events) >= 3)
    kinds = [type(e) for e in c.events]
    assert kinds == [Message, RoomEvent, Message]
    assert c.events[1] == ev


def test_emit_to_a_room_nobody_subscribed_is_fine_and_creates_nothing(broker: Broker) -> None:
    room = new_room("empty")
    broker.emit(RoomEvent(room, "e", "null"))
    assert broker.rooms() == [] or room not in [r.room for r in broker.rooms()]
    late = Collector()
    broker.subscribe(room, late)  # events are not replayed to later subscribers
    settle()
    assert late.events == []


def test_emit_from_many_greenlets(broker: Broker) -> None:
    room = new_room("many")
    c = Collector()
    broker.subscribe(room, c)
    jobs = [gevent.spawn(broker.emit, RoomEvent(room, "g", str(i))) for i in range(50)]
    gevent.joinall(jobs, timeout=10, raise_error=True)
    c.wait(lambda c: len(c.events) >= 50)
    assert sorted(int(e.data) for e in c.events) == list(range(50))
