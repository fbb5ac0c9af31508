"""Rooms from plain `websocket=True` views, over real sockets, in both serving modes, on
wsapp's own app (the chat hub) and on a bare Flask app (a hub made on first use)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.chat.conftest import new_room
from tests.rooms.clients import (
    RoomMember,
    StalledMember,
    get_json,
    members_of,
    post_json,
    wait_members,
)
from tests.support.servers import ServerProcess, running_server

ROOMS_ENV = {
    "WSAPP_SEND_QUEUE_BYTES": "65536",
    "WSAPP_SEND_BUFFER_BYTES": "16384",
    "WSAPP_MAX_CONN_PER_IP": "0",
    "WSAPP_RATE_LIMIT": "0",
    "WSAPP_CLOSE_TIMEOUT": "0.5",
    "WSAPP_PING_INTERVAL": "1",
    "WSAPP_PING_TIMEOUT": "1",
}
APPS = {"own": "tests.rooms.own_app:app", "plain": "tests.rooms.plain_app:app"}


@pytest.fixture(scope="module", params=[(m, a) for m in ("serve", "gunicorn") for a in APPS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def srv(request) -> Iterator[ServerProcess]:
    mode, app = request.param
    with running_server(mode, env=ROOMS_ENV, app=APPS[app]) as server:
        yield server


def push(srv: ServerProcess, room: str, event: str = "push", data: object = None) -> float:
    status, body = post_json(srv, f"/push/{room}", {"event": event, "data": data})
    assert status == 200, body
    return body["t"]


def test_a_route_in_a_room_gets_events_pushed_from_a_plain_http_view(srv) -> None:
    room, other = new_room("news"), new_room("other")
    with RoomMember(srv, f"/ws/room/{room}") as a, RoomMember(srv, f"/ws/served/{room}") as b, \
            RoomMember(srv, f"/ws/room/{other}") as c:
        assert a.joined["rooms"] == [a.id, room]  # its personal room first
        push(srv, room, "push", {"data": "test message!"})
        data = {"data": "test message!"}
        expected = {"type": "event", "event": "push", "room": room, "data": data}
        assert a.next() == expected
        assert b.next() == expected  # a socket served by its reader (left its request)
        c.nothing_within(0.3)  # another room


def test_a_background_greenlet_reaches_its_client_within_50_ms_of_each_emit(srv) -> None:
    with RoomMember(srv, f"/ws/room/{new_room('job')}") as a:
        a.command(cmd="progress", steps=30, every=0.1)  # 3 s, one event every 100 ms
        lags, steps = [], []
        started = time.monotonic()
        while True:
            event = a.next(timeout=5)
            arrived = time.time()
            if event["event"] == "done":
                break
            assert event["room"] == a.id  # sent to its personal room
            steps.append(event["data"]["step"])
            lags.append(arrived - event["data"]["t"])
        assert steps == list(range(30))
        assert max(lags) < 0.05, f"slowest event {max(lags) * 1000:.1f} ms after its emit"
        assert 2.5 < time.monotonic() - started < 6.0


def test_members_and_leave_on_close(srv) -> None:
    room = new_room("members")
    a = RoomMember(srv, f"/ws/room/{room}?name=ann")
    b = RoomMember(srv, f"/ws/served/{room}")
    c = RoomMember(srv, f"/ws/room/{room}")
    try:
        wait_members(srv, room, [a.id, b.id, c.id])
        names = {m["id"]: m["name"] for m in get_json(srv, f"/members/{room}")["members"]}
        assert names[a.id] == "ann" and names[b.id] == ""
        a.close()  # a close frame, view in the request
        wait_members(srv, room, [b.id, c.id])
        b.close()  # a socket served by its reader
        wait_members(srv, room, [c.id])
        push(srv, room, "after")
        assert c.next()["event"] == "after"
        c.ws.socket.close()  # TCP gone without a close frame
        wait_members(srv, room, [])
    finally:
        for m in (a, b, c):
            m.close()
    assert members_of(srv, a.id) == []  # personal rooms have no presence


def test_join_leave_and_personal_rooms(srv) -> None:
    room, extra = new_room("base"), new_room("extra")
    with RoomMember(srv, f"/ws/room/{room}") as a, RoomMember(srv, f"/ws/room/{room}") as b:
        assert a.command(cmd="join", room=extra)["rooms"] == [a.id, room, extra]
        assert a.command(cmd="join", room=extra)["rooms"] == [a.id, room, extra]  # idempotent
        push(srv, extra, "x")
        assert a.next()["room"] == extra
        b.nothing_within(0.2)
        assert a.command(cmd="leave", room=extra)["rooms"] == [a.id, room]
        push(srv, extra, "gone")
        a.nothing_within(0.3)
        push(srv, b.id, "just-b", {"to": "b"})  # one client, by its connection id
        assert b.next() == {"type": "event", "event": "just-b", "room": b.id, "data": {"to": "b"}}
        a.nothing_within(0.2)


def test_a_member_that_does_not_read_is_cut_by_the_byte_budget_and_nobody_waits(srv) -> None:
    room = new_room("slow")
    stalled = StalledMember(srv, room)
    try:
        with RoomMember(srv, f"/ws/room/{room}") as reader:
            wait_members(srv, room, [stalled.id, reader.id])
            blob = "x" * 30_000  # WSAPP_SEND_QUEUE_BYTES is 64 KiB: a handful of these
            for i in range(40):
                push(srv, room, "big", {"i": i, "blob": blob})
                event = reader.next()
                assert event["data"]["i"] == i
            assert stalled.closed_by_server(timeout=5)
            wait_members(srv, room, [reader.id])  # and it left the room
        srv.wait_for_log(f"slow consumer: /ws/room/{room} send queue over 65536 bytes")
    finally:
        stalled.close()
