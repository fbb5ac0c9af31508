"""Hostile chat input against a real server (issue 13 items 7 and 9): deep JSON, control and
bidi characters, dot rooms, tokens that expire on an open socket.

Every case answers with the documented error event or close code, keeps the connection
(or the server) working for the next message, and logs no traceback.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.chat.clients import ChatClient
from tests.chat.conftest import CHAT_ENV, new_room

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
def test_deep_json_is_invalid_message_and_the_connection_stays(chat_serve_server, frame: str) -> None:
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
