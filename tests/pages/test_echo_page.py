"""The echo console in real Chromium: text and binary round trips with latency, close info."""

from __future__ import annotations

import re

from tests.pages.conftest import PHONE, screenshot


def test_echo_console_round_trips_text_and_binary(web_server, new_page):
    page, watch = new_page()
    page.goto(web_server.http_url("/echo"))
    page.wait_for_selector("#status[data-state=open]")
    assert page.text_content("#status") == "Connected"

    page.fill("#text", "hello, echo ✓")
    page.press("#text", "Enter")  # keyboard submit
    echoed = page.wait_for_selector("#log li[data-dir=in][data-kind=text][data-rtt-ms]")
    assert "hello, echo ✓" in echoed.text_content()
    assert echoed.get_attribute("data-match") == "yes"
    assert float(echoed.get_attribute("data-rtt-ms")) > 0
    assert re.search(r"round trip [\d.]+ ms", echoed.text_content())

    page.fill("#size", "70000")  # more than one getRandomValues() chunk
    page.click("#send-binary")
    binary = page.wait_for_selector("#log li[data-dir=in][data-kind=binary][data-rtt-ms]")
    assert binary.get_attribute("data-match") == "yes"
    assert "68.4 KiB" in binary.text_content()
    assert page.text_content("#stats").startswith("2 round trips")
    screenshot(page, "echo-desktop")

    page.click("#disconnect")
    page.wait_for_selector("#status[data-state=closed]")
    info = page.wait_for_selector("#close-info:not([hidden])")
    assert info.get_attribute("data-code") == "1000"
    assert "Closed with code 1000" in info.text_content()
    assert page.is_disabled("#send-text") and page.is_enabled("#connect")
    watch.assert_clean()


def test_echo_console_on_a_phone(web_server, new_page):
    page, watch = new_page(viewport=PHONE)
    page.goto(web_server.http_url("/echo"))
    page.wait_for_selector("#status[data-state=open]")
    page.fill("#text", "from a phone")
    page.click("#send-text")
    page.wait_for_selector("#log li[data-dir=in][data-rtt-ms]")
    # Nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "echo-phone", full_page=True)
    watch.assert_clean()
