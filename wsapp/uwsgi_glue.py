"""wsapp under uWSGI: any WSGI app served by uWSGI's gevent loop with wsapp's engine.

    uwsgi --ini deploy/uwsgi.ini                              # wsapp's own app
    uwsgi --ini deploy/uwsgi.ini --set-ph wsapp-app=myapp:app  # any app (or "myapp:create_app()")

`deploy/uwsgi.ini` names `wsapp.uwsgi_app` as the module; the app it serves is the ini's
`wsapp-app` option (default: wsapp's own echo and chat). In a module of your own:
`application = wsapp.uwsgi_glue.wrap(app)`.

uWSGI parses the HTTP request (`http-socket`) and calls `wrap`'s callable in one greenlet
per request. Ordinary requests go to the app after the Host check. A WebSocket handshake
gets what `WsappHandler` does under pywsgi and gunicorn, in the same order: Host, then the
RFC 6455 handshake rules (`wsapp.protocol.handshake`), shutdown, Origin, connection
limits, each refusal a plain HTTP answer; then the engine's `WebSocket` runs over a
duplicate of the connection's descriptor (`wsapp.uwsgi_conn`), so the protocol, limits,
keepalive, metrics and close codes are the engine's, not uWSGI's WebSocket API (the
measurement behind this choice: docs/architecture.md).

Shutdown: uWSGI signals its workers (SIGHUP: graceful reload, SIGINT/SIGTERM: stop); in
the gevent loop engine they stop accepting and then call `uwsgi.atexit` while the gevent
hub still runs. The glue closes every WebSocket with 1001 as soon as the signal arrives
(so views held in requests end, and a graceful reload need not wait for them) and, in
`uwsgi.atexit`, waits for the close handshakes (at most WSAPP_CLOSE_TIMEOUT + 1 s).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent import monkey

from wsapp import admission, logsafe
from wsapp.engine import registry
from wsapp.engine.websocket import WebSocket
from wsapp.protocol.frames import CloseCode
from wsapp.protocol.handshake import Rejection, check_handshake, wants_websocket
from wsapp.uwsgi_access import Logged
from wsapp.uwsgi_conn import CARRY_SUPPORTED, UwsgiConnection
from wsapp.uwsgi_head import check_environ

try:
    import uwsgi
except ImportError as exc:  # pragma: no cover - only under uWSGI
    raise ImportError(
        "wsapp.uwsgi_glue runs inside uWSGI (uwsgi --ini deploy/uwsgi.ini); outside it use "
        "python -m wsapp serve or gunicorn"
    ) from exc

__all__ = ["UwsgiApp", "install_shutdown_hooks", "load_configured", "wrap"]

log = logging.getLogger("wsapp.uwsgi")
handler_log = logging.getLogger("wsapp.handler")

#: A WSGI application: any callable(environ, start_response).
WSGIApp = Callable[..., Any]

#: The uWSGI option naming the app `application` serves (`module:app`).
APP_OPTION = "wsapp-app"

#: Reason labels (metrics) for handshakes the application refused, by HTTP status.
_APP_REFUSAL_REASONS = {
    400: "bad_request", 401: "token", 403: "forbidden", 404: "not_found", 429: "rate_limited",
    503: "unavailable",
}
_SHUTTING_DOWN = Rejection(
    "503 Service Unavailable", "server is shutting down", (("Retry-After", "1"),)
)


def _listener_address() -> object:
    """The address of uWSGI's first listening socket (the Host check asks whether it is a
    loopback listener), or the configured `http-socket` text."""
    for fd in getattr(uwsgi, "sockets", ()) or ():
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                return sock.getsockname()
        except OSError:
            continue
    return uwsgi.opt.get("http-socket", b"").decode("latin-1") or None


def _first_status(status: str) -> int:
    try:
        return int(status.split(" ", 1)[0])
    except ValueError:
        return 0


class UwsgiApp:
    """The WSGI callable uWSGI runs: `app` with wsapp's checks and WebSockets around it."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.listener = _listener_address()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        # uWSGI takes wsgi.url_scheme from X-Forwarded-Proto / X-Forwarded-SSL of any client;
        # wsapp trusts those only through WSAPP_TRUSTED_PROXIES (admission.request_scheme).
        environ["wsgi.url_scheme"] = "https" if environ.get("HTTPS") in ("on", "1") else "http"
        rt = registry.current()
        settings = rt.settings
        status: list[str] = []

        def recording_start_response(code: str, headers: list, exc_info: Any = None) -> Any:
            status[:] = [code.split(" ", 1)[0]]
            return start_response(code, headers, exc_info)

        peer_ip = environ.get("REMOTE_ADDR") or "unix"
        client_ip = admission.client_ip(environ, peer_ip, settings.trusted_proxies)
        bad_head = check_environ(environ)
        bad_host = None if bad_head else admission.host_rejection(environ, settings, self.listener)
        if bad_head is not None:  # what uWSGI's parser let through (wsapp.uwsgi_head)
            rt.sink.handshake_rejected("bad_request")
            rejection = Rejection("400 Bad Request", bad_head)
            body = self._reject(environ, recording_start_response, rejection, client_ip)
        elif bad_host is not None:  # issue 13: DNS rebinding; HTTP requests and handshakes alike
            rt.sink.handshake_rejected("host")
            body = self._reject(environ, recording_start_response, bad_host, client_ip)
        elif not wants_websocket(environ):
            body = self.app(environ, recording_start_response)
        else:
            return self._handshake(environ, recording_start_response, rt, client_ip, status,
                                   started)
        return Logged(body, environ, status, started)

    # --- the opening handshake ------------------------------------------------------------

    def _handshake(self, environ: dict, start_response: Callable[..., Any],
                   rt: registry.Registry, client_ip: str, status: list,
                   started: float) -> Iterable[bytes]:
        rejection = check_handshake(environ, environ.get("SERVER_PROTOCOL", ""))
        label = "bad_handshake"
        if rejection is None and rt.shutting_down:
            rejection, label = _SHUTTING_DOWN, "shutting_down"
        if rejection is None:
            rejection, label = admission.origin_rejection(environ, rt.settings), "origin"
        if rejection is None:
            rejection = rt.admit(client_ip)
            full = rejection is not None and rejection.code == 503
            label = "capacity" if full else "per_ip_limit"
        if rejection is not None:
            rt.sink.handshake_rejected(label)
            body = self._reject(environ, start_response, rejection, client_ip)
            return Logged(body, environ, status, started)
        conn = UwsgiConnection(environ, uwsgi.connection_fd())
        conn.client_ip = client_ip
        try:
            body = self._run_websocket(environ, start_response, rt, conn)
        finally:
            if not conn.detached:  # a detached socket gives its slot back when it ends
                rt.release(client_ip)
                conn.close()
        if body is None:  # upgraded: uWSGI writes nothing (no start_response) and closes
            return []
        return Logged(body, environ, status, started)

    def _run_websocket(self, environ: dict, start_response: Callable[..., Any],
                       rt: registry.Registry, conn: UwsgiConnection) -> Iterable[bytes] | None:
        """Run the view with `environ["wsgi.websocket"]`; the body of its HTTP answer if it
        refused (no 101 written), None once the socket was accepted."""
        ws = WebSocket(environ, conn, rt.settings)
        environ["wsgi.websocket"] = ws
        environ["wsgi.websocket_version"] = "13"
        environ["wsapp.connection_id"] = conn.connection_id
        environ["wsapp.client_ip"] = conn.client_ip
        app_status: list[str] = []

        def ws_start_response(code: str, headers: list, exc_info: Any = None) -> Any:
            app_status.append(code)
            if ws.accepted:
                return lambda data: None
            return start_response(code, headers, exc_info)

        result = None
        try:
            result = self.app(environ, ws_start_response)
            if not ws.accepted:
                body = list(result)  # iterating must not accept the socket behind uWSGI
                code = _first_status(app_status[-1]) if app_status else 0
                if code >= 400:
                    rt.sink.handshake_rejected(_APP_REFUSAL_REASONS.get(code, f"http_{code}"))
                return body
            if not ws.detached:  # a detached socket is closed by its own greenlet
                failed = bool(app_status) and app_status[-1][:1] == "5"
                if failed:
                    ws.close(CloseCode.INTERNAL_ERROR, "internal server error")
                else:
                    ws.close(CloseCode.NORMAL, "")
            return None
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            if ws.accepted and not ws.detached:
                rt.finish(ws)
            environ["wsgi.websocket"] = None

    def _reject(self, environ: dict, start_response: Callable[..., Any], rejection: Rejection,
                client_ip: str) -> list[bytes]:
        """Refuse a handshake (or a request) over plain HTTP, with a log line saying why."""
        handler_log.warning(
            "%s refused: %s %s from %s: %s %s",
            "handshake" if wants_websocket(environ) else "request",
            logsafe.escape(environ.get("REQUEST_METHOD"), 20),
            logsafe.escape(environ.get("PATH_INFO")),
            client_ip,
            rejection.code,
            rejection.reason,
        )
        body = (rejection.reason + "\n").encode("utf-8")
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *rejection.headers,
        ]
        start_response(rejection.status, headers)
        return [body]


