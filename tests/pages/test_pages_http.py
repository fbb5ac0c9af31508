"""The pages over plain HTTP: served next to the sockets, strict CSP, no inline script."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

PAGES = ["/", "/echo", "/chat/lobby"]


def get(server, path: str):
    try:
        with urllib.request.urlopen(server.http_url(path), timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.mark.parametrize("path", PAGES)
def test_page_has_csp_and_no_inline_script(web_server, path):
    status, headers, html = get(web_server, path)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    # Every <script> has a src on our origin; no inline event handlers, no third-party assets.
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert re.search(r'src="/assets/[\w.-]+\.js"', tag), tag
    assert re.findall(r"<script\b[^>]*>\s*[^<\s]", html) == []  # no inline code
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert "//cdn" not in html and "https://" not in html.replace(
        "https://github.com/websockets/wscat", ""
    )


def test_assets_are_served_with_headers(web_server):
    for name, mimetype in [
        ("chat.js", "javascript"),
        ("echo.js", "javascript"),
        ("style.css", "text/css"),
    ]:
        status, headers, _ = get(web_server, f"/assets/{name}")
        assert status == 200 and mimetype in headers["Content-Type"]
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_bad_room_page_is_404(web_server):
    status, _, html = get(web_server, "/chat/no%20spaces")
    assert status == 404 and "not a room name" in html


def test_room_form_without_javascript_redirects(web_server):
    status, _, html = get(web_server, "/chat?room=kitchen")
    assert status == 200
    assert 'data-room="kitchen"' in html
