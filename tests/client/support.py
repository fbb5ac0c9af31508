"""Helpers of the client tests: a server that can be SIGKILLed and restarted on the same
port, fast backoff settings, and fresh room names."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.servers import ServerProcess, free_port, start_server
from wsapp.client import Backoff

#: Chat settings for the client tests: no rate limit (thousands of messages), history
#: long enough that no resume in these tests outruns it, a short close linger.
CLIENT_ENV = {
    "WSAPP_RATE_LIMIT": "0",
    "WSAPP_MAX_CONN_PER_IP": "0",
    "WSAPP_HISTORY": "2000",
    "WSAPP_CLOSE_TIMEOUT": "0.5",
    "WSAPP_LOG_LEVEL": "INFO",
}

#: Reconnect quickly: the tests restart servers and wait for clients to come back.
FAST = Backoff(initial=0.05, factor=2.0, maximum=0.4)


def new_room(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Restartable:
    """A wsapp server on a fixed port that a test can SIGKILL and start again."""

    def __init__(self, env: dict[str, str], mode: str = "serve") -> None:
        self.env = env
        self.mode = mode
        self.port = free_port()
        self.log_dir = Path(tempfile.mkdtemp(prefix="wsapp-client-"))
        self.srv: ServerProcess | None = None
        self.starts = 0

    def start(self, timeout: float = 20.0) -> Restartable:
        self.srv = start_server(self.mode, env=self.env, port=self.port, log_dir=self.log_dir)
        self.starts += 1
        if "WSAPP_REDIS_URL" in self.env:  # accepting before the broker is up is fine,
            deadline = time.monotonic() + timeout  # but tests want a known state
            while self.srv.log_text().count("redis broker: connected") < 1:
                assert time.monotonic() < deadline, self.srv.log_text()[-3000:]
                time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL the whole server (its process group): no close frames, no cleanup."""
        assert self.srv is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.srv.proc.pid, signal.SIGKILL)
        self.srv.proc.wait(10)

    def stop(self) -> None:
        if self.srv is not None and self.srv.alive():
            self.srv.stop()
            if self.srv.alive():
                self.kill()

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def log_text(self) -> str:
        return "" if self.srv is None else self.srv.log_text()

    def __enter__(self) -> Restartable:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
