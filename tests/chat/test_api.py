"""The HTTP API over real HTTP: /api/rooms, history since an id, POST with a Bearer token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.chat.clients import ChatClient
from tests.chat.conftest import API_TOKEN, CHAT_ENV, new_room

HISTORY = int(CHAT_ENV["WSAPP_HISTORY"])
MAX_CHAT = int(CHAT_ENV["WSAPP_MAX_CHAT_BYTES"])


def call(
    srv,
    method: str,
    path: str,
    body: object = None,
    token: str | None = None,
    raw: bytes | None = None,
):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(srv.http_url(path), data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.load(resp), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


def post(srv, room: str, body: object, token: str | None = API_TOKEN):
    return call(srv, "POST", f"/api/rooms/{room}/messages", body, token)


def test_post_reaches_members_and_history(chat_server) -> None:
    room = new_room("api")
    with ChatClient(chat_server, room, "ann") as a:
        status, body, _ = post(chat_server, room, {"name": "deploy-bot", "text": "v1.2 is out"})
        assert status == 201
        assert set(body) == {"id", "room", "name", "text", "ts"}
        assert (body["room"], body["name"], body["text"]) == (room, "deploy-bot", "v1.2 is out")
        event = a.next()
        assert event == {"type": "message", **body}
        status, second, _ = post(chat_server, room, {"text": "no name given"})
        assert status == 201 and second["name"] == "api"
        assert a.next()["id"] == second["id"]

        status, hist, _ = call(chat_server, "GET", f"/api/rooms/{room}/messages")
        assert status == 200
        assert [m["id"] for m in hist["messages"]] == [body["id"], second["id"]]
        assert hist["room"] == room
        status, since, _ = call(
            chat_server, "GET", f"/api/rooms/{room}/messages?since={body['id']}"
        )
        assert status == 200 and [m["id"] for m in since["messages"]] == [second["id"]]
        assert since["complete"] is True

        rooms = call(chat_server, "GET", "/api/rooms")[1]["rooms"]
        mine = [r for r in rooms if r["room"] == room]
        assert mine == [{"room": room, "members": 1, "last_id": second["id"]}]


def test_history_endpoint_limit_and_trim(chat_server) -> None:
    room = new_room("apih")
    ids = [
        post(chat_server, room, {"name": "n", "text": f"t{i}"})[1]["id"] for i in range(HISTORY + 5)
    ]
    status, body, _ = call(chat_server, "GET", f"/api/rooms/{room}/messages")
    assert [m["id"] for m in body["messages"]] == ids[-HISTORY:]
    body = call(chat_server, "GET", f"/api/rooms/{room}/messages?limit=3")[1]
    assert [m["id"] for m in body["messages"]] == ids[-3:]
    body = call(chat_server, "GET", f"/api/rooms/{room}/messages?since={ids[0]}")[1]
    assert body["complete"] is False  # ids[1..4] were trimmed
    assert [m["id"] for m in body["messages"]] == ids[5:]
    assert call(chat_server, "GET", f"/api/rooms/{new_room()}/messages")[1]["messages"] == []


def test_post_auth(chat_server) -> None:
    room = new_room("auth")
    status, body, headers = post(chat_server, room, {"name": "x", "text": "y"}, token=None)
    assert status == 401 and body["error"] == "unauthorized"
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert post(chat_server, room, {"name": "x", "text": "y"}, token="wrong")[0] == 401
    assert post(chat_server, room, {"name": "x", "text": "y"}, token=API_TOKEN + "x")[0] == 401
    req = urllib.request.Request(
        chat_server.http_url(f"/api/rooms/{room}/messages"), data=b"{}", method="POST"
    )
    req.add_header("Authorization", f"Basic {API_TOKEN}")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("Basic auth accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    assert call(chat_server, "GET", f"/api/rooms/{room}/messages")[1]["messages"] == []


def test_post_disabled_without_a_token(serve_server) -> None:
    """The default configuration has no WSAPP_API_TOKEN: POST is off, GET still works."""
    status, body, _ = post(serve_server, "lobby", {"name": "x", "text": "y"}, token="anything")
    assert status == 403 and body["error"] == "disabled"
    assert post(serve_server, "lobby", {"name": "x", "text": "y"}, token="")[0] == 403
    assert call(serve_server, "GET", "/api/rooms")[0] == 200


def test_post_validation(chat_server) -> None:
    room = new_room("val")
    cases = [
        ({"name": "x", "text": ""}, 400, "empty_message"),
        ({"name": "x"}, 400, "empty_message"),
        ({"name": "x", "text": 5}, 400, "empty_message"),
        ({"name": "x" * 33, "text": "t"}, 400, "invalid_name"),
        ({"name": "bad\nname", "text": "t"}, 400, "invalid_name"),
        ({"name": 7, "text": "t"}, 400, "invalid_name"),
        ({"name": "x", "text": "é" * (MAX_CHAT // 2) + "x"}, 413, "message_too_large"),
        (["not", "an", "object"], 400, "invalid_body"),
    ]
    for body, status, code in cases:
        got = post(chat_server, room, body)
        assert (got[0], got[1]["error"]) == (status, code), (
            body if len(str(body)) < 80 else "big",
            got[:2],
        )
    got = call(
        chat_server, "POST", f"/api/rooms/{room}/messages", raw=b"{not json", token=API_TOKEN
    )
    assert (got[0], got[1]["error"]) == (400, "invalid_body")
    assert post(chat_server, "bad%20room", {"name": "x", "text": "t"})[0] == 400
    assert post(chat_server, room, {"name": "x", "text": "z" * MAX_CHAT})[0] == 201
    assert call(chat_server, "GET", "/api/rooms/bad%20room/messages")[0] == 400
    assert call(chat_server, "GET", f"/api/rooms/{room}/messages?since=nope")[0] == 400
    assert call(chat_server, "GET", f"/api/rooms/{room}/messages?limit=0")[0] == 400
    assert call(chat_server, "GET", f"/api/rooms/{room}/messages?limit=x")[0] == 400
