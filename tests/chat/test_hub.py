"""The local hub with fake connections (no sockets): join/replay/resume, fan-out, errors."""

from __future__ import annotations

import json
import time

import gevent
import pytest

from wsapp.chat import events
from wsapp.chat.broker import BrokerUnavailable, MemoryBroker, Message
from wsapp.chat.hub import Hub, text_frame


class FakeConn:
    """What the hub needs from a WebSocket (wsapp.engine.websocket), recording what it is sent."""

    _ids = iter(range(1, 1_000_000))

    def __init__(self, limit: int | None = None) -> None:
        self.id = f"fake-{next(self._ids)}"
        self.frames: list[bytes] = []
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.limit = limit

    def send_frame(self, frame: bytes) -> bool:
        if self.closed:
            return False
        if self.limit is not None and len(self.frames) >= self.limit:
            self.close(1008, "send queue overflow")
            return False
        self.frames.append(frame)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed, self.close_code, self.close_reason = True, code, reason

    close_nowait = close

    @property
    def events(self) -> list[dict]:
        return [json.loads(f) for f in self.frames]

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


class QueueConn(FakeConn):
    """A connection with a queue that a simulated writer drains at a chosen pace."""

    def __init__(self, limit: int, drain_per_tick: int) -> None:
        super().__init__(limit=None)
        self.queue_limit = limit
        self.pending = 0
        self.drain_per_tick = drain_per_tick
        self.max_pending = 0

    def send_frame(self, frame: bytes) -> bool:
        if self.closed:
            return False
        if self.pending >= self.queue_limit:
            self.close(1008, "send queue overflow")
            return False
        self.pending += 1
        self.max_pending = max(self.max_pending, self.pending)
        self.frames.append(frame)
        return True

    def queued(self) -> int:
        return self.pending

    def tick(self) -> None:
        self.pending = max(0, self.pending - self.drain_per_tick)


def identity(payload: bytes) -> bytes:
    return payload


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker(history=20)


@pytest.fixture
def hub(broker: MemoryBroker) -> Hub:
    return Hub(broker, history=20, queue_limit=1000, framer=identity)


def say(hub: Hub, lm, text: str, ref: str | None = None) -> Message | None:
    return hub.publish(lm, events.ChatInput(text, ref))


def test_text_frame_is_one_unmasked_text_frame() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 200)[:4] == b"\x81\x7e\x00\xc8"


def test_hello_first_with_members_then_join_for_the_others(hub: Hub) -> None:
    a, b = FakeConn(), FakeConn()
    hub.join(a, "r", "ann")
    hub.join(b, "r", "bob")
    assert a.events[0] == {
        "type": "hello",
        "room": "r",
        "id": a.id,
        "name": "ann",
        "members": ["ann"],
        "presence": [{"id": a.id, "name": "ann"}],
        "history": 0,
    }
    assert b.events[0]["members"] == ["ann", "bob"]
    assert a.events[1] == {"type": "join", "room": "r", "name": "bob", "id": b.id}
    assert b.of_type("join") == []  # no join event about yourself


def test_message_reaches_everyone_and_the_sender_gets_an_ack(hub: Hub) -> None:
    a, b, c = FakeConn(), FakeConn(), FakeConn()
    la = hub.join(a, "r", "ann")
    hub.join(b, "r", "bob")
    hub.join(c, "other", "cy")
    msg = say(hub, la, "hello", ref="r1")
    assert msg is not None
    want = {
        "type": "message",
        "id": msg.id,
        "room": "r",
        "name": "ann",
        "text": "hello",
        "ts": msg.ts,
    }
    assert a.of_type("message") == [want]
    assert b.of_type("message") == [want]
    assert a.of_type("ack") == [{"type": "ack", "ref": "r1", "id": msg.id}]
    assert b.of_type("ack") == []
    assert c.of_type("message") == []  # rooms are isolated
    say(hub, la, "no ref")
    assert len(a.of_type("ack")) == 1


def test_encode_once_same_bytes_to_every_member(broker: MemoryBroker) -> None:
    calls: list[bytes] = []

    def framer(payload: bytes) -> bytes:
        calls.append(payload)
        return b"F" + payload

    hub = Hub(broker, framer=framer)
    conns = [FakeConn() for _ in range(50)]
    members = [hub.join(c, "r", f"n{i}") for i, c in enumerate(conns)]
    calls.clear()
    for c in conns:
        c.frames.clear()
    say(hub, members[0], "fan out")
    assert len(calls) == 1  # one encoding for 50 recipients (no ref: no ack)
    frames = [c.frames[0] for c in conns]
    assert all(f is frames[0] for f in frames)  # the very same bytes object
    assert hub.fanout_events >= 1


def test_history_replayed_in_order_after_hello(hub: Hub) -> None:
    a = FakeConn()
    la = hub.join(a, "r", "ann")
    sent = [say(hub, la, f"m{i}") for i in range(30)]
    b = FakeConn()
    hub.join(b, "r", "bob")
    assert b.events[0]["type"] == "hello" and b.events[0]["history"] == 20
    replay = b.events[1:]
    assert [e["text"] for e in replay] == [f"m{i}" for i in range(10, 30)]
    assert all(e["replay"] is True for e in replay)
    assert [e["id"] for e in replay] == [m.id for m in sent[10:]]
    say(hub, la, "live")
    assert b.events[-1]["text"] == "live" and "replay" not in b.events[-1]


