"""`/echo`: every message comes back as it came, text as text and binary as binary."""

from __future__ import annotations

from flask import Blueprint, request

from wsapp.app_state import get_state
from wsapp.connection import Connection

bp = Blueprint("echo", __name__)


@bp.route("/echo", websocket=True)
def echo_socket():
    ws = request.environ["wsgi.websocket"]
    with Connection.open(ws, get_state().settings, endpoint="echo") as conn:
        send = conn.send_message
        for message in conn:
            send(message)
    return ""
