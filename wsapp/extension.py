"""`WebSockets`: WebSocket routes for a Flask app, the Flask extension way (docs/routes.md).

    from flask import Flask
    from wsapp import WebSockets

    app = Flask(__name__)
    sockets = WebSockets(app)  # or: sockets = WebSockets(); later sockets.init_app(app)

    @sockets.route("/echo")
    def echo(ws):
        for message in ws:
            ws.send(message)

A route is a Flask route declared with `websocket=True`. Its view is called with the
connection first (the `WebSocket` of `environ["wsgi.websocket"]`), then the URL variables.
Around the view the extension

- chooses the subprotocol (the first of the route's `subprotocols` the client offered,
  RFC 6455 4.2.2) and applies the route's `max_message_bytes`, before the 101 is written
  and so before any frame is read;
- labels the connection's metrics with the route's rule (`wsapp.metrics.endpoint_of`);
- ends the connection by one contract: the view returns, close 1000; `ConnectionClosed`
  leaves it, a normal end (the close line says how it ended); any other exception, close
  1011 and one log line with the traceback. Before the view first uses the socket no 101
  has been written: a response it returns (or `abort(403)`) goes out as plain HTTP.

The wrapper needs only the WebSocket in `environ["wsgi.websocket"]`, whatever put it there
(wsapp's pywsgi handler, its gunicorn worker, another server glue built on the engine).
`install_close_handler` gives classic `websocket=True` views the same normal end for
`ConnectionClosed`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, got_request_exception, request

from wsapp import logsafe, route_checks
from wsapp.engine import registry
from wsapp.engine.errors import ConnectionClosed
from wsapp.engine.websocket import WebSocket
from wsapp.protocol.frames import CloseCode
from wsapp.protocol.handshake import (
    is_subprotocol_name,
    offered_subprotocols,
    select_subprotocol,
)
from wsapp.settings import Settings

if TYPE_CHECKING:
    from wsapp.chat.broker.base import Member
    from wsapp.rooms import Rooms

__all__ = ["WebSockets", "install_close_handler", "negotiate_subprotocol"]

log = logging.getLogger("wsapp.routes")

#: Key in `app.extensions` of the `WebSockets` instance an app was initialised with.
EXTENSION_KEY = "wsapp.websockets"
#: Bounds of a route's `max_message_bytes` (those of WSAPP_MAX_MESSAGE_BYTES).
MAX_MESSAGE_BYTES_RANGE = (1, 1 << 31)

View = TypeVar("View", bound=Callable[..., Any])


class _Route:
    """One `@sockets.route`: what `init_app` registers on every app."""

    __slots__ = ("rule", "view", "subprotocols", "max_message_bytes", "options")

    def __init__(self, rule: str, view: Callable[..., Any], subprotocols: tuple[str, ...],
                 max_message_bytes: int | None, options: dict[str, Any]) -> None:
        self.rule = rule
        self.view = view
        self.subprotocols = subprotocols
        self.max_message_bytes = max_message_bytes
        self.options = options


class WebSockets:
    """WebSocket routes for one or more Flask apps (Flask's extension pattern).

    `WebSockets(app)` initialises `app` at once; `WebSockets()` then `init_app(app)` suits an
    application factory (routes declared before or after `init_app` go to every app it was
    given). `settings` (optional) are the process's wsapp settings for the connections;
    by default those of the process (the WSAPP_* variables, read at first use)."""

    def __init__(self, app: Flask | None = None, *, settings: Settings | None = None) -> None:
        self._settings = settings
        self._routes: list[_Route] = []
        self._apps: list[Flask] = []
        self._rooms: Rooms | None = None
        #: The app given to the constructor (Flask convention), else None.
        self.app = app
        if app is not None:
            self.init_app(app)

    @property
    def settings(self) -> Settings:
        """The settings connections are served with: those given, else the process's."""
        return self._settings if self._settings is not None else registry.current().settings

    def init_app(self, app: Flask, settings: Settings | None = None) -> None:
        """Register this instance's routes on `app`, install wsapp's route checks
        (`wsapp.route_checks`) and the `ConnectionClosed` handler, and record connection
        metrics (exposed where you register `wsapp.metrics.bp`)."""
        if settings is not None:
            self._settings = settings
        if self._settings is not None:
            registry.configure(self._settings)
        route_checks.install(app)
        install_close_handler(app)
        _record_metrics()
        app.extensions[EXTENSION_KEY] = self
        if app not in self._apps:
            self._apps.append(app)
            for route in self._routes:
                _register(app, route)
            if self._rooms is not None:
                self._rooms.init_app(app)

    def route(
        self,
        rule: str,
        *,
        subprotocols: Sequence[str] = (),
        max_message_bytes: int | None = None,
        blueprint: Blueprint | None = None,
        **options: Any,
    ) -> Callable[[View], View]:
        """Decorator: `view(ws, **url_variables)` serves WebSocket connections to `rule`.

        `subprotocols`: names this route speaks, in order of preference; the chosen one is
        `ws.subprotocol` (None if the client offered none of them). `max_message_bytes`:
        this route's largest message (default WSAPP_MAX_MESSAGE_BYTES; larger: close
        1009). `blueprint`: declare the route on that Flask blueprint instead (its name and
        URL prefix apply; the app still needs `init_app`). `options` are Flask's route
        options (`endpoint`, `defaults`, `host`...); `websocket=True` is implied. Returns
        the view unchanged."""
        names = _check_subprotocols(subprotocols)
        limit = _check_max_message_bytes(max_message_bytes)
        if not options.pop("websocket", True):
            raise ValueError("a WebSockets route is a websocket=True route")

        def decorator(view: View) -> View:
            if inspect.iscoroutinefunction(view):
                raise TypeError("WebSocket views are plain functions (they run in greenlets)")
            route = _Route(rule, view, names, limit, options)
            if blueprint is not None:
                _register(blueprint, route)
                return view
            self._routes.append(route)
            for app in self._apps:
                _register(app, route)
            return view

        return decorator

    # --- rooms for user code: one-line delegations to `wsapp.Rooms` (docs/rooms.md) -------

    @property
    def rooms(self) -> Rooms:
        """This extension's `wsapp.Rooms`, made on first use (importing it loads the chat hub
        and metrics, which `import wsapp` alone, e.g. in a gunicorn master, must not)."""
        if self._rooms is None:
            from wsapp.rooms import Rooms

            self._rooms = Rooms()
            for app in self._apps:
                self._rooms.init_app(app)
        return self._rooms

    def join(self, ws: WebSocket, room: str, *, name: str = "") -> None:
        """`Rooms.join`: `ws` in `room` until `leave` or the end of the connection."""
        self.rooms.join(ws, room, name=name)

    def leave(self, ws: WebSocket, room: str) -> None:
        """`Rooms.leave`."""
        self.rooms.leave(ws, room)

    def rooms_of(self, ws: WebSocket) -> list[str]:
        """`Rooms.rooms_of`."""
        return self.rooms.rooms_of(ws)

    def members(self, room: str) -> list[Member]:
        """`Rooms.members`: across processes with the Redis broker."""
        return self.rooms.members(room)

    def emit(self, room: str, event: str, data: Any = None, *, skip: Any = None) -> None:
        """`Rooms.emit`: a named event to every member of `room`, in every process."""
        self.rooms.emit(room, event, data, skip=skip)


def negotiate_subprotocol(ws: WebSocket, supported: Sequence[str]) -> str | None:
    """Choose `ws.subprotocol` from `supported` (server preference) among those the client
    offered, before the 101 is written; returns it (None: the 101 names none). For classic
    `websocket=True` views; `WebSockets` routes do this with their `subprotocols`."""
    if ws.accepted:
        raise RuntimeError("the subprotocol is chosen before the handshake is answered")
    ws.subprotocol = select_subprotocol(offered_subprotocols(ws.environ), supported)
    return ws.subprotocol


def install_close_handler(app: Flask) -> None:
    """A Flask error handler for `ConnectionClosed` leaving a WebSocket view: a normal end
    (the close line logs it), not `Exception on /path` with a traceback and a 500 (which
    the handler would turn into close 1011). In a plain HTTP request it stays an error.
    Installed once per app; an app's own handler for it (or for `WebSocketError`) wins."""
    handlers = app.error_handler_spec.get(None, {}).get(None, {})  # class -> handler
    if any(issubclass(ConnectionClosed, cls) and cls not in (Exception, BaseException)
           for cls in handlers):
        return
    app.register_error_handler(ConnectionClosed, _connection_closed)


def _connection_closed(exc: ConnectionClosed) -> Response:
    if request.environ.get("wsgi.websocket") is None:
        raise exc  # not a WebSocket request: Flask's 500 and its log line
    return Response(status=200)


def _record_metrics() -> None:
    """Have the connection registry report to `wsapp.metrics` (wsapp's own app does too)."""
    from wsapp import metrics  # prometheus-client: imported only by apps that use metrics

    rt = registry.current()
    if not isinstance(rt.sink, metrics.Sink):
        rt.sink = metrics.Sink()


def _check_subprotocols(subprotocols: Sequence[str]) -> tuple[str, ...]:
    if isinstance(subprotocols, str):
        raise TypeError("subprotocols is a list of names, not one string")
    names = tuple(subprotocols)
    for name in names:
        if not is_subprotocol_name(name):
            raise ValueError(f"subprotocol {name!r} is not a token (RFC 6455 4.1)")
    if len(set(names)) != len(names):
        raise ValueError(f"subprotocols must be unique: {names}")
    return names


def _check_max_message_bytes(value: int | None) -> int | None:
    if value is None:
        return None
    lo, hi = MAX_MESSAGE_BYTES_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"max_message_bytes must be an integer from {lo} to {hi}, got {value!r}")
    return value


