"""The embedded server: gevent's WSGIServer with our handler, and a graceful shutdown.

On SIGTERM or SIGINT it stops accepting, closes every WebSocket with 1001 (going away)
so clients reconnect elsewhere, and exits once the close handshakes are done.
"""

from __future__ import annotations

import logging
import signal

import gevent
from gevent.pywsgi import WSGIServer

from wsapp import create_app, fdlimits
from wsapp.accept_guard import AcceptGuard
from wsapp.protocol import runtime
from wsapp.protocol.handler import WsappHandler
from wsapp.settings import Settings

log = logging.getLogger("wsapp.server")


class Server(AcceptGuard, WSGIServer):
    """gevent's WSGI server, answering 503 when out of file descriptors (accept_guard)."""


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    fdlimits.raise_nofile()
    app = create_app(settings)
    host = host or settings.host
    port = port if port is not None else settings.port
    redis = bool(settings.redis_url)
    log.info("%s", fdlimits.describe(settings.max_connections, redis))
    warning = fdlimits.capacity_warning(settings.max_connections, redis)
    if warning:
        log.warning("%s", warning)
    server = Server(
        (host, port),
        app,
        handler_class=WsappHandler,
        log=logging.getLogger("wsapp.access"),
        error_log=logging.getLogger("wsapp.error"),
    )
    stopping = gevent.event.Event()

    def shutdown(signum: int) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("received %s: stopping accepts, closing WebSockets with 1001", signal.Signals(signum).name)
        server.close()
        count = runtime.current().close_all()
        log.info("closed %d WebSocket(s); exiting", count)
        server.stop(timeout=settings.close_timeout + 1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, lambda s=sig: gevent.spawn(shutdown, s))
    server.init_socket()
    log.info("wsapp listening on http://%s:%d (echo: ws://%s:%d/echo)", host, server.server_port, host, server.server_port)
    server.serve_forever()