# --- shutdown -------------------------------------------------------------------------------


def _close_all(why: str) -> None:
    """Close every WebSocket of this worker with 1001 (once) and log how many."""
    rt = registry.current()
    if rt.shutting_down:
        return
    count = rt.close_all()
    log.info("closed %d WebSocket(s) with 1001 for %s (pid %d)", count, why, os.getpid())


def _wait_drained(timeout: float) -> None:
    """Until every socket of this worker has ended (close handshakes done), at most `timeout`."""
    rt = registry.current()
    deadline = time.monotonic() + timeout
    while rt.count() and time.monotonic() < deadline:
        gevent.sleep(0.01)


_WHY = {signal.SIGHUP: "graceful reload", signal.SIGINT: "shutdown", signal.SIGTERM: "shutdown"}
_installed = False


def _add_signal_handlers() -> None:
    """Our handlers beside uWSGI's. They must come second: libev installs its C handler
    for a signal when the first watcher of that signal starts, and uWSGI sets its own C
    handlers (which exit at once in async mode) after loading a lazy app but before its
    gevent loop adds its watchers; a watcher of ours started in between would leave
    uWSGI's C handler in place. So this runs in a greenlet, once the loop runs."""
    for sig, why in _WHY.items():
        gevent.signal_handler(sig, lambda why=why: gevent.spawn(_close_all, why))


