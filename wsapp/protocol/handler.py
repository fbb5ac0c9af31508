"""`WsappHandler`: gevent-websocket's WebSocketHandler with a correct opening handshake.

The stock handler upgrades before the application runs, so a Flask view can never refuse
a handshake with an HTTP status; it answers bad keys with 500 and HTTP/1.0 with "402".
This handler validates the handshake (400 with `Sec-WebSocket-Version: 13` where due),
hands the view a lazily accepted `WebSocket`, and writes the 101 only when the view
accepts. If the view returns a response instead (404, 400, 403, 429...), that response
goes out as plain HTTP and the client is never upgraded.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

from gevent.pywsgi import WSGIHandler
from geventwebsocket.handler import WebSocketHandler

from wsapp.protocol import runtime
from wsapp.protocol.frames import CloseCode
from wsapp.protocol.handshake import Rejection, check_handshake, upgrade_response, wants_websocket
from wsapp.protocol.websocket import WebSocket

log = logging.getLogger("wsapp.handler")

_ids = itertools.count(1)
_PROCESS_TAG = f"{os.getpid():x}"


def new_connection_id() -> str:
    """Unique within the process; the pid prefix makes it unique across workers of a host."""
    return f"{_PROCESS_TAG}-{next(_ids):x}"


class WsappHandler(WebSocketHandler):
    """One instance per TCP connection (gevent pywsgi handler protocol)."""

    websocket: WebSocket | None = None

    @property
    def peer(self) -> str:
        addr = self.client_address
        if isinstance(addr, tuple) and len(addr) >= 2:
            return f"{addr[0]}:{addr[1]}"
        return str(addr)

    @property
    def peer_ip(self) -> str:
        addr = self.client_address
        return addr[0] if isinstance(addr, tuple) and addr else str(addr)

    # --- request dispatch ----------------------------------------------------------------

    def run_application(self) -> None:
        if not wants_websocket(self.environ):
            return WSGIHandler.run_application(self)
        rt = runtime.current()
        rejection = check_handshake(self.environ, self.request_version)
        if rejection is None and rt.shutting_down:
            rejection = Rejection("503 Service Unavailable", "server is shutting down", (("Retry-After", "1"),))
        if rejection is not None:
            self.reject(rejection)
            return None
        self.connection_id = new_connection_id()
        ws = WebSocket(self.environ, self, rt.settings)
        self.websocket = ws
        self.environ["wsgi.websocket"] = ws
        self.environ["wsgi.websocket_version"] = "13"
        self.environ["wsapp.connection_id"] = self.connection_id
        self.close_connection = True
        app_status: list[str] = []

        def start_response(status: str, headers: list, exc_info: Any = None):
            if ws.accepted:
                app_status.append(status)
                return lambda data: None
            return self.start_response(status, headers, exc_info)

        try:
            self.result = self.application(self.environ, start_response)
            if ws.accepted:
                self._discard_result()
                failed = bool(app_status) and app_status[-1][:1] == "5"
                if failed:
                    ws.close(CloseCode.INTERNAL_ERROR, "internal server error")
                else:
                    ws.close(CloseCode.NORMAL, "")
            else:
                self.process_result()
        finally:
            if ws.accepted:
                if ws.state != "CLOSED":
                    ws.abort()
                rt.discard(ws)
                self._log_close(ws)
            self._discard_result()
            self.environ["wsgi.websocket"] = None
            self.websocket = None
        return None

    def _discard_result(self) -> None:
        close = getattr(self.result, "close", None)
        self.result = None
        if close is not None:
            close()

    def reject(self, rejection: Rejection) -> None:
        """Refuse a handshake over plain HTTP, with a log line saying why."""
        log.warning(
            "handshake refused: %s %s from %s: %s %s",
            self.environ.get("REQUEST_METHOD"),
            self.environ.get("PATH_INFO"),
            self.peer,
            rejection.code,
            rejection.reason,
        )
        body = (rejection.reason + "\n").encode("utf-8")
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close"), *rejection.headers]
        self.close_connection = True
        self.start_response(rejection.status, headers)
        self.write(body)

    # --- upgrade -------------------------------------------------------------------------

    def send_upgrade(self, ws: WebSocket) -> None:
        """Write the 101 response and register the socket (called by `ws.accept()`)."""
        key = self.environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        self.socket.sendall(upgrade_response(key))
        self.status = "101 Switching Protocols"
        self.code = 101
        self.headers_sent = True
        self.response_length = 0
        self.close_connection = True
        runtime.current().add(ws)
        log.info(
            "ws open conn=%s path=%s peer=%s origin=%s",
            ws.id,
            self.environ.get("PATH_INFO"),
            self.peer,
            self.environ.get("HTTP_ORIGIN", "-"),
        )

    def _log_close(self, ws: WebSocket) -> None:
        duration = time.monotonic() - ws.opened_at
        log.info(
            "ws close conn=%s path=%s peer=%s code=%s by=%s reason=%r duration=%.3fs in=%d out=%d",
            ws.id,
            ws.path,
            self.peer,
            ws.close_code,
            ws.close_initiator or "-",
            ws.close_reason,
            duration,
            ws.messages_in,
            ws.messages_out,
        )

    # --- logging -------------------------------------------------------------------------

    def log_request(self) -> None:
        if getattr(self, "code", None) == 101 or str(self.status).startswith("101"):
            return  # a WebSocket logs one line at open and one at close instead
        # Skip the stock WebSocketHandler's logger; gunicorn's handler (if mixed in) logs access.
        super(WebSocketHandler, self).log_request()
