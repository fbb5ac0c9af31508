"""The index page: live member counts from /api/rooms, and a graceful fallback without it."""

from __future__ import annotations

import json

import websocket

from tests.pages.conftest import screenshot


def test_index_shows_rooms_with_live_counts(web_server, new_page):
    socks = [websocket.create_connection(web_server.url(f"/chat/pages-index?name=u{i}"), timeout=5)
             for i in range(2)]
    try:
        for ws in socks:
            assert json.loads(ws.recv())["type"] == "hello"
        page, watch = new_page()
        page.goto(web_server.http_url("/"))
        badge = page.wait_for_selector("#rooms a[href='/chat/pages-index'] .count")
        assert badge.text_content() == "2"
        assert page.is_visible("#rooms a[href='/chat/lobby']")  # default rooms stay listed
        assert f"wscat -c {web_server.url('/echo')}" in page.text_content("main")
        screenshot(page, "index-desktop")
        # The room form navigates with the keyboard alone.
        page.fill("#room-input", "pages-index")
        page.press("#room-input", "Enter")
        page.wait_for_url("**/chat/pages-index")
        watch.assert_clean()
    finally:
        for ws in socks:
            ws.close()


def test_index_without_rooms_api(web_server, new_page):
    page, watch = new_page(allow_console=("404",))
    page.route("**/api/rooms", lambda route: route.fulfill(status=404, body="not here"))
    page.goto(web_server.http_url("/"))
    page.wait_for_selector("#rooms-status:has-text('not available')")
    assert page.is_visible("#rooms a[href='/chat/lobby']")
    assert page.locator("#rooms .count").count() == 0
    watch.assert_clean()
