"""Rooms are freed (issue 13 item 2): the memory broker's history budget in bytes, idle-room
eviction and TTL, first as broker logic with a fake clock, then against real server
processes (a flood of 200 rooms x 100 messages x 16 KiB; a room TTL seen over HTTP).

The TTL of both brokers is also part of the broker contract (test_broker_contract.py)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.chat.conftest import API_TOKEN, new_room
from tests.support.servers import ServerProcess, running_server
from wsapp.chat.broker import Member, MemoryBroker
from wsapp.chat.broker.memory import MESSAGE_OVERHEAD, ROOM_OVERHEAD, message_bytes

KiB = 1024
MiB = 1024 * KiB


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def listed(broker: MemoryBroker) -> list[str]:
    return [r.room for r in broker.rooms()]


# ---- the budget, as broker logic ---------------------------------------------------------


def test_message_bytes_counts_utf8_or_the_wider_in_memory_size() -> None:
    assert message_bytes("ann", "x" * 16384) == 16384 + 3 + MESSAGE_OVERHEAD
    assert message_bytes("zoë", "é" * 10) == 20 + 4 + MESSAGE_OVERHEAD  # 2 UTF-8 bytes each
    # one emoji makes CPython store the whole text 4 bytes per character
    assert message_bytes("a", "a" * 1000 + "🎉") >= 4 * 1001 + MESSAGE_OVERHEAD
    with_ref = message_bytes("ann", "hi", sender="conn-1", ref="r1")
    assert with_ref > message_bytes("ann", "hi")


def room_cost(messages: int, text: int, name: str = "ann") -> int:
    return messages * message_bytes(name, "x" * text) + ROOM_OVERHEAD


def test_over_budget_idle_rooms_are_forgotten_least_recently_used_first() -> None:
    per_room = room_cost(10, 1000)
    clock = FakeClock()
    broker = MemoryBroker(history=100, history_bytes=5 * per_room, monotonic=clock)
    rooms = [f"r{i:02d}" for i in range(12)]
    for i, room in enumerate(rooms):
        clock.now += 1
        for _ in range(10):
            broker.publish(room, "ann", "x" * 1000)
            assert broker.charged <= broker.history_bytes
        if i == 6:
            clock.now += 1
            broker.publish(rooms[3], "ann", "x" * 1000)  # r03 used again: now recent
    assert broker.charged <= broker.history_bytes
    # r03 was used after r06 but before r07: the five most recently used rooms fit
    assert listed(broker) == ["r07", "r08", "r09", "r10", "r11"]
    assert broker.history("r00") == [] and broker.history("r03") == []
    assert broker.rooms_forgotten >= 7


def test_rooms_in_use_keep_their_history_and_are_trimmed_only_when_nothing_idle_is_left() -> None:
    per_room = room_cost(10, 1000)
    broker = MemoryBroker(history=100, history_bytes=4 * per_room)
    busy = new_room("busy")
    broker.subscribe(busy, lambda event: None)
    busy_msgs = [broker.publish(busy, "ann", "x" * 1000) for _ in range(10)]
    for i in range(20):  # idle rooms pass through the budget
        for _ in range(10):
            broker.publish(f"idle-{i}", "bob", "x" * 1000)
    assert broker.history(busy) == busy_msgs  # never touched
    assert broker.charged <= broker.history_bytes

    # every room in use and over budget: the least recently published room loses its
    # oldest messages, and says so to a resume (covers False)
    others = [new_room("used") for _ in range(4)]
    for room in others:
        broker.subscribe(room, lambda event: None)
        for _ in range(10):
            broker.publish(room, "cy", "x" * 1000)
            assert broker.charged <= broker.history_bytes
    assert busy in listed(broker)
    trimmed = broker.history(busy)
    assert len(trimmed) < 10
    assert trimmed == busy_msgs[len(busy_msgs) - len(trimmed) :]
    assert not broker.covers(busy, busy_msgs[0].id)
    assert broker.covers(busy, busy_msgs[-1].id)


def test_a_room_forgotten_and_used_again_continues_its_ids_and_reports_the_gap() -> None:
    broker = MemoryBroker(history=10, history_bytes=room_cost(10, 1000))
    old = [broker.publish("a", "ann", "x" * 1000) for _ in range(10)]
    broker.publish("b", "bob", "x" * 1000)  # over budget: "a" is idle and older
    assert "a" not in listed(broker)
    assert not broker.covers("a", old[0].id)  # the messages after it are gone
    assert broker.covers("a", old[-1].id)  # nothing after the newest one was lost
    new = broker.publish("a", "ann", "back")
    assert broker.id_key(new.id) > broker.id_key(old[-1].id)
    assert broker.history("a", since=old[-1].id) == [new]


def test_the_ttl_sweep_forgets_idle_rooms_only_with_bounded_work_per_call() -> None:
    clock = FakeClock()
    broker = MemoryBroker(history=10, room_ttl=60, monotonic=clock)
    for i in range(2500):
        broker.publish(f"idle-{i}", "ann", "hi")
    broker.join("present", Member("m-1", "ann"))
    broker.publish("present", "ann", "still here")
    clock.now += 59
    assert broker.sweep() == 0
    broker.publish("idle-7", "ann", "used again")  # refreshed
    clock.now += 2
    assert [broker.sweep(limit=1000) for _ in range(4)] == [1000, 1000, 499, 0]
    assert listed(broker) == ["idle-7", "present"]
    clock.now += 3600
    broker.sweep()
    assert listed(broker) == ["present"]
    broker.leave("present", "m-1")
    clock.now += 61
    broker.sweep()
    assert listed(broker) == []
    assert broker.charged == 0


def test_ttl_zero_never_sweeps() -> None:
    clock = FakeClock()
    broker = MemoryBroker(history=10, room_ttl=0, monotonic=clock)
    broker.publish("r", "ann", "hi")
    clock.now += 10**9
    assert broker.sweep() == 0 and listed(broker) == ["r"]


# ---- real servers --------------------------------------------------------------------------


def http_json(srv: ServerProcess, path: str, body: object = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.http_url(path), data=data, method="POST" if data else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {API_TOKEN}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.load(resp)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KiB
    raise AssertionError("no VmRSS")


FLOOD_ROOMS, FLOOD_MESSAGES, FLOOD_TEXT = 200, 100, 16 * KiB
FLOOD_SOCKETS = 25  # each fills FLOOD_ROOMS / FLOOD_SOCKETS rooms, one after the other
BUDGET = 8 * MiB


async def flood_rooms(srv: ServerProcess, rooms: list[str], messages: int) -> None:
    """One socket, one room after the other: `messages` of 16 KiB, 8 in flight, then leave."""
    text = "x" * FLOOD_TEXT
    for room in rooms:
        async with connect(srv.url(f"/chat/{room}?name=flood"), max_size=None,
                           ping_interval=None, open_timeout=10) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            sent = received = 0
            while received < messages:
                while sent < messages and sent - received < 8:
                    await ws.send(text)
                    sent += 1
                event = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if event["type"] == "message":
                    received += 1
                else:
                    assert event["type"] in ("join", "leave"), event


async def flood(srv: ServerProcess, rooms: list[str], messages: int = FLOOD_MESSAGES) -> None:
    per = len(rooms) // FLOOD_SOCKETS
    await asyncio.gather(
        *(flood_rooms(srv, rooms[i * per : (i + 1) * per], messages) for i in range(FLOOD_SOCKETS))
    )


@pytest.mark.timeout(240)
def test_a_flood_of_200_rooms_stays_within_the_history_budget() -> None:
    env = {
        "WSAPP_HISTORY_BYTES": str(BUDGET),
        "WSAPP_HISTORY": str(FLOOD_MESSAGES),
        "WSAPP_RATE_LIMIT": "0",
        "WSAPP_API_TOKEN": API_TOKEN,
        "WSAPP_LOG_LEVEL": "WARNING",
    }
    with running_server("serve", env=env) as srv:
        warm = new_room("warm")
        # every code path once (imports, first allocations), far below the budget
        asyncio.run(flood(srv, [f"{warm}-{i}" for i in range(FLOOD_SOCKETS)], messages=4))
        time.sleep(0.5)
        before = rss_bytes(srv.proc.pid)
        prefix = new_room("flood")
        rooms = [f"{prefix}-{i:03d}" for i in range(FLOOD_ROOMS)]
        started = time.monotonic()
        asyncio.run(flood(srv, rooms))
        took = time.monotonic() - started
        time.sleep(1.0)
        after = rss_bytes(srv.proc.pid)
        status, body = http_json(srv, "/api/rooms")
        assert status == 200
        kept = [r["room"] for r in body["rooms"] if r["room"].startswith(prefix)]
        assert kept, "the newest rooms fit in the budget and are still listed"
        assert len(kept) < FLOOD_ROOMS // 4, kept
        stored = 0  # what the listed rooms still hold, as the budget counts it
        for room in kept:
            msgs = http_json(srv, f"/api/rooms/{room}/messages?limit={FLOOD_MESSAGES}")[1]
            stored += ROOM_OVERHEAD + sum(
                message_bytes(m["name"], m["text"]) for m in msgs["messages"]
            )
        assert stored <= BUDGET
        # evicted rooms are gone from the API too
        forgotten = rooms[0]
        assert forgotten not in kept
        status, hist = http_json(srv, f"/api/rooms/{forgotten}/messages")
        assert status == 200 and hist["messages"] == []
        growth = after - before
        print(f"flood: {took:.1f}s, RSS {before / MiB:.1f} -> {after / MiB:.1f} MiB, "
              f"{len(kept)} rooms kept holding {stored / MiB:.1f} MiB")
        assert growth <= BUDGET + 32 * MiB, f"RSS grew {growth / MiB:.1f} MiB"
        assert srv.alive()


def test_an_idle_room_disappears_from_the_api_after_the_room_ttl() -> None:
    env = {"WSAPP_ROOM_TTL": "1", "WSAPP_API_TOKEN": API_TOKEN, "WSAPP_LOG_LEVEL": "WARNING"}
    with running_server("serve", env=env) as srv:
        idle, present = new_room("idle"), new_room("present")
        status, posted = http_json(srv, f"/api/rooms/{idle}/messages", {"text": "soon gone"})
        assert status == 201
        assert http_json(srv, f"/api/rooms/{idle}/messages", {"text": "gone too"})[0] == 201
        posted_at = time.monotonic()

        async def member_stays() -> list[str]:
            async with connect(srv.url(f"/chat/{present}?name=ann"), ping_interval=None) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
                await ws.send("still here")
                assert json.loads(await ws.recv())["text"] == "still here"
                seen: list[str] = []
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    rooms = [r["room"] for r in http_json(srv, "/api/rooms")[1]["rooms"]]
                    seen = rooms
                    if idle not in rooms:
                        break
                    await asyncio.sleep(0.05)
                return seen

        rooms_then = asyncio.run(member_stays())
        gone_after = time.monotonic() - posted_at
        assert idle not in rooms_then, f"{idle} still listed after {gone_after:.1f}s"
        assert gone_after >= 0.95
        assert present in rooms_then  # a room with a member is kept
        status, hist = http_json(srv, f"/api/rooms/{idle}/messages?since={posted['id']}")
        assert hist["messages"] == [] and hist["complete"] is False
