"""Named events in chat rooms over real sockets: clients' typed events relayed and acked,
not kept, rate-limited; server emits and POST /api/rooms/<room>/events reaching chat
members; white-space-only messages refused (server and CLI)."""

from __future__ import annotations

import io
import re
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from tests.chat.clients import ChatClient
from tests.chat.conftest import API_TOKEN, CHAT_ENV, new_room
from tests.rooms.clients import RoomMember, get_json, post_json
from tests.support.servers import ServerProcess, running_server
from wsapp.cli.interactive import run_client

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
MAX_CHAT = int(CHAT_ENV["WSAPP_MAX_CHAT_BYTES"])


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def chat_srv(request) -> Iterator[ServerProcess]:
    """wsapp's own app with chat and the rooms test routes (tests/rooms/own_app.py)."""
    with running_server(request.param, env=CHAT_ENV, app="tests.rooms.own_app:app") as srv:
        yield srv


def test_typed_events_are_relayed_with_the_sender_and_acked(chat_srv) -> None:
    room = new_room("typing")
    with ChatClient(chat_srv, room, "ann") as ann, ChatClient(chat_srv, room, "bob") as bob, \
            ChatClient(chat_srv, room, "cy") as cy:
        ann.next_of("join")
        ann.next_of("join")
        bob.next_of("join")
        ann.send_json({"type": "event", "event": "typing", "data": {"typing": True}, "ref": "t-1"})
        assert ann.next() == {"type": "ack", "ref": "t-1", "event": "typing"}
        relayed = {"type": "event", "event": "typing", "room": room,
                   "sender": {"id": ann.id, "name": "ann"}, "data": {"typing": True}}
        assert bob.next() == relayed
        assert cy.next() == relayed
        ann.send_json({"type": "event", "event": "typing", "data": {"typing": False}})  # no ref
        assert bob.next()["data"] == {"typing": False}
        ann.say("done typing", ref="m-1")
        first = ann.next()  # the sender never gets its own event back: next is its message
        assert {first["type"], ann.next()["type"]} == {"ack", "message"}


def test_events_are_not_kept_in_history(chat_srv) -> None:
    room = new_room("nokeep")
    with ChatClient(chat_srv, room, "ann") as ann:
        ann.say("kept", ref="k")
        ann.next_of("ack")
        ann.send_json({"type": "event", "event": "typing", "data": 1, "ref": "e"})
        assert ann.next_of("ack")["ref"] == "e"
        with ChatClient(chat_srv, room, "late") as late:
            assert late.hello["history"] == 1
            assert late.next()["text"] == "kept"  # the replay, and no event
            late.nothing_within(0.3)
    history = get_json(chat_srv, f"/api/rooms/{room}/messages")["messages"]
    assert [m["text"] for m in history] == ["kept"]


def test_bad_events_get_error_events_and_the_connection_stays(chat_srv) -> None:
    room = new_room("badev")
    with ChatClient(chat_srv, room, "ann") as ann, ChatClient(chat_srv, room, "bob") as bob:
        ann.next_of("join")
        ann.send_json({"type": "event", "event": "no spaces", "ref": "b1"})
        err = ann.next()
        assert (err["type"], err["code"], err["ref"]) == ("error", "invalid_event", "b1")
        assert "event name" in err["reason"]
        ann.send_json({"type": "event", "event": "big", "data": "x" * MAX_CHAT, "ref": "b2"})
        err = ann.next()
        assert (err["code"], err["ref"]) == ("message_too_large", "b2")
        bob.nothing_within(0.3)
        ann.send_json({"type": "event", "event": "fits", "data": "x" * (MAX_CHAT - 2)})
        assert bob.next()["event"] == "fits"


def test_white_space_only_messages_are_refused(chat_srv) -> None:
    room = new_room("blank")
    with ChatClient(chat_srv, room, "ann") as ann, ChatClient(chat_srv, room, "bob") as bob:
        ann.next_of("join")
        for blank in (" ", "\n\t ", "\u00a0"):
            ann.say(blank, ref="w")
            err = ann.next()
            assert (err["code"], err["ref"]) == ("empty_message", "w")
            ann.ws.send(blank)  # plain text too
            assert ann.next()["code"] == "empty_message"
        bob.nothing_within(0.3)
        status, body = post_json(chat_srv, f"/api/rooms/{room}/messages", {"text": "  "}, AUTH)
        assert (status, body["error"]) == (400, "empty_message")


