"""Fixtures for the RFC 6455 conformance suite (modelled on the Autobahn test suite).

By default every case runs against real wsapp processes in every serving mode
(`python -m wsapp serve`, gunicorn and uWSGI), on the `/echo` endpoint, and once more against
`serve` with WSAPP_SPEEDUPS=0 (the pure Python framing that runs where the C loops are
not built):

    .venv/bin/python -m pytest tests/conformance -q

Set WSAPP_CONFORMANCE_URL to run the same cases against any echo server instead (no
server is started; e.g. the stock gevent-websocket for comparison):

    WSAPP_CONFORMANCE_URL=ws://127.0.0.1:8765/echo .venv/bin/python -m pytest tests/conformance -q

WSAPP_CONFORMANCE_TIMEOUT (seconds, default 2) bounds each wait for a reply.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import rawws
from tests.support.rawws import HTTPResponse, Op, RawWS
from tests.support.servers import ServerProcess, running_server

EXTERNAL_URL = os.environ.get("WSAPP_CONFORMANCE_URL", "").strip()
MODES = ["url"] if EXTERNAL_URL else ["serve", "gunicorn", "uwsgi", "serve-pure-python"]
#: How each mode runs: serving mode, extra environment, the start-up line that proves it.
MODE_SETUP = {
    "serve": ("serve", {}, "framing: C speedups"),
    "gunicorn": ("gunicorn", {}, "framing: C speedups"),
    "uwsgi": ("uwsgi", {}, "framing: C speedups"),
    "serve-pure-python": (
        "serve", {"WSAPP_SPEEDUPS": "0"}, "framing: pure Python (WSAPP_SPEEDUPS=0)"
    ),
}
TIMEOUT = float(os.environ.get("WSAPP_CONFORMANCE_TIMEOUT", "2.0"))

DEFAULT_LIMIT = 1 << 20  # WSAPP_MAX_MESSAGE_BYTES default: 1 MiB, inclusive
BIG_LIMIT = (16 << 20) + (1 << 20)  # 16 MiB messages plus headroom
ECHO_PATH = "/echo"


@dataclass
class Target:
    """Where the cases connect to, with small helpers shared by every family."""

    mode: str
    url: str
    max_message_bytes: int | None
    server: ServerProcess | None = None

    @property
    def host(self) -> str:
        return rawws.parse_url(self.url)[0]

    @property
    def port(self) -> int:
        return rawws.parse_url(self.url)[1]

    @property
    def path(self) -> str:
        return rawws.parse_url(self.url)[2]

    def connect(self, **kwargs) -> RawWS:
        kwargs.setdefault("timeout", TIMEOUT)
        return RawWS.connect(self.url, **kwargs)

    def http(self, request: bytes, timeout: float = TIMEOUT) -> HTTPResponse:
        return rawws.http_exchange(self.host, self.port, request, timeout=timeout)

    def request(self, **kwargs) -> bytes:
        return rawws.handshake_request(self.host, self.port, self.path, **kwargs)

    def assert_healthy(self) -> None:
        """After a hostile case the server must still serve: a fresh echo round trip and
        a completed closing handshake on a new connection (the close code itself is
        asserted by family 7, not here)."""
        if self.server is not None:
            assert self.server.alive(), f"server process died:\n{self.server.log_text()[-3000:]}"
        with self.connect() as ws:
            ws.send_frame(Op.TEXT, b"health-check \xe2\x9c\x93")
            assert ws.recv_message(TIMEOUT) == (Op.TEXT, b"health-check \xe2\x9c\x93")
            ws.send_close(1000)
            ws.expect_close(timeout=TIMEOUT)  # any close frame, then TCP closed by the server


def _target(mode: str, limit: int | None, env: dict[str, str]) -> Iterator[Target]:
    if EXTERNAL_URL:
        yield Target("url", EXTERNAL_URL, None)
        return
    serving, extra, framing = MODE_SETUP[mode]
    with running_server(serving, env={**env, **extra}) as srv:
        srv.wait_for_log(framing)
        yield Target(mode, srv.url(ECHO_PATH), limit, srv)
        log = srv.log_text()
    # Hostile input must get a close code and a log line, never an unhandled exception.
    if "Traceback" in log:
        start = log.index("Traceback")
        raise AssertionError(
            f"{mode} server logged a traceback:\n{log[max(0, start - 500) : start + 3000]}"
        )


@pytest.fixture(scope="session", params=MODES)
def target(request) -> Iterator[Target]:
    """A default-configured server (1 MiB message limit), once per serving mode."""
    yield from _target(request.param, DEFAULT_LIMIT, {})


@pytest.fixture(scope="session", params=MODES)
def big_target(request) -> Iterator[Target]:
    """A server allowing 16 MiB messages (plus headroom), once per serving mode."""
    yield from _target(request.param, BIG_LIMIT, {"WSAPP_MAX_MESSAGE_BYTES": str(BIG_LIMIT)})


@pytest.fixture
def ws(target: Target) -> Iterator[RawWS]:
    """A fresh connection to `target`; the server's health is checked after the case."""
    conn = target.connect()
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def timeout() -> float:
    return TIMEOUT
