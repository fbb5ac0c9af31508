"""Issue 14's "done when" checks, against a server of tests/extension/extapp.py (extension routes
and classic ones) started with WSAPP_PING_INTERVAL=1 WSAPP_PING_TIMEOUT=1; used by
test_install.py with wsapp installed in a fresh venv and the app outside the checkout."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.servers import ServerProcess
from tests.support.userapp import assert_echoes

ENV = {"WSAPP_PING_INTERVAL": "1", "WSAPP_PING_TIMEOUT": "1", "WSAPP_RATE_LIMIT": "0"}


def server_close(ws) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None, "no close frame (1006)"
    return info.value.rcvd.code, info.value.rcvd.reason


def _ticker(url: str, result: dict) -> None:
    """A send-only route for 8 s under 1 s keepalive: all 16 messages, then close 1000."""
    try:
        started = time.monotonic()
        with connect(url, open_timeout=10) as ws:
            result["got"] = [ws.recv(timeout=5) for _ in range(16)]
            result["seconds"] = time.monotonic() - started
            result["close"] = server_close(ws)
    except BaseException as exc:  # reported by the main thread
        result["error"] = exc


def check_extension_app(srv: ServerProcess) -> str:
    """Every check on a running server, then SIGTERM; returns the server's log."""
    ticker: dict = {}
    thread = threading.Thread(target=_ticker, args=(srv.url("/ext/ticker"), ticker), daemon=True)
    thread.start()  # runs for 8 s while the other checks go on

    assert_echoes(srv.url("/classic/echo"))  # the classic loop: text and binary, byte for byte
    assert_echoes(srv.url("/ext/echo"))

    with connect(srv.url("/ext/sleepy"), open_timeout=10) as ws:
        assert ws.recv(timeout=10) == "ready"  # the view now sleeps 3 s
        for _ in range(3):
            started = time.monotonic()
            assert ws.ping(b"awake?").wait(2.0)
            assert time.monotonic() - started < 0.2

    since = len(srv.log_text())
    with connect(srv.url("/ext/boom?tag=installed"), open_timeout=10) as ws:
        ws.send("go")
        assert server_close(ws) == (1011, "internal server error")
    log = srv.wait_for_log("RuntimeError: boom installed")[since:]
    assert [line for line in log.splitlines() if " ERROR " in line] == [
        line for line in log.splitlines() if "Exception in WebSocket view /ext/boom" in line
    ] and log.count("Traceback") == 1, log

    with connect(srv.url("/ext/rooms/r1"), subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2" and ws.recv(timeout=10) == "r1 chat.v2"
    with connect(srv.url("/ext/rooms/r1"), subprotocols=["nope"]) as ws:
        assert ws.subprotocol is None and ws.recv(timeout=10) == "r1 None"
        assert "Sec-WebSocket-Protocol" not in ws.response.headers

    for path in ("/ext/echo", "/classic/echo"):
        with pytest.raises(InvalidStatus) as info:
            connect(srv.url(path), origin="http://evil.example", open_timeout=10)
        assert info.value.response.status_code == 403

    thread.join(15)
    assert "error" not in ticker, ticker.get("error")
    assert ticker["got"] == [f"tick {i}" for i in range(16)] and ticker["seconds"] >= 7.5
    assert ticker["close"] == (1000, "")

    before_sigterm = len(srv.log_text())
    with connect(srv.url("/ext/echo")) as ext, connect(srv.url("/classic/echo")) as classic:
        for ws in (ext, classic):
            ws.send("before shutdown")
            assert ws.recv(timeout=10) == "before shutdown"
        srv.signal(signal.SIGTERM)
        assert server_close(ext)[0] == 1001 and server_close(classic)[0] == 1001
    assert srv.proc.wait(timeout=20) == 0
    log = srv.log_text()
    assert "closed 2 WebSocket(s) with 1001 for shutdown" in log, log[-3000:]
    assert "Traceback" not in log[before_sigterm:], log[-3000:]
    assert log.count("Traceback") == 1, log[-3000:]  # the boom view's, and nothing else
    assert "keepalive timeout" not in log, log[-3000:]
    return log
