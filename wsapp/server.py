"""The embedded server: gevent's WSGIServer with wsapp's handler, and a graceful shutdown.

On SIGTERM or SIGINT it stops accepting, closes every WebSocket with 1001 (going away)
so clients reconnect elsewhere, and exits once the close handshakes are done.

`python -m wsapp serve [module:app]` uses it; so can your own process (docs/routes.md):

    from gevent import monkey
from gevent.baseserver import parse_address
from gevent.event import Event
    monkey.patch_all()  # first, before anything else is imported

    import wsapp
    from myproject import app

    wsapp.serve(app, "127.0.0.1", 8000)  # blocks until SIGTERM / SIGINT

or, keeping the server object: `server = make_server(app, host, port)`,
`install_shutdown_handlers(server)`, `server.serve_forever()`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent import monkey
from gevent.baseserver import parse_address
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from wsapp import admission, fdlimits
from wsapp.accept_guard import AcceptGuard
from wsapp.engine import registry
from wsapp.hosting import AppLoadError, load_app, prepare_app, prepare_process
from wsapp.protocol.handler import WsappHandler
from wsapp.settings import Settings

log = logging.getLogger("wsapp.server")

#: A WSGI application: any callable(environ, start_response).
WSGIApp = Callable[..., Any]

_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f"\\]')


def _escape(text: str) -> str:
    """Control characters, quotes and backslashes as \\xNN: one log line stays one line."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Server(AcceptGuard, WSGIServer):
    """gevent's WSGI server, answering 503 when out of file descriptors (accept_guard)."""


def _log_capacity(settings: Settings) -> None:
    """The file-descriptor budget at start (WSAPP_MAX_CONNECTIONS), and a warning if it
    cannot hold."""
    redis = bool(settings.redis_url)
    log.info("%s", fdlimits.describe(settings.max_connections, redis))
    warning = fdlimits.capacity_warning(settings.max_connections, redis)
    if warning:
        log.warning("%s", warning)


class EmbeddedHandler(WsappHandler):
    """`WsappHandler` whose access-log line has no timestamp of its own.

    pywsgi writes `[date]` into every access line; wsapp's log format already starts with
    the time, so lines showed two. Same fields otherwise: client, request line, status,
    bytes, seconds."""

    def format_request(self) -> str:
        length = self.response_length or "-"
        delta = f"{self.time_finish - self.time_start:.6f}" if self.time_finish else "-"
        addr = self.client_address
        client = addr[0] if isinstance(addr, tuple) else addr
        status = (self._orig_status or self.status or "000").split()[0]
        return f'{client or "-"} "{_escape(self.requestline or "")}" {status} {length} {delta}'


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (OSError if taken or not allowed)."""
    family, address = parse_address((host, port))
    return WSGIServer.get_listener(address, family=family)


def make_server(
    app: WSGIApp,
    host: str | None = None,
    port: int | None = None,
    *,
    settings: Settings | None = None,
    listener: socket.socket | None = None,
    handler_class: type[WsappHandler] = EmbeddedHandler,
) -> Server:
    """A gevent `WSGIServer` serving `app` with wsapp's handler, limits and logging.

    `settings` default to the WSAPP_* variables (or, for `create_app()`'s app, its own);
    host and port default to WSAPP_HOST and WSAPP_PORT. Pass `listener` (from `listen`)
    to bind before loading the app. Call `install_shutdown_handlers(server)` so that
    SIGTERM closes WebSockets with 1001, then `server.serve_forever()`."""
    settings = prepare_app(app, settings)
    fdlimits.raise_nofile()
    _log_capacity(settings)
    if listener is None:
        listener = listen(host or settings.host, settings.port if port is None else port)
    return Server(
        listener,
        app,
        handler_class=handler_class,
        log=logging.getLogger("wsapp.access"),
        error_log=logging.getLogger("wsapp.error"),
    )


def install_shutdown_handlers(
    server: WSGIServer, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """On each of `signals`: stop accepting, close every WebSocket of this process with 1001
    (going away), log how many, and stop `server` once the close handshakes are done (at
    most WSAPP_CLOSE_TIMEOUT + 1 s), so that `serve_forever()` returns."""
    stopping = Event()

    def shutdown(signum: int) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info(
            "received %s: stopping accepts, closing WebSockets with 1001",
            signal.Signals(signum).name,
        )
        # Not server.close(): it would end serve_forever() (and the process) at once, before
        # the close handshakes. Stop accepting and free the port; stop() comes at the end.
        server.stop_accepting()
        with contextlib.suppress(OSError):
            server.socket.close()
        rt = registry.current()
        count = rt.close_all()
        log.info("closed %d WebSocket(s) with 1001 for shutdown (pid %d)", count, os.getpid())
        server.stop(timeout=rt.settings.close_timeout + 1)

    for sig in signals:
        gevent.signal_handler(sig, lambda s=sig: gevent.spawn(shutdown, s))


def _warn_if_exposed(server: WSGIServer) -> None:
    """One line when a non-loopback bind has neither allowed hosts nor allowed origins."""
    exposed = admission.public_bind_warning(registry.current().settings, server.address)
    if exposed:
        log.warning("%s", exposed)


def _http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    app: WSGIApp | None = None,
    host: str | None = None,
    port: int | None = None,
    *,
    settings: Settings | None = None,
) -> None:
    """Serve `app` (default: wsapp's own echo and chat app) until SIGTERM or SIGINT.

    Blocks; raises OSError if the address cannot be bound. Call
    `gevent.monkey.patch_all()` first thing in your program, as `python -m wsapp` does."""
    if not monkey.is_module_patched("socket"):
        log.warning(
            "gevent has not monkey-patched this process: a view that blocks (time.sleep, "
            "requests, a database driver) stalls every connection. Call "
            "gevent.monkey.patch_all() before any other import."
        )
    if app is None:
        from wsapp.factory import create_app

        app = create_app(settings)
    server = make_server(app, host, port, settings=settings)
    install_shutdown_handlers(server)
    host, port = server.address[0], server.server_port
    _warn_if_exposed(server)
    log.info("wsapp listening on %s", _http_url(host, port))
    server.serve_forever()


def run(target: str | None, settings: Settings, host: str | None, port: int | None) -> int:
    """`python -m wsapp serve [target]`: bind, load the app, serve; the exit status.

    The address is bound first, so that a port in use is one line and status 1 before
    anything else happens; an application that cannot be found is one line and status 2."""
    host = host or settings.host
    port = settings.port if port is None else port
    try:
        listener = listen(host, port)
    except OSError as exc:
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        sys.stderr.write(f"wsapp: cannot listen on {host}:{port}: {why}\n")
        return 1
    prepare_process(settings)
    try:
        if target is None:
            from wsapp.factory import create_app

            app = create_app(settings)
        else:
            app = load_app(target)
    except AppLoadError as exc:
        listener.close()
        sys.stderr.write(f"wsapp: cannot load the application {exc}\n")
        return 2
    server = make_server(app, settings=settings, listener=listener)
    install_shutdown_handlers(server)
    _warn_if_exposed(server)
    url = _http_url(host, server.server_port)
    what = f"app {target}" if target else f"echo: ws{url[4:]}/echo"
    log.info("wsapp listening on %s (%s)", url, what)
    server.serve_forever()
    return 0
