"""A user's app with `WebSockets` routes and a classic `websocket=True` route (tests/extension,
tests/packaging). Self-contained: it imports only Flask, gevent and wsapp, so the packaging
tests copy it into a directory outside the checkout and serve it from there.
"""

from __future__ import annotations

import logging
import time

import gevent
from flask import Blueprint, Flask, abort, request

import wsapp
from wsapp import WebSockets
from wsapp.metrics import bp as metrics_bp
from wsapp.protocol.frames import encode_messages

app = Flask(__name__)
sockets = WebSockets(app)
log = logging.getLogger("wsapp.extapp")


@sockets.route("/ext/echo")
def echo(ws):
    for message in ws:
        ws.send(message)


@sockets.route("/ext/rooms/<room>", subprotocols=["chat.v2", "chat.v1"])
def room(ws, room):
    ws.send(f"{room} {ws.subprotocol}")
    for message in ws:
        ws.send(message)


@sockets.route("/ext/small", max_message_bytes=1000)
def small(ws):
    for message in ws:
        ws.send(message)


@sockets.route("/ext/large", max_message_bytes=300_000)
def large(ws):
    for message in ws:
        ws.send(message)


@sockets.route("/ext/ticker")
def ticker(ws):
    """Only sends: 16 messages, one every 0.5 s, never receives."""
    for i in range(16):
        ws.send(f"tick {i}")
        gevent.sleep(0.5)


@sockets.route("/ext/sleepy")
def sleepy(ws):
    """Open at once ("ready"), then a blocking-looking 3 s sleep (monkey-patched), then echo."""
    ws.send("ready")
    time.sleep(3)
    for message in ws:
        ws.send(message)


@sockets.route("/ext/boom")
def boom(ws):
    message = ws.receive()
    raise RuntimeError(f"boom {request.args.get('tag', '')} after {message!r}")


@sockets.route("/ext/send-after-close")
def send_after_close(ws):
    """Waits for the client's close, then sends: ConnectionClosed leaves the view."""
    ws.send("ready")
    while ws.receive() is not None:
        pass
    log.warning("send-after-close: sending on a closed socket (code %s)", ws.close_code)
    ws.send("too late")


@sockets.route("/ext/custom-close")
def custom_close(ws):
    ws.send("bye soon")
    ws.close(4000, "custom reason")
    log.warning("custom-close: close_code=%s close_reason=%s closed=%s",
                ws.close_code, ws.close_reason, ws.closed)


@sockets.route("/ext/returns")
def returns(ws):
    ws.send("one and done")


@sockets.route("/ext/refuse")
def refuse(ws):
    if request.args.get("token") != "yes":
        return "no token\n", 403  # before the socket is used: plain HTTP
    ws.send("welcome")


@sockets.route("/ext/abort")
def aborts(ws):
    abort(401)


@sockets.route("/ext/receive-timeout")
def receive_timeout(ws):
    ws.send("ready")
    got = ws.receive(timeout=0.3)
    ws.send(f"timeout -> {got!r}, closed={ws.closed}")


@sockets.route("/ext/served")
def served(ws):
    """Hands the socket to its reader (`serve`): the view returns, the echo goes on."""
    ws.serve(encode_messages)


@app.route("/classic/echo", websocket=True)
def classic_echo():
    ws = request.environ["wsgi.websocket"]
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)
    return ""


@app.route("/classic/send-after-close", websocket=True)
def classic_send_after_close():
    ws = request.environ["wsgi.websocket"]
    ws.send("ready")
    while ws.receive() is not None:
        pass
    ws.send("too late")  # ConnectionClosed: a normal end for classic routes too
    return ""


@app.get("/where")
def where():
    return wsapp.__file__


# Declared before init_app, on a second instance, and on a blueprint: the factory pattern.
later = WebSockets()
bp = Blueprint("things", __name__, url_prefix="/bp")


@later.route("/ext/later/<int:n>")
def later_route(ws, n):
    ws.send(str(n * 2))


@sockets.route("/things/<name>", blueprint=bp)
def thing(ws, name):
    ws.send(f"thing {name}")


later.init_app(app)
app.register_blueprint(bp)
app.register_blueprint(metrics_bp)