def test_history_zero_means_no_replay(broker: MemoryBroker) -> None:
    hub = Hub(broker, history=0, framer=identity)
    la = hub.join(FakeConn(), "r", "ann")
    say(hub, la, "x")
    b = FakeConn()
    hub.join(b, "r", "bob")
    assert [e["type"] for e in b.events] == ["hello"]
    assert b.events[0]["history"] == 0


def test_since_replays_exactly_the_later_messages(hub: Hub) -> None:
    la = hub.join(FakeConn(), "r", "ann")
    sent = [say(hub, la, f"m{i}") for i in range(10)]
    b = FakeConn()
    hub.join(b, "r", "bob", since=sent[6].id)
    assert b.events[0]["recovered"] is True
    assert b.events[0]["history"] == 3
    assert [e["text"] for e in b.events[1:]] == ["m7", "m8", "m9"]
    c = FakeConn()
    hub.join(c, "r", "cy", since=sent[-1].id)
    assert c.events[0]["history"] == 0 and c.events[0]["recovered"] is True
    assert len(c.events) == 1


def test_since_older_than_history_is_reported_not_recovered(hub: Hub) -> None:
    la = hub.join(FakeConn(), "r", "ann")
    sent = [say(hub, la, f"m{i}") for i in range(40)]
    b = FakeConn()
    hub.join(b, "r", "bob", since=sent[2].id)
    assert b.events[0]["recovered"] is False
    assert [e["text"] for e in b.events[1:]] == [f"m{i}" for i in range(20, 40)]


class RacingBroker(MemoryBroker):
    """Publishes while the hub reads history, as another process would (Redis: I/O yields)."""

    def __init__(self, before: int, after: int, **kw) -> None:
        super().__init__(**kw)
        self.before, self.after = before, after
        self.armed = False

    def history(self, room, since=None, limit=None):
        if self.armed:
            for i in range(self.before):
                self.publish(room, "racer", f"before-{i}")
        out = super().history(room, since=since, limit=limit)
        if self.armed:
            self.armed = False
            for i in range(self.after):
                self.publish(room, "racer", f"after-{i}")
        return out


@pytest.mark.parametrize("since_index", [None, 0, 4, 9])
def test_resume_has_no_gap_and_no_duplicate_while_messages_flow(since_index: int | None) -> None:
    broker = RacingBroker(before=3, after=4, history=100)
    hub = Hub(broker, history=100, framer=identity)
    writer = FakeConn()
    lw = hub.join(writer, "r", "w")
    sent = [say(hub, lw, f"m{i}") for i in range(10)]
    since = None if since_index is None else sent[since_index].id
    broker.armed = True
    b = FakeConn()
    lb = hub.join(b, "r", "bob", since=since)
    say(hub, lw, "tail")
    texts = [e["text"] for e in b.of_type("message")]
    start = 0 if since_index is None else since_index + 1
    want = [f"m{i}" for i in range(start, 10)] + [f"before-{i}" for i in range(3)]
    want += [f"after-{i}" for i in range(4)] + ["tail"]
    assert texts == want
    ids = [e["id"] for e in b.of_type("message")]
    assert len(set(ids)) == len(ids)
    assert lb.live


def test_events_during_join_are_buffered_in_order_including_presence() -> None:
    broker = RacingBroker(before=0, after=2, history=100)
    hub = Hub(broker, framer=identity)
    hub.join(FakeConn(), "r", "ann")
    broker.armed = True
    b = FakeConn()
    hub.join(b, "r", "bob")
    assert [e["type"] for e in b.events] == ["hello", "message", "message"]


def test_join_buffer_overflow_closes_1008(broker: MemoryBroker) -> None:
    class Flood(MemoryBroker):
        def history(self, room, since=None, limit=None):
            for i in range(50):
                self.publish(room, "x", str(i))
            return []

    hub = Hub(Flood(), queue_limit=10, framer=identity)
    b = FakeConn()
    lb = hub.join(b, "r", "bob")
    assert b.close_code == 1008
    assert not lb.live
    hub.leave(lb)
    assert hub.local_rooms() == {}


def test_replay_longer_than_the_queue_is_paced_not_dropped(broker: MemoryBroker) -> None:
    hub = Hub(broker, history=20, queue_limit=8, framer=identity)
    la = hub.join(FakeConn(), "r", "ann")
    for i in range(20):
        say(hub, la, f"m{i}")
    conn = QueueConn(limit=8, drain_per_tick=3)
    drainer_stop = False

    def drainer() -> None:
        while not drainer_stop:
            conn.tick()
            gevent.sleep(0.001)

    g = gevent.spawn(drainer)
    lm = hub.join(conn, "r", "slowpoke")
    drainer_stop = True
    g.join()
    assert not conn.closed
    assert lm.live
    assert [e["text"] for e in conn.of_type("message")] == [f"m{i}" for i in range(20)]
    assert conn.max_pending <= 8


