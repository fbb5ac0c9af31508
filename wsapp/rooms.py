"""Rooms for any WebSocket, and named events to every member in every process.

    from wsapp import Rooms

    rooms = Rooms(app)                                  # or Rooms() and rooms.init_app(app)

    @app.route("/feed", websocket=True)
    def feed():
        ws = request.environ["wsgi.websocket"]
        rooms.join(ws, "news")                          # left by itself when the socket ends
        for message in ws:
            ...
        return ""

    @app.get("/push")
    def push():
        rooms.emit("news", "push", {"data": "test message!"})   # any view, greenlet, command
        return "", 204

Each member gets one text frame per event, ``{"type": "event", "event": "push", "room":
"news", "data": {"data": "test message!"}}`` (docs/protocol.md, "Events"). Delivery goes
through the app's hub and broker, the same as chat's: the event goes to the broker once
(memory, or Redis with WSAPP_REDIS_URL: every process and host), each process encodes it
once and writes it to its members with the one write path (``send_to_all``); a member that
does not read is closed 1008 when its send queue is over WSAPP_SEND_QUEUE_BYTES, and
nobody else waits for it. Events are not kept: a socket that is not in the room when the
event is published does not get it, later or ever.

Every socket Rooms has seen is also in its *personal room*, named by its connection id
(``ws.id``), so ``rooms.emit(ws.id, ...)`` reaches that one client from any process. A
personal room has no presence (``members(ws.id)`` is empty) and is not listed by
``GET /api/rooms``.

Rooms are one namespace with chat's: ``emit("lobby", ...)`` reaches the chat members of
``lobby`` too, and ``members("lobby")`` lists them. A socket put in a room here gets only
the room's named events, never its chat messages or presence events.

Guide: docs/rooms.md; from Flask-SocketIO: docs/from-flask-socketio.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gevent.event
from flask import current_app, has_app_context

from wsapp import metrics
from wsapp.app_state import EXTENSION_KEY, AppState, init_state
from wsapp.chat import events
from wsapp.chat.broker import BrokerUnavailable, Member, RoomEvent, create_broker
from wsapp.chat.hub import Hub, LocalMember
from wsapp.engine import registry
from wsapp.engine.errors import ConnectionClosed

if TYPE_CHECKING:
    from flask import Flask

    from wsapp.engine.websocket import WebSocket
    from wsapp.settings import Settings

__all__ = ["Rooms", "RoomsMixin"]

log = logging.getLogger("wsapp.rooms")

#: Seconds a first user of a lazily created broker waits for it to start (Redis: connect).
START_WAIT = 5.0


class _Joined:
    """What one connection joined through a Rooms object (room -> its hub member)."""

    __slots__ = ("hub", "joining", "over", "rooms", "ws")

    def __init__(self, ws: WebSocket, hub: Hub) -> None:
        self.ws = ws
        self.hub = hub
        self.rooms: dict[str, LocalMember] = {}
        self.joining: set[str] = set()  # rooms whose join waits for the broker
        self.over = False  # the connection ended


class Rooms:
    """Rooms and named events for WebSockets of one or more Flask apps.

    With wsapp's own app (`wsapp.create_app`) it uses the chat hub and broker; on any other
    Flask app it makes them on first use, from the WSAPP_* settings (memory broker, or Redis
    with WSAPP_REDIS_URL). Use it from the gevent loop of a server process: views, greenlets
    they spawn, CLI commands of the app. Other processes and threads: `wsapp.Publisher`.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._state: AppState | None = None
        self._joined: dict[str, _Joined] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Bind to `app`: its wsapp state is made if it has none (the hub: on first use)."""
        state = app.extensions.get(EXTENSION_KEY)
        if state is None:
            state = init_state(app, registry.current().settings)
        app.extensions["wsapp.rooms"] = self
        self._state = state

    # ---- membership

    def join(self, ws: WebSocket, room: str, *, name: str = "") -> None:
        """Put `ws` in `room` until `leave` or the end of the connection; idempotent.

        `name` is how `members()` (and chat pages in that room) show it; default "".
        Accepts the socket if the view has not yet. Raises ValueError for a bad room name
        (1 to 64 of ``A-Z a-z 0-9 _ - .``) or name, `wsapp.ConnectionClosed` if the socket
        is closed, BrokerUnavailable if the broker cannot take it (it is then not in the
        room)."""
        if not events.is_valid_room(room):
            raise ValueError(f"invalid room name {room!r:.80}: use 1 to 64 of A-Z a-z 0-9 _ - .")
        if name:
            name = events.normalize_name(name, make_guest=lambda: "")
        joined = self._track(ws)
        if room in joined.rooms or room in joined.joining:
            return
        self._enter(joined, room, Member(ws.id, name), presence=True)

    def leave(self, ws: WebSocket, room: str) -> None:
        """Take `ws` out of `room` (nothing happens if it is not in it)."""
        joined = self._joined.get(ws.id)
        if joined is None or joined.ws is not ws:
            return
        lm = joined.rooms.pop(room, None)
        if lm is not None:
            joined.hub.detach_member(lm, presence=room != ws.id)

    def rooms_of(self, ws: WebSocket) -> list[str]:
        """The rooms `ws` is in through this object, its personal room (``ws.id``) first."""
        joined = self._joined.get(ws.id)
        if joined is None or joined.ws is not ws:
            return []
        return sorted(joined.rooms, key=lambda room: room != ws.id)

    def members(self, room: str) -> list[Member]:
        """Who is in `room` now, in every process (Redis) in join order: `Member(id, name)`
        for each connection, chat members included. Personal rooms have none. Raises
        BrokerUnavailable."""
        return self._hub().broker.members(room)

    # ---- events

    def emit(self, room: str, event: str, data: Any = None, *, skip: Any = None) -> None:
        """Send the named event `event` with JSON `data` to every member of `room`.

        `skip`: a socket (or connection id) that must not get it. Returns once the broker
        has it (memory: delivered to the local queues; Redis: published). Raises EventError
        (a ValueError) for a bad room or event name, data that is not JSON or is over
        WSAPP_MAX_EVENT_BYTES; BrokerUnavailable when it was not sent, OutcomeUnknown when
        that is not known (it may have reached some or all members)."""
        if not events.is_valid_room(room):
            raise events.EventError(
                "invalid_room", f"invalid room name {room!r:.80}: use 1 to 64 of A-Z a-z 0-9 _ - ."
            )
        name = events.check_event_name(event)
        text = events.encode_event_data(data, self._settings().max_event_bytes)
        hub = self._hub()
        skip_id = getattr(skip, "id", skip)
        try:
            hub.broker.emit(RoomEvent(room, name, text, None, skip_id))
        except BrokerUnavailable:
            metrics.broker_error("emit")
            raise
        metrics.event_published("server")

    # ---- internals

    def _settings(self) -> Settings:
        return self._app_state().settings

    def _app_state(self) -> AppState:
        if has_app_context():
            state = current_app.extensions.get(EXTENSION_KEY)
            if state is not None and current_app.extensions.get("wsapp.rooms") is self:
                return state
        if self._state is None:
            raise RuntimeError("Rooms is not bound to an app: Rooms(app) or rooms.init_app(app)")
        return self._state

    def _hub(self) -> Hub:
        state = self._app_state()
        hub = state.hub
        if hub is None:
            hub = self._make_hub(state)
        starting = state.hub_started
        if starting is not None and not starting.is_set():
            starting.wait(START_WAIT)  # another greenlet is starting the broker
        return hub

    @staticmethod
    def _make_hub(state: AppState) -> Hub:
        """The broker and hub of an app that is not wsapp's own (made on first use)."""
        from wsapp.engine.fanout import send_to_all

        settings = state.settings
        broker = create_broker(settings)
        hub = Hub(
            broker,
            history=settings.history,
            queue_limit=settings.send_queue_bytes,
            send_to_all=send_to_all,
            max_text_bytes=settings.max_chat_bytes,
        )
        starting = gevent.event.Event()
        state.broker, state.hub, state.hub_started = broker, hub, starting
        try:
            broker.start()
        finally:
            starting.set()
        log.info("rooms: %s broker started", broker.kind)
        return hub

    def _track(self, ws: WebSocket) -> _Joined:
        """The record of `ws`; on first sight: leave-on-end callback and personal room."""
        joined = self._joined.get(ws.id)
        if joined is not None and joined.ws is ws:
            return joined
        if not ws.accepted:
            ws.accept()
        if ws.closed:
            raise ConnectionClosed(ws.close_code, ws.close_reason)
        joined = _Joined(ws, self._hub())
        self._joined[ws.id] = joined
        ws.add_end_callback(lambda: self._end(joined))
        try:
            self._enter(joined, ws.id, Member(ws.id, ""), presence=False)
        except BaseException:
            self._end(joined)
            raise
        return joined

    def _enter(self, joined: _Joined, room: str, member: Member, presence: bool) -> None:
        lm = LocalMember(joined.ws, room, member, joined.hub.buffer_limit, events_only=True)
        joined.joining.add(room)
        try:
            joined.hub.attach_member(lm, presence=presence and room != joined.ws.id)
        finally:
            joined.joining.discard(room)
        if joined.over:  # the connection ended while the broker took the join: undo it
            joined.hub.detach_member(lm, presence=presence and room != joined.ws.id)
            ws = joined.ws
            raise ConnectionClosed(ws.close_code, ws.close_reason)
        joined.rooms[room] = lm

    def _end(self, joined: _Joined) -> None:
        """The connection is over (its end callback): leave every room it is in."""
        joined.over = True
        ws = joined.ws
        if self._joined.get(ws.id) is joined:
            del self._joined[ws.id]
        rooms, joined.rooms = joined.rooms, {}
        for room, lm in rooms.items():
            joined.hub.detach_member(lm, presence=room != ws.id)


class RoomsMixin:
    """The rooms API of `wsapp.WebSockets`: one-line delegations to its `rooms`.

    A class using it sets ``self.rooms = Rooms()`` and calls ``self.rooms.init_app(app)``
    in its own ``init_app``."""

    rooms: Rooms

    def join(self, ws: WebSocket, room: str, *, name: str = "") -> None:
        """`Rooms.join`."""
        self.rooms.join(ws, room, name=name)

    def leave(self, ws: WebSocket, room: str) -> None:
        """`Rooms.leave`."""
        self.rooms.leave(ws, room)

    def rooms_of(self, ws: WebSocket) -> list[str]:
        """`Rooms.rooms_of`."""
        return self.rooms.rooms_of(ws)

    def members(self, room: str) -> list[Member]:
        """`Rooms.members`."""
        return self.rooms.members(room)

    def emit(self, room: str, event: str, data: Any = None, *, skip: Any = None) -> None:
        """`Rooms.emit`."""
        self.rooms.emit(room, event, data, skip=skip)
