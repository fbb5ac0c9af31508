"""Hostile chat input against a real server (issue 13 items 7 and 9): deep JSON, control and
bidi characters, dot rooms, tokens that expire on an open socket.

Every case answers with the documented error event or close code, keeps the connection
(or the server) working for the next message, and logs no traceback.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed

from tests.chat.clients import ChatClient
from tests.chat.conftest import CHAT_ENV, new_room
from tests.support.rawws import handshake_request, http_exchange
from tests.support.servers import running_server
from wsapp.settings import Settings
from wsapp.tokens import issue_token

pytestmark = pytest.mark.timeout(60)

MAX_CHAT = int(CHAT_ENV["WSAPP_MAX_CHAT_BYTES"])


def _error_then_still_working(client: ChatClient, frame: str, code: str) -> dict:
    """Send `frame`: the sender gets an `error` event with `code`, then a normal message
    still goes through on the same connection."""
    client.ws.send(frame)
    event = client.next()
    assert event["type"] == "error" and event["code"] == code, event
    client.say("still here", ref="after")
    assert client.next_of("message")["text"] == "still here"
    return event


# ---- item 7: deeply nested JSON -----------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"message","text":' + "[" * 100_000,  # the reported case: RecursionError, 1011
        '{"a":' + "[" * 100_000,  # no "type" at all
        '{"type":"message","text":"x","pad":' + "[" * 40 + "]" * 40 + "}",  # valid JSON, 41 levels
        '{"a":' + "{" * 5_000,
    ],
    ids=["reported", "untyped", "valid-41-levels", "objects"],
)
def test_deep_json_is_invalid_message_and_the_connection_stays(
    chat_serve_server, frame: str
) -> None:
    srv = chat_serve_server
    with ChatClient(srv, new_room("deep"), "deep") as client:
        event = _error_then_still_working(client, frame, "invalid_message")
        assert "nested deeper than 32 levels" in event["reason"]
    time.sleep(0.2)
    log = srv.log_text()
    assert "Traceback" not in log and "RecursionError" not in log


def test_json_at_the_depth_limit_and_brackets_in_text_are_accepted(chat_serve_server) -> None:
    srv = chat_serve_server
    with ChatClient(srv, new_room("deep"), "deep") as client:
        # 32 levels: the object and 31 arrays.
        client.ws.send('{"type":"message","text":"flat enough","x":' + "[" * 31 + "]" * 31 + "}")
        assert client.next_of("message")["text"] == "flat enough"
        brackets = "[" * 5_000 + "{" * 5_000  # inside a string: no nesting at all
        client.say(brackets)
        assert client.next_of("message")["text"] == brackets


def test_frame_too_long_for_any_acceptable_text_is_refused_unparsed(chat_serve_server) -> None:
    srv = chat_serve_server
    with ChatClient(srv, new_room("long"), "long") as client:
        frame = '{"type":"message","text":"x","pad":"' + "p" * (7 * MAX_CHAT) + '"}'
        _error_then_still_working(client, frame, "message_too_large")
        # The largest text, every character escaped, is still parsed and accepted.
        text = "é" * (MAX_CHAT // 2)
        client.ws.send(json.dumps({"type": "message", "text": text}, ensure_ascii=True))
        assert client.next_of("message")["text"] == text


def test_plain_brackets_are_text(chat_serve_server) -> None:
    """Text that does not start with "{" is never parsed: too long is too long, short is text."""
    srv = chat_serve_server
    with ChatClient(srv, new_room("deep"), "deep") as client:
        _error_then_still_working(client, "[" * 100_000, "message_too_large")
        client.ws.send("[" * 1000)
        assert client.next_of("message")["text"] == "[" * 1000


# ---- item 9: room names, characters, tokens --------------------------------------------------


def _status(srv, path: str) -> int:
    return http_exchange(srv.host, srv.port, handshake_request(srv.host, srv.port, path)).status


def test_dot_segment_rooms_are_refused_400(chat_server) -> None:
    srv = chat_server
    for path in ("/chat/.", "/chat/..", "/chat/.?name=a", "/chat/..?name=a"):
        assert _status(srv, path) == 400, path
    resp = http_exchange(srv.host, srv.port, handshake_request(srv.host, srv.port, "/chat/.."))
    if srv.mode != "uwsgi":  # uWSGI resolves the dot segment itself: no route, a plain 400
        assert b"not . or .." in resp.body
    with urllib.request.urlopen(srv.http_url("/api/rooms/.../messages"), timeout=5) as ok:
        assert ok.status == 200  # three dots are an ordinary name
    try:
        urllib.request.urlopen(srv.http_url("/api/rooms/../messages"), timeout=5)
        raise AssertionError("GET /api/rooms/../messages accepted")
    except urllib.error.HTTPError as exc:
        # uWSGI resolves the dot segment first: /api/messages, which is no route (404)
        assert exc.code == (404 if srv.mode == "uwsgi" else 400)
    with ChatClient(srv, "...", "dots") as client:
        assert client.hello["room"] == "..."


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\x1b", "\r", "\x00", "\x9b", "\x7f"])
def test_control_and_bidi_characters_in_text_are_refused(chat_serve_server, char: str) -> None:
    srv = chat_serve_server
    room = new_room("chars")
    with ChatClient(srv, room, "ann") as ann, ChatClient(srv, room, "bob") as bob:
        ann.say(f"file{char}txt.exe", ref="spoof")
        event = ann.next_of("error")
        assert event["code"] == "invalid_message" and event["ref"] == "spoof"
        assert f"U+{ord(char):04X}" in event["reason"]
        # Nothing was broadcast; newlines and tabs go through untouched.
        ann.say("two\nlines\tand a tab")
        assert bob.next_of("message")["text"] == "two\nlines\tand a tab"


@pytest.mark.parametrize("name", ["%E2%80%AEevil", "a%1B%5B31mb", "a%C2%9Bb", "a%E2%81%A6b"])
def test_control_and_bidi_characters_in_names_are_refused_400(chat_serve_server, name: str) -> None:
    assert _status(chat_serve_server, f"/chat/lobby?name={name}") == 400


@pytest.fixture(scope="module")
def token_server():
    env = CHAT_ENV | {"WSAPP_SECRET": "expiry-test-secret", "WSAPP_PING_INTERVAL": "0"}
    with running_server("serve", env=env) as srv:
        yield srv


def _token(srv, room: str, name: str, ttl: float) -> str:
    settings = Settings.from_env({k: v for k, v in srv.env.items() if k.startswith("WSAPP_")})
    return issue_token(settings, rooms=[room], name=name, ttl=ttl)


def test_socket_is_closed_4001_when_its_token_expires(token_server) -> None:
    srv = token_server
    room = new_room("exp")
    short = _token(srv, room, "short", ttl=1.5)
    long = _token(srv, room, "long", ttl=600)
    with ChatClient(srv, room, name=None, token=long) as stays:
        opened = time.monotonic()
        with ChatClient(srv, room, name=None, token=short) as goes:
            assert goes.hello["name"] == "short"
            assert stays.next_of("join")["name"] == "short"
            goes.say("before expiry")
            assert goes.next_of("message")["text"] == "before expiry"
            with pytest.raises(ConnectionClosed) as info:
                while time.monotonic() - opened < 6:
                    goes.ws.recv(timeout=6)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "token expired")
            assert 1.0 < time.monotonic() - opened < 4.0
        assert stays.next_of("leave")["name"] == "short"
        stays.say("the long token still works")
        assert stays.next_of("message")["text"] == "the long token still works"
    srv.wait_for_log("chat token expired: closing conn")
    # The expired token is refused at the handshake as before.
    assert _status(srv, f"/chat/{room}?token={short}") == 401
