"""Rooms across processes with a real redis-server: two server processes, and Publisher in a
third process that runs no server."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from tests.chat.conftest import new_room
from tests.rooms.clients import RoomMember, get_json, post_json, wait_members
from tests.rooms.test_rooms_server import ROOMS_ENV
from tests.support.redis_server import running_redis
from tests.support.servers import PYTHON, ROOT, ServerProcess, running_server
from tests.support.userapp import clean_env
from wsapp import BrokerUnavailable, OutcomeUnknown, Publisher
from wsapp.chat.broker.redis.keys import Keys

# (serving mode, app) of the two servers: each mode and each kind of app once
SETUPS = [("serve", "tests.rooms.own_app:app"), ("gunicorn", "tests.rooms.plain_app:app")]

PUBLISH_SCRIPT = """
import json, sys
from wsapp import Publisher
url, room, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Publisher(url) as publisher:
    reached = [publisher.emit(room, "tick", {"i": i}) for i in range(count)]
    members = [m.id for m in publisher.members(room)]
print(json.dumps({"reached": reached, "members": members}))
"""


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as server:
        yield server.url


@pytest.fixture(scope="module", params=SETUPS, ids=lambda s: s[0])
def servers(request, redis_url) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    mode, app = request.param
    env = ROOMS_ENV | {"WSAPP_REDIS_URL": redis_url}
    with running_server(mode, env=env, app=app) as a, running_server(mode, env=env, app=app) as b:
        yield a, b


def run_publisher(redis_url: str, room: str, count: int) -> dict:
    """Publisher in a process of its own (no server, no WSAPP_* but what it is given)."""
    done = subprocess.run(
        [PYTHON, "-c", PUBLISH_SCRIPT, redis_url, room, str(count)],
        cwd=ROOT, env=clean_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_publisher_in_a_third_process_reaches_members_on_both_servers_exactly_once(
    servers, redis_url
) -> None:
    a_srv, b_srv = servers
    room = new_room("pub")
    with RoomMember(a_srv, f"/ws/room/{room}") as a1, \
            RoomMember(a_srv, f"/ws/served/{room}") as a2, \
            RoomMember(b_srv, f"/ws/room/{room}") as b1:
        wait_members(a_srv, room, [a1.id, a2.id, b1.id])
        result = run_publisher(redis_url, room, 20)
        assert result["reached"] == [2] * 20  # both server processes, each event
        assert sorted(result["members"]) == sorted([a1.id, a2.id, b1.id])
        for member in (a1, a2, b1):
            got = member.events(20)
            assert got == [
                {"type": "event", "event": "tick", "room": room, "data": {"i": i}}
                for i in range(20)
            ]
            member.nothing_within(0.3)  # exactly once


def test_members_and_leave_on_close_across_processes(servers) -> None:
    a_srv, b_srv = servers
    room = new_room("across")
    a1 = RoomMember(a_srv, f"/ws/room/{room}?name=ann")
    b1 = RoomMember(b_srv, f"/ws/room/{room}?name=bob")
    try:
        for srv in (a_srv, b_srv):
            wait_members(srv, room, [a1.id, b1.id])
        listed = get_json(a_srv, f"/members/{room}")["members"]
        assert listed == [{"id": a1.id, "name": "ann"}, {"id": b1.id, "name": "bob"}]  # join order
        b1.close()
        wait_members(a_srv, room, [a1.id])
        status, _ = post_json(b_srv, f"/push/{room}", {"event": "from-b", "data": [1]})
        assert status == 200
        assert a1.next() == {"type": "event", "event": "from-b", "room": room, "data": [1]}
    finally:
        a1.close()
        b1.close()


def test_one_client_addressed_by_its_id_from_another_process(servers, redis_url) -> None:
    a_srv, b_srv = servers
    room = new_room("solo")
    with RoomMember(a_srv, f"/ws/room/{room}") as a1, RoomMember(a_srv, f"/ws/room/{room}") as a2:
        status, _ = post_json(b_srv, f"/push/{a1.id}", {"event": "for-you", "data": None})
        assert status == 200
        assert a1.next()["event"] == "for-you"
        assert Publisher(redis_url).emit(a2.id, "for-a2", {"n": 2}) == 1
        assert a2.next() == {"type": "event", "event": "for-a2", "room": a2.id, "data": {"n": 2}}
        a1.nothing_within(0.3)


def test_a_cli_command_of_the_app_emits_through_redis(servers, redis_url) -> None:
    a_srv, _ = servers
    room = new_room("cli")
    with RoomMember(a_srv, f"/ws/room/{room}") as a1:
        done = subprocess.run(
            [PYTHON, "-m", "flask", "--app", "tests.rooms.plain_app:app", "emit", room, "from-cli",
             '{"ok": true}'],
            cwd=ROOT, env=clean_env(PYTHONPATH=str(ROOT), WSAPP_REDIS_URL=redis_url),
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        expected = {"type": "event", "event": "from-cli", "room": room, "data": {"ok": True}}
        assert a1.next() == expected


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_a_planned_shutdown_leaves_presence_at_once(mode: str, redis_url: str) -> None:
    """SIGTERM: the sockets' end work (leaving Rooms rooms and chat rooms) is done before the
    process exits, so other processes do not list them until WSAPP_PRESENCE_TTL (30 s)."""
    room, chat_room = new_room("bye"), new_room("byechat")
    env = ROOMS_ENV | {"WSAPP_REDIS_URL": redis_url}
    publisher = Publisher(redis_url)
    with running_server(mode, env=env, app="tests.rooms.own_app:app") as srv:
        members = [RoomMember(srv, f"/ws/room/{room}"), RoomMember(srv, f"/ws/served/{room}")]
        chat = connect(srv.url(f"/chat/{chat_room}?name=ann"), open_timeout=10, legacy=True)
        assert json.loads(chat.recv(timeout=5))["type"] == "hello"
        assert len(publisher.members(room)) == 2 and len(publisher.members(chat_room)) == 1
        srv.signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=20) == 0
        log = srv.log_text()
        assert "closed 3 WebSocket(s) with 1001" in log and "Traceback" not in log, log[-3000:]
    assert publisher.members(room) == [] and publisher.members(chat_room) == []
    for client in (*members, chat):
        client.close()


def test_publisher_never_lies_when_redis_stalls_or_is_down() -> None:
    with running_redis() as server:
        publisher = Publisher(server.url, timeout=0.3)
        listener = server.client().pubsub()
        room = new_room("stall")
        listener.subscribe(Keys().channel(room))
        assert listener.get_message(timeout=2)["type"] == "subscribe"
        assert publisher.emit(room, "before", 1) == 1
        assert json.loads(listener.get_message(timeout=2)["data"])["e"] == "before"
        server.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(OutcomeUnknown):
                publisher.emit(room, "during", 2)
            time.sleep(0.5)  # past the event's deadline on Redis's clock
        finally:
            server.proc.send_signal(signal.SIGCONT)
        late = listener.get_message(timeout=1)
        assert late is None, f"an event reported as unknown was delivered late: {late}"
        publisher.close()  # its connection still waits for the stalled reply
        assert publisher.emit(room, "after", 3) == 1
        assert json.loads(listener.get_message(timeout=2)["data"])["e"] == "after"
        server.stop()
        with pytest.raises(BrokerUnavailable) as info:
            publisher.emit(room, "down", 4)
        assert not isinstance(info.value, OutcomeUnknown)
