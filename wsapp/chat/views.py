"""``/chat/<room>``: the chat WebSocket endpoint.

Handshake parameters are validated before the socket is accepted, so a bad room name,
nickname or ``since`` gets a plain HTTP 400 and the client is never upgraded. The page
at the same URL (no upgrade) belongs to ``wsapp.pages``.
"""

from __future__ import annotations

import collections
import logging
import re
import time

import gevent
import gevent.event
from flask import Blueprint, request

from wsapp import admission, logsafe, metrics
from wsapp.app_state import get_state
from wsapp.engine.websocket import WebSocket
from wsapp.protocol.session import CloseCause
from wsapp.tokens import TokenError, verify_token

from . import events
from .broker.base import BrokerUnavailable, OutcomeUnknown, RoomEvent

log = logging.getLogger("wsapp.chat")

bp = Blueprint("chat", __name__)

CLOSE_UNSUPPORTED = 1003
CLOSE_TRY_AGAIN = 1013
#: The token the member joined with has expired (a private-use code, RFC 6455 section 7.4.2):
#: fetch a new token and reconnect with ``since=`` (docs/protocol.md).
CLOSE_TOKEN_EXPIRED = 4001
TOKEN_EXPIRED_REASON = "token expired"

#: ``?client=``: a client's stable identity across reconnects (docs/protocol.md, "Client id").
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def refuse(reason: str, status: int = 400):
    """A plain-text HTTP answer to a handshake we do not accept (no upgrade)."""
    log.info(  # no query: it may hold a token
        "chat handshake refused (%d %s): %s %s",
        status, logsafe.escape(reason), logsafe.escape(request.remote_addr, 64),
        logsafe.escape(request.path),
    )
    headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
    return reason + "\n", status, headers


class MessageHandler:
    """Handles one member's incoming messages: counted against the rate limit when they
    arrive, processed (parsed, published, acked) in order by a greenlet of their own.

    A callable for `WebSocket.serve`: the socket's reader calls it in place with each
    batch it read. The rate limit (WSAPP_RATE_LIMIT) is applied there, on arrival, and
    the messages are handed to a worker greenlet that exists only while there is work, so
    the reader keeps reading (and counting) while a publish waits for the broker: a
    stalled Redis never turns a steady sender's backlog into one "burst" (issue 13). The
    backlog is bounded by WSAPP_RECEIVE_QUEUE_BYTES: over it, the reader waits for the
    worker and TCP pushes back on the client.
    """

    __slots__ = ("conn", "hub", "member", "max_bytes", "bucket", "budget", "pending",
                 "pending_bytes", "worker", "drained")

    def __init__(self, conn: WebSocket, hub, member, settings) -> None:
        self.conn = conn
        self.hub = hub
        self.member = member
        self.max_bytes = settings.max_chat_bytes
        self.bucket = admission.message_limiter(settings)  # issue 6: WSAPP_RATE_LIMIT, 1008
        self.budget = settings.receive_queue_bytes
        self.pending: collections.deque = collections.deque()
        self.pending_bytes = 0
        self.worker: gevent.Greenlet | None = None
        self.drained: gevent.event.Event | None = None

    def __call__(self, batch: list[str | bytes]) -> None:
        conn, bucket = self.conn, self.bucket
        for message in batch:
            if bucket is not None and not bucket.allow():
                conn.close_nowait(
                    admission.RATE_LIMIT_CLOSE_CODE,
                    admission.RATE_LIMIT_CLOSE_REASON,
                    CloseCause.RATE_LIMIT,
                )
                return
            if not isinstance(message, str):
                conn.close_nowait(CLOSE_UNSUPPORTED, "binary messages are not supported in chat")
                return
            self.pending.append(message)
            self.pending_bytes += len(message)
        if self.worker is None:
            self.worker = gevent.spawn(self._work)
        while self.pending_bytes > self.budget and not conn.closed:
            if self.drained is None:
                self.drained = gevent.event.Event()
            self.drained.clear()
            self.drained.wait(1.0)

    def _work(self) -> None:
        pending = self.pending
        try:
            # Everything that arrived is processed, also after the client went away:
            # TCP delivered it (a message sent just before a disconnect is not lost).
            while pending:
                message = pending.popleft()
                self.pending_bytes -= len(message)
                if self.drained is not None and self.pending_bytes <= self.budget // 2:
                    self.drained.set()
                self.process(message)
                # Let writers run before the next message: a client that sends a burst
                # must not fill every member's queue before anything goes out.
                gevent.sleep(0)
        except Exception:
            log.exception("chat message handling failed (conn %s)", self.conn.id)
            self.conn.close_nowait(1011, "internal server error")
        finally:
            pending.clear()
            self.pending_bytes = 0
            self.worker = None
            if self.drained is not None:
                self.drained.set()

    def finish(self, timeout: float) -> None:
        """Wait (bounded) until the messages that arrived have been processed."""
        worker = self.worker
        if worker is not None:
            worker.join(timeout)

    def process(self, message: str) -> None:
        """One message, in arrival order: parse, publish (ack or error event)."""
        hub = self.hub
        try:
            item = events.parse_client_text(message, self.max_bytes)
        except events.ValidationError as exc:
            hub.send_error(self.conn, exc.code, exc.reason, exc.ref)
            return
        if isinstance(item, events.EventInput):
            self.relay(item)
        else:
            hub.publish(self.member, item)


    def relay(self, item: events.EventInput) -> bool:
        """The member's event to the others in the room (not kept), acked if it has a ref.

        Sent as from the member (its id and name) and not back to it. An error event on
        failure, worded as for messages; False then."""
        hub, lm = self.hub, self.member
        event = RoomEvent(lm.room, item.name, item.data, lm.member, skip=lm.id)
        try:
            hub.broker.emit(event)
        except OutcomeUnknown as exc:  # maybe relayed: never say "not sent"
            log.warning("chat event to %s: outcome unknown: %s", lm.room, exc)
            metrics.broker_error("emit")
            reason = "the chat broker did not answer: the event may or may not have been relayed"
            hub.send_error(self.conn, events.E_OUTCOME_UNKNOWN, reason, item.ref)
            return False
        except BrokerUnavailable as exc:
            log.warning("chat event to %s failed: %s", lm.room, exc)
            metrics.broker_error("emit")
            reason = "event not relayed: chat broker unavailable"
            hub.send_error(self.conn, events.E_UNAVAILABLE, reason, item.ref)
            return False
        metrics.event_published("client")
        if item.ref is not None:
            self.conn.send_frame(hub.framer(events.encode_event_ack(item.ref, item.name)))
        return True


