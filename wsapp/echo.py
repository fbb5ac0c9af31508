"""`/echo`: every message comes back as it came, text as text and binary as binary."""

from __future__ import annotations

from flask import Blueprint, request

from wsapp.protocol.frames import encode_replies

bp = Blueprint("echo", __name__)


def echo_batch(batch: list[str | bytes]) -> list[bytes]:
    """Every message back as it came: text as text, binary as binary (a large binary
    message goes back as its header and the received bytes themselves, not copied)."""
    return encode_replies(batch)


@bp.route("/echo", websocket=True)
def echo_socket():
    # The reader answers each batch in place and the request ends now: an idle echo
    # socket keeps only its reader greenlet and its own objects.
    ws = request.environ["wsgi.websocket"]
    ws.accept()
    # With permessage-deflate, replies are compressed by the socket's own session
    # (context takeover); without it, one C call frames the whole batch.
    ws.serve(echo_batch if ws.deflate is None else ws.session.encode_messages)
    return ""
