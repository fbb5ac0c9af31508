"""A plain Flask app with classic routes only: no wsapp import, no extension. wsapp's serving
modes still make `ConnectionClosed` leaving a view a normal end (wsapp.hosting)."""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.route("/classic/send-after-close", websocket=True)
def send_after_close():
    ws = request.environ["wsgi.websocket"]
    ws.send("ready")
    while ws.receive() is not None:
        pass
    ws.send("too late")  # raises ConnectionClosed: the client has closed
    return ""


@app.route("/classic/boom", websocket=True)
def boom():
    ws = request.environ["wsgi.websocket"]
    ws.receive()
    raise RuntimeError("classic boom")
