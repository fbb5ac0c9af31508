"""A user's app with routes written the classic gevent-websocket way (tests/engine).

`@app.route(..., websocket=True)` views that read `request.environ["wsgi.websocket"]`,
served by wsapp's handler (embedded server or gunicorn worker) like any other app.
"""

from __future__ import annotations

import logging
import time

import gevent
from flask import request

from wsapp import ConnectionClosed, create_app

app = create_app()
log = logging.getLogger("wsapp.test_app")


@app.route("/classic-echo", websocket=True)
def classic_echo():
    ws = request.environ["wsgi.websocket"]
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)
    return ""


@app.route("/ticker", websocket=True)
def ticker():
    """Only sends: 16 messages, one every 0.5 s, never calls receive()."""
    ws = request.environ["wsgi.websocket"]
    for i in range(16):
        ws.send(f"tick {i}")
        gevent.sleep(0.5)
    return ""


@app.route("/sleepy", websocket=True)
def sleepy():
    """Accepts (its first send writes the 101), then is busy for 3 s before its first
    receive(); then echoes."""
    ws = request.environ["wsgi.websocket"]
    ws.send("ready")
    gevent.sleep(3)
    while (message := ws.receive()) is not None:
        ws.send(message)
    return ""


@app.route("/busy", websocket=True)
def busy():
    """Busy (sleeping in 20 ms steps, sending a heartbeat) until a send fails; logs when the
    peer's close was seen, and what receive() returned then."""
    ws = request.environ["wsgi.websocket"]
    ws.send("ready")
    while True:
        gevent.sleep(0.02)
        try:
            ws.send("beat")
        except ConnectionClosed as exc:
            seen = time.time()
            got = ws.receive()
            log.warning("busy view saw the close at %.3f (code %s), receive() -> %r",
                        seen, exc.code, got)
            return ""


@app.route("/hoard", websocket=True)
def hoard():
    """Never receives: the client's messages must make the reader stop reading, not grow."""
    ws = request.environ["wsgi.websocket"]
    ws.send("ready")
    while not ws.closed:
        gevent.sleep(0.1)
    return ""
