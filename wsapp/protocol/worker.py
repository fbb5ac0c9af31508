"""`WsappWorker`: gevent-websocket's gunicorn worker with our handler and a graceful exit.

The stock `GeventWebSocketWorker` installs the stock handler and, on SIGTERM, simply
waits out `graceful_timeout` before killing greenlets, so clients see 1006. Ours sends
every client a 1001 (going away) right away and exits as soon as the sockets are closed.
"""

from __future__ import annotations

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.workers.ggevent import PyWSGIHandler, PyWSGIServer

from wsapp import hosting, ipcap
from wsapp.accept_guard import AcceptGuard
from wsapp.engine import registry
from wsapp.protocol.handler import WsappHandler


class GunicornWsappHandler(WsappHandler, PyWSGIHandler):
    """Our handler plus gunicorn's access log and environ additions."""


class GuardedPyWSGIServer(AcceptGuard, PyWSGIServer):
    """gunicorn's gevent server, answering 503 when out of file descriptors (accept_guard)."""


class WsappWorker(GeventWebSocketWorker):
    wsgi_handler = GunicornWsappHandler
    server_class = GuardedPyWSGIServer

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Runs in the master before each fork: the per-IP table every worker shares.
        ipcap.prepare_master(self.cfg.workers)

    def init_process(self) -> None:
        row = ipcap.attach_worker()  # in the new worker, before it serves anything
        if row is not None:
            self.log.info("per-IP connection cap shared by this master's workers (row %d)", row)
        super().init_process()

    def load_wsgi(self) -> None:
        """Any app: wsapp's logging and limits before it is imported, its route checks after."""
        hosting.prepare_process(registry.current().settings)
        super().load_wsgi()
        hosting.prepare_app(self.wsgi)

    def _close_websockets(self) -> None:
        rt = registry.current()
        if rt.shutting_down:
            return
        count = rt.close_all()
        self.log.info("closed %d WebSocket(s) with 1001 for shutdown (pid %s)", count, self.pid)

    def handle_exit(self, sig, frame) -> None:  # SIGTERM: graceful
        super().handle_exit(sig, frame)
        gevent.spawn(self._close_websockets)

    def handle_quit(self, sig, frame) -> None:  # SIGINT / SIGQUIT
        gevent.spawn(self._close_websockets)
        super().handle_quit(sig, frame)
