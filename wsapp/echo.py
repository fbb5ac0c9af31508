"""`/echo`: every message comes back as it came, text as text and binary as binary."""

from __future__ import annotations

from flask import Blueprint, request

from wsapp.app_state import get_state
from wsapp.connection import Connection
from wsapp.protocol.frames import encode_message

bp = Blueprint("echo", __name__)


@bp.route("/echo", websocket=True)
def echo_socket():
    ws = request.environ["wsgi.websocket"]
    with Connection.open(ws, get_state().settings, endpoint="echo") as conn:
        send_frames = conn.send_frames
        for batch in conn.batches():
            send_frames([encode_message(message) for message in batch])
    return ""
