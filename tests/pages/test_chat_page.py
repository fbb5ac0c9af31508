"""The chat room page in real Chromium: two pages talking, presence, escaping, restarts."""

from __future__ import annotations

import json
import time

import websocket

from tests.pages.conftest import PHONE, screenshot
from tests.support.servers import free_port, running_server, start_server

XSS = "<img src=x onerror=alert(1)>"


def join(page, server, room: str, nick: str) -> None:
    """Open the room, answer the nickname prompt with the keyboard, wait for hello."""
    page.goto(server.http_url(f"/chat/{room}"))
    page.wait_for_selector("#nick-form:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "nick"
    page.keyboard.type(nick)
    page.keyboard.press("Enter")
    page.wait_for_selector("#status[data-state=connected]")
    assert page.evaluate("localStorage.getItem('wsapp.nick')") == nick


def say(page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def texts(page) -> list[str]:
    return page.eval_on_selector_all(
        "#messages li.msg:not(.pending) .text", "els => els.map(e => e.textContent)"
    )


def wait_text(page, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in texts(page):
        assert time.monotonic() < deadline, f"{text!r} never shown; have {texts(page)}"
        page.wait_for_timeout(50)


def members(page) -> list[str]:
    return page.eval_on_selector_all("#members .name", "els => els.map(e => e.textContent)")


def wait_members(page, expected: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while sorted(members(page)) != sorted(expected):
        assert time.monotonic() < deadline, f"members {members(page)} != {expected}"
        page.wait_for_timeout(50)


def test_two_pages_chat_both_ways_with_presence_and_no_html(web_server, new_page):
    ada, ada_watch = new_page()
    grace, grace_watch = new_page(viewport=PHONE)
    join(ada, web_server, "pages-two", "ada")
    join(grace, web_server, "pages-two", "grace")
    wait_members(ada, ["ada", "grace"])  # join event
    wait_members(grace, ["ada", "grace"])  # hello presence

    say(ada, "Hello Grace, this is Ada.")
    say(grace, "Hi Ada!\nTwo lines, sent with Enter.")
    for page in (ada, grace):
        wait_text(page, "Hello Grace, this is Ada.")
        wait_text(page, "Hi Ada!\nTwo lines, sent with Enter.")

    # Markup is shown as text and runs nothing, on the sender's page and the receiver's.
    say(grace, XSS)
    for page in (ada, grace):
        wait_text(page, XSS)
        assert page.locator("#messages img").count() == 0
        assert texts(page).count(XSS) == 1
    ada.wait_for_timeout(300)  # give a broken page time to run the handler

    # Every message exactly once, in order, with ids, names and times.
    expected = ["Hello Grace, this is Ada.", "Hi Ada!\nTwo lines, sent with Enter.", XSS]
    for page in (ada, grace):
        page.wait_for_selector("#messages li.pending", state="detached")
        assert texts(page) == expected
        ids = page.eval_on_selector_all("#messages li.msg", "els => els.map(e => e.dataset.id)")
        assert len(set(ids)) == 3 and all(ids)
        assert page.eval_on_selector_all(
            "#messages li.msg .name", "els => els.map(e => e.textContent)"
        ) == ["ada", "grace", "grace"]
    screenshot(ada, "chat-desktop")
    screenshot(grace, "chat-phone")
    assert grace.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # A message over WSAPP_MAX_CHAT_BYTES (hello.max_text_bytes) is refused by the page
    # before it is sent, saying the limit, and stays in the composer.
    say(ada, "x" * 17000)
    notice = ada.wait_for_selector("#notice:not([hidden])")
    assert "Not sent" in notice.text_content() and "16384 bytes" in notice.text_content()
    assert ada.input_value("#text") == "x" * 17000
    assert ada.locator("#messages li.pending").count() == 0
    ada.fill("#text", "")
    assert "x" * 17000 not in texts(grace)

    # Leave: the other page's member list follows.
    grace.close()
    wait_members(ada, ["ada"])
    for watch in (ada_watch, grace_watch):
        watch.assert_clean()


def test_history_on_entry_and_nickname_remembered(web_server, new_page):
    ws = websocket.create_connection(web_server.url("/chat/pages-history?name=bot"), timeout=5)
    try:
        assert json.loads(ws.recv())["type"] == "hello"
        for i in range(3):
            ws.send(json.dumps({"type": "message", "text": f"earlier {i}"}))
        page, watch = new_page()
        join(page, web_server, "pages-history", "linus")
        for i in range(3):
            wait_text(page, f"earlier {i}")
        assert page.locator("#messages li.msg.replay").count() == 3
        # The nickname is remembered: a reload joins without asking.
        page.reload()
        page.wait_for_selector("#status[data-state=connected]")
        assert page.is_hidden("#nick-form")
        assert page.text_content("#me-name") == "linus"
        assert texts(page) == ["earlier 0", "earlier 1", "earlier 2"]
        watch.assert_clean()
    finally:
        ws.close()


def test_server_restart_resumes_without_loss(new_page):
    """Restart the server (same port) under an open page: it reconnects and misses nothing.

    The memory broker loses its history on restart, so the message that must not be lost is
    the one another client sends to the *new* server while the page is still waiting to
    reconnect; the page comes back with since=<last id it saw> and must show it exactly once,
    and must not duplicate what it saw before the restart. Message ids are "<ms>-<seq>", so
    they keep increasing across restarts and the old `since` still means "after this".
    """
    port = free_port()
    room = "pages-restart"
    page, watch = new_page(allow_console=("WebSocket connection to",))
    with running_server("serve", port=port) as first:
        join(page, first, room, "ada")
        bot = websocket.create_connection(first.url(f"/chat/{room}?name=bot"), timeout=5)
        bot.send("before the restart")
        wait_text(page, "before the restart")
        bot.close()
        first.stop()  # SIGTERM: sockets closed with 1001

    page.wait_for_selector("#status[data-state=reconnecting]")
    page.wait_for_selector("#notice:not([hidden])")
    assert "Connection lost" in page.text_content("#notice")
    screenshot(page, "chat-reconnecting")
    # Let the backoff grow (0.5 s, 1 s, 2 s, then ~4 s) so the new server is up and has the
    # message before the page's next attempt.
    page.locator("#status", has_text="attempt 4").wait_for(timeout=15_000)  # no eval: CSP

    second = start_server("serve", port=port)
    try:
        bot = websocket.create_connection(second.url(f"/chat/{room}?name=bot"), timeout=5)
        hello = json.loads(bot.recv())
        assert hello["type"] == "hello"
        bot.send("while the page was away")
        # The page has not reconnected yet: this really is a message it missed.
        assert page.get_attribute("#status", "data-state") == "reconnecting"

        page.wait_for_selector("#status[data-state=connected]", timeout=15_000)
        assert "since=" in page.get_attribute("#chat", "data-socket-url")
        wait_text(page, "while the page was away")
        bot.send("after the reconnect")
        wait_text(page, "after the reconnect")
        shown = texts(page)
        assert shown.count("before the restart") == 1
        assert shown.count("while the page was away") == 1
        assert shown.count("after the reconnect") == 1
        assert shown == ["before the restart", "while the page was away", "after the reconnect"]
        screenshot(page, "chat-reconnected")
        bot.close()
    finally:
        second.stop()
    watch.assert_clean()