@bp.route("/chat/<room>", websocket=True)
def chat_socket(room: str):
    state = get_state()
    settings, hub, broker = state.settings, state.hub, state.broker
    if not events.is_valid_room(room):
        return refuse("invalid room name: use 1 to 64 of A-Z a-z 0-9 _ - . (not . or ..)")
    token = request.args.get("token")
    admitted = admission.chat_token_name(settings, room, token)  # issue 6: 401
    if isinstance(admitted, admission.Rejection):
        return refuse(admitted.reason, admitted.code)
    expires = None
    if admitted is not None:  # admitted by a token: the socket lives until the token expires
        try:
            expires = verify_token(settings, token or "").expires
        except TokenError as exc:  # expired since the check above
            return refuse(exc.reason, 401)
    try:
        name = admitted or events.normalize_name(request.args.get("name"))  # token name wins
    except events.ValidationError as exc:
        return refuse(f"invalid name: {exc.reason}")
    since = request.args.get("since") or None
    if since is not None and not broker.is_valid_id(since):
        return refuse("invalid since: not a message id")
    client_id = request.args.get("client") or None
    if client_id is not None and CLIENT_ID_RE.fullmatch(client_id) is None:
        return refuse("invalid client: use 1 to 64 of A-Z a-z 0-9 _ -")
    ws = request.environ.get("wsgi.websocket")
    if ws is None:  # pragma: no cover - the route only matches upgrade requests
        return refuse("WebSocket upgrade expected")

    if ws.deflate_settings is not None:
        # Rooms compress each broadcast once for every member: no server context (RFC 7692
        # 7.1.1.1 lets the server ask for that even when the client did not).
        ws.deflate_settings = ws.deflate_settings.for_rooms()
    ws.accept()
    try:
        member = hub.join(ws, room, name, since, client_id=client_id)
    except BrokerUnavailable as exc:
        log.warning("chat join of %s to %s failed: %s", ws.id, room, exc)
        metrics.broker_error("join")
        ws.close(CLOSE_TRY_AGAIN, "chat broker unavailable, try again later")
        return ""
    log.debug("chat join: conn %s name %r room %s peer %s", ws.id, name, room, ws.peer)
    expiry = TokenExpiry(ws, expires) if expires is not None else None
    # The member's messages are handled by its socket's reader, so the request and its
    # Flask context are freed while the member sits idle (memory).
    handler = MessageHandler(ws, hub, member, settings)
    ws.serve(handler, on_end=Leave(hub, member, ws, expiry, handler))
    return ""


class TokenExpiry:
    """Closes a member's socket with 4001 "token expired" when its token expires.

    One event-loop timer per token-admitted socket (no greenlet); the close goes through
    the connection's queue like any other, so frames queued before it are still sent."""

    __slots__ = ("conn", "timer")

    def __init__(self, conn: WebSocket, expires: float) -> None:
        self.conn = conn
        # ref=False: a pending expiry never keeps the process's event loop alive.
        self.timer = gevent.get_hub().loop.timer(max(0.0, expires - time.time()), ref=False)
        self.timer.start(self._expired)

    def _expired(self) -> None:
        if not self.conn.closed:
            log.info("chat token expired: closing conn %s with 4001", self.conn.id)
            self.conn.close_nowait(CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED_REASON)

    def cancel(self) -> None:
        self.timer.close()


class Leave:
    """What happens when a member's socket is done: leave the room (runs outside Flask)."""

    __slots__ = ("hub", "member", "conn", "expiry", "handler")

    def __init__(self, hub, member, conn: WebSocket, expiry: TokenExpiry | None = None,
                 handler: MessageHandler | None = None) -> None:
        self.hub = hub
        self.member = member
        self.conn = conn
        self.expiry = expiry
        self.handler = handler

    def __call__(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        if self.handler is not None:  # its last messages go out before its leave
            self.handler.finish(self.conn.settings.close_timeout + 5.0)
        self.hub.leave(self.member)
        log.debug("chat leave: conn %s close %s", self.conn.id, self.conn.close_code)