def test_replay_never_read_closes_1008_after_timeout(broker: MemoryBroker) -> None:
    hub = Hub(broker, history=20, queue_limit=8, replay_timeout=0.05, framer=identity)
    la = hub.join(FakeConn(), "r", "ann")
    for i in range(20):
        say(hub, la, f"m{i}")
    conn = QueueConn(limit=8, drain_per_tick=0)
    t0 = time.monotonic()
    lm = hub.join(conn, "r", "stuck")
    assert time.monotonic() - t0 < 2
    assert conn.close_code == 1008
    assert not lm.live
    say(hub, la, "later")  # must not raise or reach the stuck member
    assert conn.of_type("message")[-1]["text"] != "later"


def test_a_member_that_cannot_take_frames_does_not_affect_others(hub: Hub) -> None:
    a, slow, c = FakeConn(), FakeConn(limit=5), FakeConn()
    la = hub.join(a, "r", "ann")
    hub.join(slow, "r", "slow")
    hub.join(c, "r", "cy")
    for i in range(100):
        say(hub, la, f"m{i}")
    assert slow.close_code == 1008
    assert [e["text"] for e in c.of_type("message")] == [f"m{i}" for i in range(100)]


def test_leave_notifies_others_and_unsubscribes_the_last(hub: Hub, broker: MemoryBroker) -> None:
    a, b = FakeConn(), FakeConn()
    la = hub.join(a, "r", "ann")
    lb = hub.join(b, "r", "bob")
    assert [m.name for m in broker.members("r")] == ["ann", "bob"]
    hub.leave(lb)
    hub.leave(lb)  # idempotent
    assert a.events[-1] == {"type": "leave", "room": "r", "name": "bob", "id": b.id}
    assert len(a.of_type("leave")) == 1
    assert [m.name for m in broker.members("r")] == ["ann"]
    assert hub.local_rooms() == {"r": 1}
    hub.leave(la)
    assert hub.local_rooms() == {}
    assert broker.members("r") == []
    assert broker._rooms.get("r") is None or not broker._rooms["r"].subscribers


def test_duplicate_names_get_distinct_ids(hub: Hub) -> None:
    a, b = FakeConn(), FakeConn()
    hub.join(a, "r", "sam")
    hub.join(b, "r", "sam")
    hello = b.events[0]
    assert hello["members"] == ["sam", "sam"]
    assert {p["id"] for p in hello["presence"]} == {a.id, b.id}


def test_publish_when_broker_is_down_sends_an_error_event(
    hub: Hub, broker: MemoryBroker, monkeypatch
) -> None:
    a, b = FakeConn(), FakeConn()
    la = hub.join(a, "r", "ann")
    hub.join(b, "r", "bob")

    def down(*args, **kwargs):
        raise BrokerUnavailable("redis is away")

    monkeypatch.setattr(broker, "publish", down)
    assert say(hub, la, "lost?", ref="x1") is None
    assert a.events[-1] == {
        "type": "error",
        "code": "unavailable",
        "reason": "message not sent: chat broker unavailable",
        "ref": "x1",
    }
    assert b.of_type("message") == []


def test_join_fails_cleanly_when_the_broker_is_down(
    hub: Hub, broker: MemoryBroker, monkeypatch
) -> None:
    def down(*args, **kwargs):
        raise BrokerUnavailable("redis is away")

    monkeypatch.setattr(broker, "subscribe", down)
    with pytest.raises(BrokerUnavailable):
        hub.join(FakeConn(), "r", "ann")
    assert hub.local_rooms() == {}
    monkeypatch.undo()
    monkeypatch.setattr(broker, "members", down)
    with pytest.raises(BrokerUnavailable):
        hub.join(FakeConn(), "r", "ann")
    assert hub.local_rooms() == {}
    monkeypatch.undo()
    assert broker.members("r") == []  # the presence join was undone


def test_concurrent_joins_of_a_new_room_wait_for_one_subscription() -> None:
    class SlowSubscribe(MemoryBroker):
        subscribes = 0

        def subscribe(self, room, callback):
            SlowSubscribe.subscribes += 1
            gevent.sleep(0.02)  # like a round trip to Redis
            return super().subscribe(room, callback)

    broker = SlowSubscribe(history=10)
    hub = Hub(broker, framer=identity)
    conns = [FakeConn() for _ in range(5)]
    members = gevent.joinall(
        [gevent.spawn(hub.join, c, "r", f"n{i}") for i, c in enumerate(conns)], raise_error=True
    )
    assert SlowSubscribe.subscribes == 1
    say(hub, members[0].value, "all of you")
    for c in conns:
        assert c.of_type("message")[-1]["text"] == "all of you"


def test_close_drops_subscriptions(hub: Hub, broker: MemoryBroker) -> None:
    hub.join(FakeConn(), "r1", "a")
    hub.join(FakeConn(), "r2", "b")
    hub.close()
    assert hub.local_rooms() == {}
    assert all(not r.subscribers for r in broker._rooms.values())
