"""HTTP API next to the chat sockets, so other programs can read and push into rooms.

    GET  /api/rooms                          rooms with members or history
    GET  /api/rooms/<room>/messages?since=&limit=
    POST /api/rooms/<room>/messages          {"name": ..., "text": ...}, Bearer token
    POST /api/rooms/<room>/events            {"event": ..., "data": ...}, Bearer token

The POSTs need ``Authorization: Bearer $WSAPP_API_TOKEN``; with no token configured they
are disabled (403). With WSAPP_REQUIRE_TOKEN=1 the GETs need the right to join:
a chat token for the room (``Authorization: Bearer <token>`` or ``?token=``) or the API
token, and the room list shows only the rooms the credential admits
(`admission.api_read_access`). Errors are JSON: ``{"error": code, "reason": sentence}``.
Registered by ``wsapp.chat.init_app``. Reference: docs/protocol.md.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from wsapp import admission, metrics
from wsapp.app_state import get_state
from wsapp.chat import events
from wsapp.chat.broker.base import BrokerUnavailable, InvalidMessageId, OutcomeUnknown, RoomEvent

log = logging.getLogger("wsapp.api")

bp = Blueprint("api", __name__, url_prefix="/api")


def error(status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(error=code, reason=reason)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@bp.errorhandler(BrokerUnavailable)
def _broker_down(exc: BrokerUnavailable):
    log.warning("api: broker unavailable: %s", exc)
    return error(503, events.E_UNAVAILABLE, "chat broker unavailable, try again later")


def _credential() -> str | None:
    """The caller's token: ``Authorization: Bearer <token>``, else ``?token=``."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        return given.strip()
    return request.args.get("token") or None


def _read_access() -> admission.ReadAccess | Response:
    """The rooms this caller may read, or the 401 refusing it."""
    access = admission.api_read_access(get_state().settings, _credential())
    if isinstance(access, admission.Rejection):
        challenge = 'Bearer realm="wsapp"' + (', error="invalid_token"' if _credential() else "")
        return error(401, "unauthorized", access.reason, {"WWW-Authenticate": challenge})
    return access


@bp.errorhandler(OutcomeUnknown)
def _broker_outcome_unknown(exc: OutcomeUnknown):
    # A POST whose publish got no answer may have been published: 503 would say it was not.
    if request.method != "POST":
        return _broker_down(exc)
    log.warning("api: broker did not answer: %s", exc)
    what = "event" if request.path.endswith("/events") else "message"
    reason = f"the chat broker did not answer: the {what} may or may not have been published"
    return error(504, events.E_OUTCOME_UNKNOWN, reason)


@bp.get("/rooms")
def list_rooms():
    access = _read_access()
    if not isinstance(access, admission.ReadAccess):
        return access
    rooms = [r for r in get_state().broker.rooms() if access.allows(r.room)]
    return jsonify(
        rooms=[{"room": r.room, "members": r.members, "last_id": r.last_id} for r in rooms]
    )


def _limit(default: int) -> int | None:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise ValueError("limit must be an integer from 1 to 100000")
    return int(raw)


@bp.get("/rooms/<room>/messages")
def room_messages(room: str):
    access = _read_access()
    if not isinstance(access, admission.ReadAccess):
        return access
    if not events.is_valid_room(room):
        return error(400, "invalid_room", "room names are 1 to 64 of A-Z a-z 0-9 _ - .")
    if not access.allows(room):
        return error(403, "forbidden", "token not valid for this room")
    state = get_state()
    broker = state.broker
    since = request.args.get("since") or None
    try:
        limit = _limit(state.settings.history)
    except ValueError as exc:
        return error(400, "invalid_limit", str(exc))
    try:
        messages = broker.history(room, since=since, limit=limit)
    except InvalidMessageId:
        return error(400, "invalid_since", "since is not a message id")
    body: dict = {"room": room, "messages": [m.to_dict() for m in messages]}
    if since is not None:
        body["complete"] = broker.covers(room, since)
    return jsonify(body)


def _authorized(token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


def _post_refusal(room: str) -> Response | None:
    """The answer to a POST that may not publish (the API token, the room name), or None."""
    token = get_state().settings.api_token
    if not token:
        return error(403, "disabled", "posting is disabled: WSAPP_API_TOKEN is not set")
    if not _authorized(token):
        return error(401, "unauthorized", "Authorization: Bearer <WSAPP_API_TOKEN> required",
                     {"WWW-Authenticate": 'Bearer realm="wsapp"'})
    if not events.is_valid_room(room):
        return error(400, "invalid_room", "room names are 1 to 64 of A-Z a-z 0-9 _ - .")
    return None


@bp.post("/rooms/<room>/messages")
def post_message(room: str):
    state = get_state()
    refused = _post_refusal(room)
    if refused is not None:
        return refused
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, "invalid_body", 'expected a JSON object {"name": ..., "text": ...}')
    raw_name = body.get("name")
    if raw_name is not None and not isinstance(raw_name, str):
        return error(400, "invalid_name", "name must be a string")
    try:
        name = events.normalize_name(raw_name, make_guest=lambda: "api")
    except events.ValidationError as exc:
        return error(400, "invalid_name", exc.reason)
    text = body.get("text")
    if not isinstance(text, str) or not text or text.isspace():
        return error(400, events.E_EMPTY, "text must be a string with more than white space")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return error(400, events.E_BAD_MESSAGE, "text is not valid Unicode")
    if size > state.settings.max_chat_bytes:
        return error(413, events.E_TOO_LARGE, f"text is over {state.settings.max_chat_bytes} bytes")
    msg = state.broker.publish(room, name, text)
    response = jsonify(msg.to_dict())
    response.status_code = 201
    return response


@bp.post("/rooms/<room>/events")
def post_event(room: str):
    """Emit a named event to the room's members (not kept); 200 once the broker has it."""
    state = get_state()
    refused = _post_refusal(room)
    if refused is not None:
        return refused
    limit = state.settings.max_event_bytes
    # The body holds the data as JSON, escaped at most 6 characters per byte (\u0001).
    if request.max_content_length is not None:  # None: no limit at all
        request.max_content_length = max(request.max_content_length, limit * 6 + 4096)
    try:
        body = request.get_json(silent=True)
    except RequestEntityTooLarge:
        return error(413, events.E_TOO_LARGE, f"event data is over {limit} bytes")
    if not isinstance(body, dict):
        return error(400, "invalid_body", 'expected a JSON object {"event": ..., "data": ...}')
    try:
        name = events.check_event_name(body.get("event"))
        data = events.encode_event_data(body.get("data"), limit)
    except events.EventError as exc:
        return error(413 if exc.code == events.E_TOO_LARGE else 400, exc.code, exc.reason)
    state.broker.emit(RoomEvent(room, name, data))
    metrics.event_published("api")
    return jsonify(room=room, event=name)
