"""Logs an attacker writes into (issue 13, item 6), against real servers in both modes.

A peer chooses paths, headers, close reasons and query strings. Each event must give
its log lines and no more (a decoded ``%0a`` must not start a forged line), the log must
hold no raw control character or non-ASCII byte (terminal escapes, bidi overrides), and
no token value may reach it, whichever log line (application, access or error) carries
the request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.support.rawws import RawWS
from tests.support.servers import ServerProcess, running_server

from .conftest import token_for
from .rawhttp import exchange, get, upgrade

SECRET_ENV = {
    "WSAPP_SECRET": "log-test-secret",
    "WSAPP_REQUIRE_TOKEN": "1",
    "WSAPP_ALLOWED_ORIGINS": "*",
    "WSAPP_TRUSTED_PROXIES": "1",
    "WSAPP_API_TOKEN": "log-test-api-token",
}

#: How every log line of either serving mode starts: wsapp's own format, gunicorn's,
#: pywsgi's access line, and pywsgi's error line under gunicorn (written to stderr as
#: "<socket>: message"). A line starting otherwise was forged (or is a stray traceback).
LINE_START = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} |\[\d{4}-\d\d-\d\d |127\.0\.0\.1 - |<gevent\.)"
)


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def log_server(request) -> Iterator[ServerProcess]:
    with running_server(request.param, env=SECRET_ENV) as srv:
        yield srv


def _events(srv: ServerProcess) -> tuple[dict[str, int], list[str]]:
    """Play the hostile requests; return {marker: log lines the event gives} and the
    secrets sent."""
    other_room = token_for(srv, ["elsewhere"], "eve")
    want: dict[str, int] = {}

    # A decoded %0a / %0d%0a in the path: the chat view's refusal and the access line.
    assert upgrade(srv, "/chat/aa%0aFAKE1xx").status == 400
    want["FAKE1xx"] = 2
    # The same through the handler's own refusal (a Host not served).
    assert upgrade(srv, "/echo%0d%0aFAKE2xx", host="evil.example").status == 400
    want["FAKE2xx"] = 2
    # %00 in a path.
    assert upgrade(srv, "/chat/aa%00MARK3xx").status == 400
    want["MARK3xx"] = 2
    # obs-text in Origin and X-Forwarded-For (valid field bytes): C1 CSI, U+202E in UTF-8.
    ws = RawWS.connect(srv.url("/echo"), headers={
        "Origin": "http://x\x9b31mMARK4xx\xe2\x80\xae",
        "X-Forwarded-For": "203.0.113.4\x9b2J",
    })
    ws.echo("hi")
    ws.send_close(1000, "bye\u202eMARK5xx")
    ws.expect_close(1000)
    ws.close()
    want["MARK4xx"] = 1  # ws open (the close line does not repeat the origin)
    want["MARK5xx"] = 1  # ws close, with the peer's close reason
    # ESC and CR inside a header value: refused as a bad header (or, before that rule,
    # logged at open); either way escaped.
    upgrade(srv, headers={"Origin": "http://x\x1b[31mMARK6xx\rFAKE6xx"})
    # Tokens: a refused chat handshake (401, token for another room) carries its query
    # to the access log; the handler refuses one (bad Host) with a token too.
    assert upgrade(srv, f"/chat/lobby?name=eve&token={other_room}").status == 401
    assert upgrade(srv, "/echo?token=SECRETseven7", host="evil.example").status == 400
    # HTTP API with a token in the query and in the Authorization header.
    assert get(srv, "/api/rooms?token=SECRETeight8").status == 401
    assert get(srv, "/api/rooms", headers={"Authorization": "Bearer SECRETnine9"}).status == 401
    # A bad request line quoted by pywsgi's error line.
    exchange(srv, b"GET /chat/x?token=SECRETten10 HTTP/1.2\r\nHost: localhost\r\n\r\n")
    # A header line without a colon, quoted in the 400 error line.
    bad_line = b"X-Evil\x1b[2J: token=SECRETeleven11"
    exchange(srv, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n" + bad_line + b"\r\n\r\n")
    return want, [other_room, "SECRETseven7", "SECRETeight8", "SECRETnine9", "SECRETten10",
                  "SECRETeleven11"]


@pytest.fixture(scope="module")
def played(log_server) -> tuple[ServerProcess, dict[str, int], list[str], str]:
    """The hostile requests, once per server; then the whole log as text (Latin-1)."""
    want, secrets = _events(log_server)
    log_server.wait_for_log("MARK5xx")
    time.sleep(0.3)  # access lines are written after the response
    return log_server, want, secrets, log_server.log_path.read_bytes().decode("latin-1")


def test_no_raw_control_or_non_ascii_byte_reaches_the_log(played):
    text = played[3]
    bad = sorted({c for c in text if (c < " " and c != "\n") or c >= "\x7f"})
    assert not bad, f"raw control or non-ASCII bytes in the log: {bad!r}"


def test_each_event_gives_its_lines_and_none_is_forged(played):
    _, want, _, text = played
    lines = text.split("\n")
    forged = [line for line in lines if line and not LINE_START.match(line)]
    assert not forged, forged
    for marker, count in want.items():
        carrying = [line for line in lines if marker in line]
        assert len(carrying) == count, (marker, carrying)


def test_no_token_reaches_the_log(played):
    _, _, secrets, text = played
    for secret in secrets:
        assert secret not in text, f"token {secret[:12]}... reached the log"
    assert "token=[redacted]" in text


def test_escapes_show_what_was_sent(played):
    text = played[3]
    assert "/chat/aa\\x0aFAKE1xx" in text
    assert "/echo\\x0d\\x0aFAKE2xx" in text
    assert "/chat/aa\\x00MARK3xx" in text
    assert "\\x9b31mMARK4xx\\xe2\\x80\\xae" in text
    assert "bye\\u202eMARK5xx" in text
    assert "203.0.113.4\\x9b2J" in text