def test_the_cli_does_not_send_white_space_only_lines(chat_srv) -> None:
    room = new_room("cliblank")
    with ChatClient(chat_srv, room, "ann") as ann:
        out, err = io.StringIO(), io.StringIO()
        lines = io.StringIO("   \n\t\nreal\n")
        status = run_client(chat_srv.url(f"/chat/{room}"), name="cli", stdin=lines,
                            stdout=out, stderr=err)
        assert status == 0, err.getvalue()
        assert ann.next_of("message")["text"] == "real"
        assert "empty_message" not in out.getvalue() + err.getvalue()


def test_server_code_and_the_api_emit_to_chat_members_and_room_members(chat_srv) -> None:
    room = new_room("mixed")
    with ChatClient(chat_srv, room, "ann") as ann, \
            RoomMember(chat_srv, f"/ws/room/{room}") as route:
        ann.next_of("join")  # the route's socket is a member of the room too (presence)
        listed = get_json(chat_srv, f"/members/{room}")["members"]
        assert [m["id"] for m in listed] == [ann.id, route.id]
        status, body = post_json(chat_srv, f"/push/{room}", {"event": "deploy", "data": {"v": 2}})
        assert status == 200, body
        expected = {"type": "event", "event": "deploy", "room": room, "data": {"v": 2}}
        assert ann.next() == expected and route.next() == expected
        ann.say("a chat message")  # chat messages and presence are for chat members only
        ann.send_json({"type": "event", "event": "typing", "data": {"typing": True}})
        got = route.next()
        assert got["event"] == "typing" and got["sender"] == {"id": ann.id, "name": "ann"}
        status, body = post_json(chat_srv, f"/api/rooms/{room}/events",
                                 {"event": "from-api", "data": [1, "two"]}, AUTH)
        assert (status, body) == (200, {"room": room, "event": "from-api"})
        via_api = {"type": "event", "event": "from-api", "room": room, "data": [1, "two"]}
        assert ann.next_of("event") == via_api
        assert route.next() == via_api
        route.nothing_within(0.3)


@pytest.mark.parametrize(
    ("room", "body", "headers", "status", "code"),
    [
        ("ok", {"event": "e"}, {}, 401, "unauthorized"),
        ("ok", {"event": "e"}, {"Authorization": "Bearer wrong"}, 401, "unauthorized"),
        ("bad room!", {"event": "e"}, AUTH, 400, "invalid_room"),
        ("ok", ["not", "an", "object"], AUTH, 400, "invalid_body"),
        ("ok", {"event": "not valid"}, AUTH, 400, "invalid_event"),
        ("ok", {"data": 1}, AUTH, 400, "invalid_event"),
        ("ok", {"event": "e", "data": "x" * 70_000}, AUTH, 413, "message_too_large"),
    ],
)
def test_api_event_errors(chat_srv, room, body, headers, status, code) -> None:
    path = f"/api/rooms/{room.replace(' ', '%20')}/events"
    got, answer = post_json(chat_srv, path, body, headers)
    assert (got, answer["error"]) == (status, code), answer
    assert answer["reason"]


def test_api_events_are_disabled_without_a_token() -> None:
    with running_server("serve", env={"WSAPP_API_TOKEN": ""}) as srv:
        status, body = post_json(srv, "/api/rooms/lobby/events", {"event": "e"}, AUTH)
        assert (status, body["error"]) == (403, "disabled")


def test_events_are_rate_limited_like_messages() -> None:
    env = CHAT_ENV | {"WSAPP_RATE_LIMIT": "5", "WSAPP_RATE_BURST": "5"}
    with running_server("serve", env=env) as srv, ChatClient(srv, new_room("rate"), "ann") as ann:
        for i in range(20):
            try:
                ann.send_json({"type": "event", "event": "typing", "data": i})
            except ConnectionClosed:
                break
        assert ann.close_code() == 1008
        srv.wait_for_log("reason='rate limit exceeded'")


def test_events_are_counted_in_metrics(chat_srv) -> None:
    def counts() -> dict[str, float]:
        with urllib.request.urlopen(chat_srv.http_url("/metrics"), timeout=10) as answer:
            text = answer.read().decode()
        found = re.findall(r'^wsapp_events_total\{origin="(\w+)"\} ([0-9.e+]+)$', text, re.M)
        return {origin: float(value) for origin, value in found}

    before = counts()
    assert set(before) == {"server", "client", "api"}
    room = new_room("metrics")
    with ChatClient(chat_srv, room, "ann") as ann:
        ann.send_json({"type": "event", "event": "typing", "ref": "m"})
        ann.next_of("ack")
        assert post_json(chat_srv, f"/push/{room}", {"event": "e"})[0] == 200
        assert post_json(chat_srv, f"/api/rooms/{room}/events", {"event": "e"}, AUTH)[0] == 200
    after = counts()
    assert {k: after[k] - before[k] for k in after} == {"server": 1, "client": 1, "api": 1}
