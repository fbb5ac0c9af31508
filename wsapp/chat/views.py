"""``/chat/<room>``: the chat WebSocket endpoint.

Handshake parameters are validated before the socket is accepted, so a bad room name,
nickname or ``since`` gets a plain HTTP 400 and the client is never upgraded. The page
at the same URL (no upgrade) belongs to ``wsapp.pages``.
"""

from __future__ import annotations

import logging

import gevent
from flask import Blueprint, request

from wsapp import admission, logsafe, metrics
from wsapp.app_state import get_state
from wsapp.engine.websocket import WebSocket
from wsapp.protocol.session import CloseCause

from . import events
from .broker.base import BrokerUnavailable

log = logging.getLogger("wsapp.chat")

bp = Blueprint("chat", __name__)

CLOSE_UNSUPPORTED = 1003
CLOSE_TRY_AGAIN = 1013


def refuse(reason: str, status: int = 400):
    """A plain-text HTTP answer to a handshake we do not accept (no upgrade)."""
    log.info(  # no query: it may hold a token
        "chat handshake refused (%d %s): %s %s",
        status, logsafe.escape(reason), logsafe.escape(request.remote_addr, 64),
        logsafe.escape(request.path),
    )
    return reason + "\n", status, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


class MessageHandler:
    """Handles one member's incoming messages, a batch (one read) at a time.

    A callable for `WebSocket.serve` rather than a `for` loop over the connection: the
    socket's reader calls it in place and the member waits in a small greenlet (memory).
    """

    __slots__ = ("conn", "hub", "member", "max_bytes", "bucket")

    def __init__(self, conn: WebSocket, hub, member, settings) -> None:
        self.conn = conn
        self.hub = hub
        self.member = member
        self.max_bytes = settings.max_chat_bytes
        self.bucket = admission.message_limiter(settings)  # issue 6: WSAPP_RATE_LIMIT, 1008

    def __call__(self, batch: list[str | bytes]) -> None:
        conn, hub, bucket = self.conn, self.hub, self.bucket
        for message in batch:
            if bucket is not None and not bucket.allow():
                conn.close_nowait(admission.RATE_LIMIT_CLOSE_CODE, admission.RATE_LIMIT_CLOSE_REASON,
                                  CloseCause.RATE_LIMIT)
                return
            if not isinstance(message, str):
                conn.close_nowait(CLOSE_UNSUPPORTED, "binary messages are not supported in chat")
                return
            try:
                item = events.parse_client_text(message, self.max_bytes)
            except events.ValidationError as exc:
                hub.send_error(conn, exc.code, exc.reason, exc.ref)
                continue
            hub.publish(self.member, item)
            # Let writers run before the next message: a client that sends a burst must
            # not fill every member's queue before anything goes out.
            gevent.sleep(0)


@bp.route("/chat/<room>", websocket=True)
def chat_socket(room: str):
    state = get_state()
    settings, hub, broker = state.settings, state.hub, state.broker
    if not events.is_valid_room(room):
        return refuse("invalid room name: use 1 to 64 of A-Z a-z 0-9 _ - .")
    admitted = admission.chat_token_name(settings, room, request.args.get("token"))  # issue 6: 401
    if isinstance(admitted, admission.Rejection):
        return refuse(admitted.reason, admitted.code)
    try:
        name = admitted or events.normalize_name(request.args.get("name"))  # token name wins
    except events.ValidationError as exc:
        return refuse(f"invalid name: {exc.reason}")
    since = request.args.get("since") or None
    if since is not None and not broker.is_valid_id(since):
        return refuse("invalid since: not a message id")
    ws = request.environ.get("wsgi.websocket")
    if ws is None:  # pragma: no cover - the route only matches upgrade requests
        return refuse("WebSocket upgrade expected")

    if ws.deflate_settings is not None:
        # Rooms compress each broadcast once for every member: no server context (RFC 7692
        # 7.1.1.1 lets the server ask for that even when the client did not).
        ws.deflate_settings = ws.deflate_settings.for_rooms()
    ws.accept()
    try:
        member = hub.join(ws, room, name, since)
    except BrokerUnavailable as exc:
        log.warning("chat join of %s to %s failed: %s", ws.id, room, exc)
        metrics.broker_error("join")
        ws.close(CLOSE_TRY_AGAIN, "chat broker unavailable, try again later")
        return ""
    log.debug("chat join: conn %s name %r room %s peer %s", ws.id, name, room, ws.peer)
    # The member's messages are handled by its socket's reader, so the request and its
    # Flask context are freed while the member sits idle (memory).
    ws.serve(MessageHandler(ws, hub, member, settings), on_end=Leave(hub, member, ws))
    return ""


class Leave:
    """What happens when a member's socket is done: leave the room (runs outside Flask)."""

    __slots__ = ("hub", "member", "conn")

    def __init__(self, hub, member, conn: WebSocket) -> None:
        self.hub = hub
        self.member = member
        self.conn = conn

    def __call__(self) -> None:
        self.hub.leave(self.member)
        log.debug("chat leave: conn %s close %s", self.conn.id, self.conn.close_code)
