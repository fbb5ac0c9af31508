"""The HTTP API asks for the right to join a room before it shows the room (issue 13, item 1).

With WSAPP_REQUIRE_TOKEN=1 a room's history over HTTP needs a chat token for that room
(``Authorization: Bearer`` or ``?token=``) or the API token, and ``GET /api/rooms`` lists
only the rooms the credential admits. Real server, real HTTP.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.servers import ServerProcess, running_server

from .conftest import token_for

API_TOKEN = "api-access-test-token"
ROOMS = ("vault-a", "vault-b")


def call(srv: ServerProcess, path: str, bearer: str | None = None, method: str = "GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.http_url(path), data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if bearer is not None:
        req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.load(resp), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


@pytest.fixture(scope="module")
def token_server() -> Iterator[ServerProcess]:
    env = {
        "WSAPP_SECRET": "api-access-secret",
        "WSAPP_REQUIRE_TOKEN": "1",
        "WSAPP_API_TOKEN": API_TOKEN,
        "WSAPP_RATE_LIMIT": "0",
    }
    with running_server("serve", env=env) as srv:
        for room in ROOMS:
            status, _, _ = call(srv, f"/api/rooms/{room}/messages", API_TOKEN, "POST",
                                {"name": "ops", "text": f"the {room} combination is 1234"})
            assert status == 201
        yield srv


def _refused(got, status: int, code: str) -> None:
    assert got[0] == status, got
    assert got[1]["error"] == code and "\n" not in got[1]["reason"] and got[1]["reason"], got
    assert "messages" not in got[1] and "rooms" not in got[1]


def test_history_needs_a_credential(token_server):
    got = call(token_server, "/api/rooms/vault-a/messages")
    _refused(got, 401, "unauthorized")
    assert got[2]["WWW-Authenticate"].startswith("Bearer")
    assert "token required" in got[1]["reason"]


@pytest.mark.parametrize("bad", ["not-a-token", "{expired}", "{forged}", API_TOKEN + "x"])
def test_history_with_an_invalid_credential_is_401(token_server, bad):
    from wsapp.settings import Settings
    from wsapp.tokens import issue_token

    bad = bad.format(
        expired=token_for(token_server, ["vault-a"], "eve", ttl=10, now=time.time() - 60),
        forged=issue_token(Settings(secret="not-the-secret"), rooms=["*"], name="eve", ttl=60),
    )
    got = call(token_server, "/api/rooms/vault-a/messages", bad)
    _refused(got, 401, "unauthorized")
    assert 'error="invalid_token"' in got[2]["WWW-Authenticate"]
    _refused(call(token_server, f"/api/rooms/vault-a/messages?token={bad}"), 401, "unauthorized")


def test_a_token_for_another_room_is_403(token_server):
    token = token_for(token_server, ["vault-b"], "bob")
    _refused(call(token_server, "/api/rooms/vault-a/messages", token), 403, "forbidden")
    _refused(call(token_server, f"/api/rooms/vault-a/messages?token={token}"), 403, "forbidden")


def test_a_room_token_reads_its_room_by_header_or_query(token_server):
    token = token_for(token_server, ["vault-a"], "alice")
    for got in (call(token_server, "/api/rooms/vault-a/messages", token),
                call(token_server, f"/api/rooms/vault-a/messages?token={token}&limit=5")):
        assert got[0] == 200, got
        assert [m["text"] for m in got[1]["messages"]] == ["the vault-a combination is 1234"]


def test_the_api_token_reads_every_room(token_server):
    for room in ROOMS:
        got = call(token_server, f"/api/rooms/{room}/messages", API_TOKEN)
        assert got[0] == 200 and len(got[1]["messages"]) == 1


def _listed(srv: ServerProcess, bearer: str | None = None, query: str = "") -> set[str]:
    got = call(srv, f"/api/rooms{query}", bearer)
    assert got[0] == 200, got
    return {r["room"] for r in got[1]["rooms"]}


def test_room_list_shows_only_the_rooms_the_credential_admits(token_server):
    _refused(call(token_server, "/api/rooms"), 401, "unauthorized")
    _refused(call(token_server, "/api/rooms", "junk"), 401, "unauthorized")
    only_a = token_for(token_server, ["vault-a", "elsewhere"], "alice")
    assert _listed(token_server, only_a) == {"vault-a"}
    assert _listed(token_server, query=f"?token={only_a}") == {"vault-a"}
    assert _listed(token_server, token_for(token_server, ["nothing-here"], "n")) == set()
    assert _listed(token_server, token_for(token_server, ["*"], "ops")) >= set(ROOMS)
    assert _listed(token_server, API_TOKEN) >= set(ROOMS)


def test_posting_still_needs_the_api_token(token_server):
    token = token_for(token_server, ["vault-a"], "alice")
    got = call(token_server, "/api/rooms/vault-a/messages", token, "POST", {"text": "hi"})
    assert got[0] == 401
