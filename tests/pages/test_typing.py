"""The chat page in real Chromium: who is typing (named events), the Rooms list's count in
step with the Members list, white space and server refusals."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import websocket

from tests.pages.test_chat_page import join, members, say, texts, wait_members, wait_text
from tests.support.servers import ServerProcess, running_server

TOKEN = "typing-test-token"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server("serve", env={"WSAPP_API_TOKEN": TOKEN}) as srv:
        yield srv


def typing_text(page) -> str:
    return page.text_content("#typing") or ""


def wait_typing(page, expected: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while typing_text(page) != expected:
        assert time.monotonic() < deadline, f"typing {typing_text(page)!r}, not {expected!r}"
        page.wait_for_timeout(50)


def room_count(page) -> str | None:
    badge = page.query_selector("#rooms a[aria-current=page] .count")
    return badge.text_content() if badge else None


def wait_counts(page, n: int, timeout: float = 8.0) -> None:
    """The Members count, the Members list and the Rooms list's badge all say `n`."""
    deadline = time.monotonic() + timeout
    while not (page.text_content("#member-count") == str(n) == room_count(page)):
        count = page.text_content("#member-count")
        assert time.monotonic() < deadline, f"{count} {members(page)}, badge {room_count(page)}"
        page.wait_for_timeout(50)


def test_who_is_typing(server, new_page) -> None:
    room = f"typing-{uuid.uuid4().hex[:8]}"
    ada, ada_watch = new_page()
    grace, grace_watch = new_page()
    join(ada, server, room, "ada")
    join(grace, server, room, "grace")
    wait_members(ada, ["ada", "grace"])
    wait_members(grace, ["ada", "grace"])
    assert typing_text(grace) == ""

    ada.click("#text")
    ada.keyboard.type("hello gr")
    wait_typing(grace, "ada is typing…")
    assert typing_text(ada) == ""  # not about ourselves
    ada.fill("#text", "")
    ada.dispatch_event("#text", "input")  # cleared: typing false
    wait_typing(grace, "")

    ada.keyboard.type("hello grace")
    wait_typing(grace, "ada is typing…")
    bot = websocket.create_connection(server.url(f"/chat/{room}?name=bot"), timeout=5)
    try:
        assert json.loads(bot.recv())["type"] == "hello"
        bot.send(json.dumps({"type": "event", "event": "typing", "data": {"typing": True}}))
        wait_typing(grace, "ada and bot are typing…")
        ada.press("#text", "Enter")  # sending ends ada's typing
        wait_text(grace, "hello grace")
        wait_typing(grace, "bot is typing…")
        started = time.monotonic()
        wait_typing(grace, "")  # bot never said false: it expires
        assert time.monotonic() - started < 7.0

        # A server event named "typing" has no sender: it is not someone typing.
        request = urllib.request.Request(
            server.http_url(f"/api/rooms/{room}/events"), method="POST",
            data=json.dumps({"event": "typing", "data": {"typing": True}}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
        grace.wait_for_timeout(300)
        assert typing_text(grace) == ""
        bot.send(json.dumps({"type": "event", "event": "typing", "data": {"typing": True}}))
        wait_typing(grace, "bot is typing…")
    finally:
        bot.close()
    wait_typing(grace, "")  # bot left
    for watch in (ada_watch, grace_watch):
        watch.assert_clean()


def test_room_counts_in_step_white_space_and_refusals(server, new_page) -> None:
    room = f"counts-{uuid.uuid4().hex[:8]}"
    ada, ada_watch = new_page()
    join(ada, server, room, "ada")
    wait_counts(ada, 1)
    grace, grace_watch = new_page()
    join(grace, server, room, "grace")
    wait_counts(ada, 2)  # at once, not at the next 15 s poll of /api/rooms
    wait_counts(grace, 2)
    bots = [websocket.create_connection(server.url(f"/chat/{room}?name=bot"), timeout=5)
            for _ in range(2)]
    wait_counts(ada, 4)  # two connections with one name: ×2 in the list, 4 in both counts
    assert members(ada).count("bot") == 1
    for bot in bots:
        bot.close()
    wait_counts(ada, 2)
    grace.close()
    wait_counts(ada, 1)

    say(ada, "   \n  ")  # white space only: not sent, nothing pending
    ada.wait_for_timeout(300)
    assert ada.locator("#messages li.msg").count() == 0
    say(ada, "\u001c")  # the page sends it; the server refuses it, and the page says so
    notice = ada.wait_for_selector("#notice[data-kind=refusal]:not([hidden])")
    assert "refused" in notice.text_content()
    ada.wait_for_selector("#messages li[data-state=failed]")
    assert texts(ada) == []
    for watch in (ada_watch, grace_watch):
        watch.assert_clean()
