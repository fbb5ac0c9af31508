"""A websocketd-style route: a FIXED command's stdout, one WebSocket message per line.

    python -m wsapp serve app:app --port 8000
    gunicorn -c ../../gunicorn.conf.py -b 127.0.0.1:8000 app:app
    python -m wsapp client ws://127.0.0.1:8000/run        # in another terminal

The command is chosen here, in code; nothing from the client reaches it (not its arguments,
its stdin or its environment): what the client sends is read and dropped. Each connection
runs its own process, at most MAX_RUNNING at once (503 beyond, as plain HTTP); a line is
sent when the command prints it; a client that leaves has its process killed at once; when
the command exits the connection closes with 1000 and the reason `exit STATUS`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gevent
from flask import Flask
from gevent import subprocess
from gevent.lock import BoundedSemaphore

from wsapp import WebSockets

app = Flask(__name__)
sockets = WebSockets(app)

#: The command, fixed by the operator: argv as a list, never a shell string.
COMMAND = [sys.executable, "-u", str(Path(__file__).with_name("lines.py"))]
MAX_RUNNING = 4  # processes at once in this server process
MAX_LINE_BYTES = 64 * 1024  # a longer line is sent in pieces of this size
_running = BoundedSemaphore(MAX_RUNNING)


def _drop_input_then_kill(ws, proc: subprocess.Popen) -> None:
    """Read (and drop) what the client sends; when the connection ends, end the command."""
    for _ in ws:
        pass
    if proc.poll() is None:
        proc.kill()


@sockets.route("/run")
def run(ws) -> tuple[str, int] | None:
    if not _running.acquire(blocking=False):
        return "busy: too many commands running, try again later\n", 503  # before the 101
    try:
        proc = subprocess.Popen(
            COMMAND, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, close_fds=True,
        )
        watcher = gevent.spawn(_drop_input_then_kill, ws, proc)
        try:
            while line := proc.stdout.readline(MAX_LINE_BYTES):
                ws.send(line.decode("utf-8", "replace").rstrip("\r\n"))
            status = proc.wait()
            ws.close(1000, f"exit {status}")
        finally:
            if proc.poll() is None:  # the client left, or the server is shutting down
                proc.kill()
            proc.wait()
            proc.stdout.close()
            watcher.kill()
    finally:
        _running.release()
    return None