def install_shutdown_hooks() -> None:
    """Close WebSockets with 1001 when uWSGI reloads or stops this worker (idempotent).

    On SIGHUP (graceful reload), SIGINT and SIGTERM (stop) the sockets are closed at once,
    beside uWSGI's own handlers (gevent runs every handler of a signal). uWSGI then calls
    `uwsgi.atexit` from the gevent loop: it waits for the close handshakes, then calls the
    `uwsgi.atexit` that was there before. An app loaded in the master (no `lazy-apps`)
    gets the handlers in each worker after the fork (`uwsgi.post_fork_hook`)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous_atexit = getattr(uwsgi, "atexit", None)

    def atexit() -> None:
        if uwsgi.worker_id() > 0:  # the master runs it too when it exits
            _close_all("shutdown")
            _wait_drained(registry.current().settings.close_timeout + 1.0)
        if previous_atexit is not None:
            previous_atexit()

    uwsgi.atexit = atexit
    if uwsgi.worker_id() > 0:
        gevent.spawn(_add_signal_handlers)
        return
    previous_post_fork = getattr(uwsgi, "post_fork_hook", None)

    def post_fork() -> None:
        if previous_post_fork is not None:
            previous_post_fork()
        if uwsgi.worker_id() > 0:
            gevent.spawn(_add_signal_handlers)

    uwsgi.post_fork_hook = post_fork


# --- entry points ---------------------------------------------------------------------------


def wrap(app: WSGIApp) -> UwsgiApp:
    """`app` served by uWSGI the way wsapp's own servers serve it: wsapp's process settings
    and route checks (`wsapp.hosting.prepare_app`), its WebSockets and 1001 on shutdown."""
    from wsapp import hosting

    settings = hosting.prepare_app(app)
    install_shutdown_hooks()
    if not monkey.is_module_patched("socket"):
        log.warning(
            "gevent has not monkey-patched this process: a view that blocks stalls every "
            "connection; set gevent-early-monkey-patch = true (deploy/uwsgi.ini does)"
        )
    if not CARRY_SUPPORTED:
        log.warning(
            "this uWSGI build does not export uwsgi_proto_base_read_body: frames a client "
            "sends before it receives the 101 are lost"
        )
    if "wsapp.uwsgi_master" not in sys.modules:  # else the master has warned once already
        exposed = admission.public_bind_warning(settings, _listener_address())
        if exposed:
            log.warning("%s", exposed)
    return UwsgiApp(app)


def load_configured() -> UwsgiApp:
    """wsapp's own app, or the one the uWSGI option `wsapp-app` names, wrapped (what
    `wsapp.uwsgi_app` serves)."""
    from wsapp import hosting

    rt = registry.current()
    hosting.prepare_process(rt.settings)
    target = uwsgi.opt.get(APP_OPTION)
    if isinstance(target, list):  # an option given twice: the last one wins
        target = target[-1]
    if isinstance(target, bytes):
        target = target.decode("utf-8")
    if target:
        app = hosting.load_app(target)
    else:
        from wsapp import create_app

        app = create_app(rt.settings)
    log.info("wsapp under uWSGI %s, worker %d (%s)", uwsgi.version.decode(), uwsgi.worker_id(),
             f"app {target}" if target else "echo and chat")
    return wrap(app)

