"""Real Chromium negotiates permessage-deflate (RFC 7692) on the echo and chat pages.

The DevTools protocol shows the handshake as the browser saw it: the offer Chromium sent
and the `Sec-WebSocket-Extensions` answer it accepted. The pages must then work as
usual: messages long enough to be compressed (over WSAPP_DEFLATE_THRESHOLD) go through
the browser's inflater and come back intact.
"""

from __future__ import annotations

import time

from tests.pages.test_chat_page import join, say, wait_text


def watch_handshakes(page) -> list[dict]:
    """Every WebSocket handshake of `page`: the request and response headers it saw."""
    seen: list[dict] = []
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on("Network.webSocketWillSendHandshakeRequest",
           lambda e: seen.append({"request": _lower(e["request"]["headers"]), "response": None}))

    def answered(event) -> None:
        for item in seen:
            if item["response"] is None:
                item["response"] = _lower(event["response"]["headers"])
                item["status"] = event["response"]["status"]
                return

    cdp.on("Network.webSocketHandshakeResponseReceived", answered)
    return seen


def _lower(headers: dict) -> dict:
    return {k.lower(): v for k, v in headers.items()}


def wait_answered(page, seen: list[dict], count: int = 1, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while sum(1 for item in seen if item["response"] is not None) < count:
        assert time.monotonic() < deadline, f"no handshake response seen: {seen}"
        page.wait_for_timeout(50)
    return [item for item in seen if item["response"] is not None]


def test_echo_page_negotiates_deflate_and_round_trips(web_server, new_page):
    page, watch = new_page()
    seen = watch_handshakes(page)
    page.goto(web_server.http_url("/echo"))
    page.wait_for_selector("#status[data-state=open]")
    (handshake,) = wait_answered(page, seen)
    assert handshake["status"] == 101
    assert "permessage-deflate" in handshake["request"]["sec-websocket-extensions"]
    assert handshake["response"]["sec-websocket-extensions"] == (
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; "
        "client_max_window_bits=12"
    )
    long_text = "compress me, I repeat myself ✓ " * 200  # over the threshold: compressed both ways
    for text in ("short", long_text, long_text):
        page.fill("#text", text)
        page.press("#text", "Enter")
    # A locator wait, not wait_for_function: the page's CSP (script-src 'self') refuses the
    # eval that a polled string predicate needs.
    page.locator("#log li[data-dir=in][data-kind=text]").nth(2).wait_for()
    matches = page.eval_on_selector_all(
        "#log li[data-dir=in][data-kind=text]", "els => els.map(e => e.getAttribute('data-match'))"
    )
    assert matches == ["yes", "yes", "yes"]
    page.fill("#size", "70000")
    page.click("#send-binary")  # random bytes: incompressible, still through the extension
    binary = page.wait_for_selector("#log li[data-dir=in][data-kind=binary][data-rtt-ms]")
    assert binary.get_attribute("data-match") == "yes"
    watch.assert_clean()


def test_chat_page_negotiates_deflate_without_server_context(web_server, new_page):
    ada, ada_watch = new_page()
    bob, bob_watch = new_page()
    seen_ada, seen_bob = watch_handshakes(ada), watch_handshakes(bob)
    join(ada, web_server, "pages-deflate", "ada")
    join(bob, web_server, "pages-deflate", "bob")
    for page, seen in ((ada, seen_ada), (bob, seen_bob)):
        (handshake,) = wait_answered(page, seen)
        # Rooms: one compressed frame for every member, so no server context takeover.
        assert handshake["response"]["sec-websocket-extensions"] == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=12"
        )
    long_text = "A longer chat message, so that the broadcast is compressed. " * 5
    say(ada, long_text)
    say(bob, "short one")
    say(bob, long_text + "(again)")
    for page in (ada, bob):
        wait_text(page, long_text)
        wait_text(page, "short one")
        wait_text(page, long_text + "(again)")
    ada_watch.assert_clean()
    bob_watch.assert_clean()
