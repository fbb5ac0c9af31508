"""Planned shutdown: SIGTERM closes every WebSocket with 1001, never 1006, in every mode."""

from __future__ import annotations

import contextlib
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.servers import running_server


@pytest.mark.parametrize("mode", ["serve", "gunicorn", "uwsgi"])
def test_sigterm_sends_1001_to_every_client_and_exits(mode):
    with running_server(mode) as srv, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(srv.url("/echo"))) for _ in range(5)]
        for ws in clients:
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        for ws in clients:
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None, "client saw no close frame (1006)"
            assert info.value.rcvd.code == 1001
        assert time.monotonic() - started < 5
        srv.proc.wait(timeout=15)
        assert srv.proc.returncode == 0
        log = srv.log_text()
        assert "1001" in log or "closed 5 WebSocket" in log
