"""A user's own app, outside the checkout, served by wsapp as a user would serve it.

`write_user_app(dir)` writes `userapp.py` (a plain Flask app with a classic gevent-websocket
echo route); `start_in(cwd, command)` runs any server command from that directory and waits
for its port; `assert_echoes` and `assert_sigterm_closes_1001` are the checks every serving
mode must pass over real sockets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.servers import ServerProcess, free_port, wait_for_port

USER_APP = '''\
"""A user's app: classic gevent-websocket routes, no wsapp API needed."""

from flask import Flask, request

import wsapp


def create_app():
    app = Flask(__name__)

    @app.route("/x", websocket=True)
    def echo():
        ws = request.environ["wsgi.websocket"]
        while True:
            message = ws.receive()
            if message is None:  # the client closed (or the connection is gone)
                break
            ws.send(message)
        return ""

    @app.route("/no-flag")  # reads wsgi.websocket but forgot websocket=True
    def no_flag():
        ws = request.environ["wsgi.websocket"]
        ws.send("unreachable")
        return ""

    @app.route("/boom", websocket=True)
    def boom():
        ws = request.environ["wsgi.websocket"]
        ws.receive()
        raise RuntimeError("boom")

    @app.get("/where")
    def where():
        return wsapp.__file__

    return app


app = create_app()
'''

#: Messages that must come back byte for byte: text (non-ASCII), small and large binary
#: (a 64-bit length header), and an empty one of each kind.
ECHO_MESSAGES: list[str | bytes] = ["héllo ✓ wsapp", bytes(range(256)), os.urandom(70_000), "", b""]


def write_user_app(directory: Path, name: str = "userapp.py", source: str = USER_APP) -> Path:
    path = directory / name
    path.write_text(source)
    return path


def outside_dir(prefix: str = "wsapp-user-") -> Path:
    """A fresh directory outside the checkout (the system temp dir)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without PYTHONPATH (nothing may point at the checkout) and
    without WSAPP_* (each test sets its own)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("WSAPP_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start_in(
    cwd: Path,
    command: list[str],
    *,
    port: int,
    env: dict[str, str],
    mode: str = "user",
    host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> ServerProcess:
    """Run `command` from `cwd` (its output kept in a log file) and wait for `port`."""
    log_path = Path(tempfile.mkdtemp(prefix="wsapp-userlog-")) / f"{mode}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ServerProcess(mode, host, port, proc, log_path, env)
    try:
        wait_for_port(host, port, timeout=timeout, proc=proc)
    except Exception:
        stop(server)
        raise RuntimeError(f"{command} failed to start:\n{server.log_text()[-3000:]}") from None
    return server


def stop(server: ServerProcess) -> None:
    server.stop()
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(5)


@contextlib.contextmanager
def serving(
    cwd: Path, command: list[str], *, port: int, env: dict[str, str], mode: str = "user"
) -> Iterator[ServerProcess]:
    server = start_in(cwd, command, port=port, env=env, mode=mode)
    try:
        yield server
    finally:
        stop(server)


def assert_echoes(url: str) -> None:
    """Every ECHO_MESSAGES item comes back with the same type and bytes, then a clean close."""
    with connect(url, open_timeout=10, max_size=None) as ws:
        for message in ECHO_MESSAGES:
            ws.send(message)
            back = ws.recv(timeout=10)
            assert type(back) is type(message) and back == message, (url, type(back), len(back))


def assert_sigterm_closes_1001(server: ServerProcess, path: str = "/x") -> str:
    """An open socket gets close 1001 on SIGTERM, the process exits 0, the log counts the
    closed sockets and has no traceback. Returns the log."""
    with connect(server.url(path), open_timeout=10) as ws:
        ws.send("before shutdown")
        assert ws.recv(timeout=10) == "before shutdown"
        server.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None, "no close frame (1006)"
        assert info.value.rcvd.code == 1001
    assert server.proc.wait(timeout=20) == 0
    log = server.log_text()
    assert "closed 1 WebSocket(s) with 1001 for shutdown" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return log


def new_port() -> int:
    return free_port()
