"""`/echo`: every message comes back as it came, text as text and binary as binary."""

from __future__ import annotations

from flask import Blueprint, request

from wsapp.app_state import get_state
from wsapp.connection import Connection
from wsapp.protocol.frames import encode_messages

bp = Blueprint("echo", __name__)


def echo_batch(batch: list[str | bytes]) -> list[bytes]:
    """Every message back as it came: text as text, binary as binary."""
    return encode_messages(batch)


@bp.route("/echo", websocket=True)
def echo_socket():
    ws = request.environ["wsgi.websocket"]
    with Connection.open(ws, get_state().settings, endpoint="echo") as conn:
        conn.serve_in_background(echo_batch)
    return ""