def _register(app: Flask | Blueprint, route: _Route) -> None:
    app.add_url_rule(route.rule, view_func=_websocket_view(route), websocket=True,
                     **route.options)


def _websocket_view(route: _Route) -> Callable[..., Any]:
    """The Flask view function around a route's view."""

    @functools.wraps(route.view)
    def websocket_view(**values: Any) -> Any:
        ws = request.environ.get("wsgi.websocket")
        if not isinstance(ws, WebSocket):
            # No upgrade here (`flask run`) or a handler that is not wsapp's: name the fix.
            return Response(route_checks.NO_UPGRADE_FIX + "\n", status=501, mimetype="text/plain")
        return _serve(route, ws, values)

    return websocket_view


def _serve(route: _Route, ws: WebSocket, values: dict[str, Any]) -> Any:
    """Run the view on `ws` by the end-of-connection contract (module docstring)."""
    rule = request.url_rule.rule if request.url_rule is not None else route.rule
    if not ws.accepted:
        ws.environ[registry.ROUTE_KEY] = rule  # with a blueprint's prefix
        ws.subprotocol = select_subprotocol(offered_subprotocols(ws.environ), route.subprotocols)
        if route.max_message_bytes is not None:
            # The reader starts at accept(): no frame has been parsed with the default yet.
            ws.session.parser.max_message_bytes = route.max_message_bytes
    try:
        result = route.view(ws, **values)
    except ConnectionClosed:
        result = None  # a normal end: the close line says who closed and with what
    except Exception as exc:
        if not ws.accepted:
            raise  # nothing upgraded yet: Flask's HTTP answer (abort(403): 403; else 500)
        _log_failure(rule, ws, exc)
        ws.close(CloseCode.INTERNAL_ERROR, "internal server error")
        return Response(status=200)
    if not ws.accepted:
        if result is not None:
            return result  # the view refused the handshake with an HTTP response
        ws.accept()
    if not ws.detached:  # `ws.serve(handle)` moved the socket to its reader: it lives on
        ws.close(CloseCode.NORMAL)  # no effect if already closing or closed
    return Response(status=200)


def _log_failure(rule: str, ws: WebSocket, exc: Exception) -> None:
    """One log line with the traceback; `got_request_exception` as Flask sends it for an
    unhandled view error (error trackers listen to it)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    got_request_exception.send(app, _async_wrapper=app.ensure_sync, exception=exc)
    app.logger.error(
        "Exception in WebSocket view %s (route %s, conn %s): closing 1011",
        logsafe.escape(request.path), logsafe.escape(rule), ws.id, exc_info=exc,
    )
