"""`WsappHandler`: gevent-websocket's WebSocketHandler with a correct opening handshake.

The stock handler upgrades before the application runs, so a Flask view can never refuse
a handshake with an HTTP status; it answers bad keys with 500 and HTTP/1.0 with "402".
This handler validates the handshake (400 with `Sec-WebSocket-Version: 13` where due),
hands the view a lazily accepted `WebSocket`, and writes the 101 only when the view
accepts. If the view returns a response instead (404, 400, 403, 429...), that response
goes out as plain HTTP and the client is never upgraded.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import socket
from typing import Any

import gevent
from gevent.pywsgi import WSGIHandler
from geventwebsocket.handler import WebSocketHandler

from wsapp import admission, logsafe
from wsapp.engine import registry
from wsapp.engine.websocket import RFILE_CHUNK as RFILE_BUFFER
from wsapp.engine.websocket import WebSocket
from wsapp.protocol.frames import CloseCode
from wsapp.protocol.handshake import (
    Rejection,
    check_handshake,
    response_extras,
    upgrade_response,
    wants_websocket,
)
from wsapp.protocol.request_head import parse_header_lines

log = logging.getLogger("wsapp.handler")

#: Largest request head (request line excluded) we read: 32 KiB, like nginx's 4 x 8k buffers.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADER_LINES = 100

_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\n\r\n"
    b"request header block too large\r\n"
)

#: Reason labels (metrics) for handshakes the application refused, by HTTP status.
_APP_REFUSAL_REASONS = {
    400: "bad_request",
    401: "token",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
    503: "unavailable",
}


class HeadersTooLarge(ValueError):
    """The request head is over MAX_HEADER_BYTES or MAX_HEADER_LINES (answered 431)."""


class _HandshakeTimeout(gevent.Timeout):
    """The client did not send a complete request head within WSAPP_HANDSHAKE_TIMEOUT."""


_ids = itertools.count(1)
_PROCESS_TAG = ""


def _new_process_tag() -> None:
    """Per process, also after fork: gunicorn imports this module in the master (worker
    class), so a tag computed at import would be shared by every worker."""
    global _PROCESS_TAG
    _PROCESS_TAG = f"{os.getpid():x}{secrets.token_hex(3)}"


_new_process_tag()
os.register_at_fork(after_in_child=_new_process_tag)


def new_connection_id() -> str:
    """Unique across processes and hosts: pid plus a random per-process tag (pids repeat in
    containers), then a counter. Chat presence in Redis is keyed by it."""
    return f"{_PROCESS_TAG}-{next(_ids):x}"


class WsappHandler(WebSocketHandler):
    """One instance per TCP connection (gevent pywsgi handler protocol)."""

    websocket: WebSocket | None = None
    #: The client's address for limits and logs (X-Forwarded-For through trusted proxies).
    client_ip: str | None = None

    def __init__(self, sock, address, server, rfile=None) -> None:
        # pywsgi's rfile has an 8 KiB buffer that lives as long as the connection; a request
        # head fits a much smaller one (lines longer than the buffer are still read whole),
        # and a WebSocket reads through it only until it switches to socket.recv.
        if rfile is None:
            rfile = sock.makefile("rb", RFILE_BUFFER)
        super().__init__(sock, address, server, rfile)

    @property
    def socket_ip(self) -> str:
        addr = self.client_address
        return addr[0] if isinstance(addr, tuple) and addr else str(addr)

    @property
    def peer(self) -> str:
        addr = self.client_address
        if self.client_ip is not None and self.client_ip != self.socket_ip:
            return (
                f"{self.client_ip} (via {addr[0]}:{addr[1]})"
                if isinstance(addr, tuple)
                else self.client_ip
            )
        if isinstance(addr, tuple) and len(addr) >= 2:
            return f"{addr[0]}:{addr[1]}"
        return str(addr)

    @property
    def peer_ip(self) -> str:
        return self.client_ip if self.client_ip is not None else self.socket_ip

    # --- reading the request: time and size limits ----------------------------------------

    def handle_one_request(self):
        """Read one request with WSAPP_HANDSHAKE_TIMEOUT for its head (slowloris), then serve it.

        The timer covers the request line and headers only; it is cancelled as soon as
        the head is parsed, so a WebSocket (or a slow download) is never cut by it. It
        also bounds how long an idle keep-alive connection may wait for its next request."""
        timeout = registry.current().settings.handshake_timeout
        timer = _HandshakeTimeout(timeout)
        self._head_timer = timer
        timer.start()
        try:
            return super().handle_one_request()
        except _HandshakeTimeout as exc:
            if exc is not timer:
                raise
            if self.requestline or getattr(self, "_head_started", False):
                log.warning(
                    "request head not complete after %.1fs from %s: dropped (slowloris?)",
                    timeout,
                    self.peer,
                )
                registry.current().sink.handshake_rejected("handshake_timeout")
            self.close_connection = True
            return None
        finally:
            timer.close()
            self._head_timer = None

    def read_requestline(self):
        self.requestline = ""
        line = super().read_requestline()
        self._head_started = bool(line)
        return line

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()

    def MessageClass(self, fp, *args):  # noqa: N802 - gevent's name
        """Read at most MAX_HEADER_BYTES / MAX_HEADER_LINES of headers (else HeadersTooLarge)
        and parse them with `request_head` instead of pywsgi's `email`-based parser."""
        lines = []
        total = 0
        while True:
            line = fp.readline(MAX_HEADER_BYTES + 1 - total)
            total += len(line)
            if total > MAX_HEADER_BYTES or (
                line and not line.endswith(b"\n") and total >= MAX_HEADER_BYTES
            ):
                raise HeadersTooLarge(f"request header block over {MAX_HEADER_BYTES} bytes")
            lines.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(lines) > MAX_HEADER_LINES:
                raise HeadersTooLarge(f"more than {MAX_HEADER_LINES} request header lines")
        return parse_header_lines(lines)  # BadHeaderLine (a ValueError): 400

    def _handle_client_error(self, ex):
        if isinstance(ex, HeadersTooLarge):
            log.warning("request refused: 431 %s from %s", ex, self.peer)
            registry.current().sink.handshake_rejected("headers_too_large")
            self.close_connection = True
            return ("431", _HEADERS_TOO_LARGE)
        registry.current().sink.handshake_rejected("bad_request")
        return super()._handle_client_error(ex)

    # --- request dispatch ----------------------------------------------------------------

    def run_application(self) -> None:
        rt = registry.current()
        settings = rt.settings
        self.client_ip = admission.client_ip(self.environ, self.socket_ip, settings.trusted_proxies)
        bad_host = admission.host_rejection(self.environ, settings, self.server.address)
        if bad_host is not None:  # issue 13: DNS rebinding; HTTP requests and handshakes alike
            rt.sink.handshake_rejected("host")
            self.reject(bad_host)
            return None
        if not wants_websocket(self.environ):
            return WSGIHandler.run_application(self)
        rejection = check_handshake(self.environ, self.request_version)
        label = "bad_handshake"
        if rejection is None and rt.shutting_down:
            rejection, label = (
                Rejection(
                    "503 Service Unavailable", "server is shutting down", (("Retry-After", "1"),)
                ),
                "shutting_down",
            )
        if rejection is None:
            rejection, label = admission.origin_rejection(self.environ, settings), "origin"
        if rejection is None:
            rejection = rt.admit(self.client_ip)
            label = (
                "capacity" if rejection is not None and rejection.code == 503 else "per_ip_limit"
            )
        if rejection is not None:
            rt.sink.handshake_rejected(label)
            self.reject(rejection)
            return None
        self._detached = False
        try:
            self._run_websocket_application(rt)
        finally:
            if not self._detached:  # a detached socket gives its slot back when it ends
                rt.release(self.client_ip)
        return None

    def _run_websocket_application(self, rt: registry.Registry) -> None:
        self.connection_id = new_connection_id()
        ws = WebSocket(self.environ, self, rt.settings)
        self.websocket = ws
        self.environ["wsgi.websocket"] = ws
        self.environ["wsgi.websocket_version"] = "13"
        self.environ["wsapp.connection_id"] = self.connection_id
        self.environ["wsapp.client_ip"] = self.client_ip
        self.close_connection = True
        app_status: list[str] = []

        def start_response(status: str, headers: list, exc_info: Any = None):
            if ws.accepted:
                app_status.append(status)
                return lambda data: None
            return self.start_response(status, headers, exc_info)

        try:
            self.result = self.application(self.environ, start_response)
            if not ws.accepted:
                self.process_result()
                code = getattr(self, "code", None)
                if isinstance(code, int) and code >= 400:
                    rt.sink.handshake_rejected(_APP_REFUSAL_REASONS.get(code, f"http_{code}"))
            else:
                self._discard_result()
                if not ws.detached:  # a detached socket is closed by its own greenlet
                    failed = bool(app_status) and app_status[-1][:1] == "5"
                    if failed:
                        ws.close(CloseCode.INTERNAL_ERROR, "internal server error")
                    else:
                        ws.close(CloseCode.NORMAL, "")
        finally:
            if ws.accepted and not ws.detached:
                rt.finish(ws)
            self._discard_result()
            self.environ["wsgi.websocket"] = None
            self.websocket = None

    def websocket_detached(self, ws: WebSocket) -> None:
        """`ws.detach()` took the socket away: this request ends without closing it.

        The socket's reader does the end-of-connection work instead (`Registry.finish` and
        `Registry.release`). pywsgi then finds no socket to close."""
        self._detached = True
        self.close_connection = True
        self.socket = None
        self.__dict__.pop("rfile", None)
        ws.end_hook = registry.current().end_detached

    def _discard_result(self) -> None:
        close = getattr(self.result, "close", None)
        self.result = None
        if close is not None:
            close()

    def reject(self, rejection: Rejection) -> None:
        """Refuse a handshake (or a request) over plain HTTP, with a log line saying why."""
        log.warning(
            "%s refused: %s %s from %s: %s %s",
            "handshake" if wants_websocket(self.environ) else "request",
            logsafe.escape(self.environ.get("REQUEST_METHOD"), 20),
            logsafe.escape(self.environ.get("PATH_INFO")),
            self.peer,
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
        self.close_connection = True
        self.start_response(rejection.status, headers)
        self.write(body)

    # --- upgrade -------------------------------------------------------------------------

    def send_upgrade(self, ws: WebSocket) -> None:
        """Write the 101 response and register the socket (called by `ws.accept()`)."""
        key = self.environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        with contextlib.suppress(OSError):
            # Frames are written whole and coalesced by the writer; Nagle would only add delay.
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        agreement, extras = response_extras(self.environ, ws.subprotocol, ws.deflate_settings)
        self.socket.sendall(upgrade_response(key, extras))
        if agreement is not None:
            ws.session.enable_deflate(agreement)
        self.status = "101 Switching Protocols"
        self.code = 101
        self.headers_sent = True
        self.response_length = 0
        self.close_connection = True
        # The parsed request head (an email.message.Message) is not needed once upgraded: the
        # environ has every header. Dropping it saves about 1 KiB per open socket.
        self.__dict__.pop("headers", None)
        registry.current().add(ws)
        log.info(
            "ws open conn=%s path=%s peer=%s origin=%s",
            ws.id,
            logsafe.escape(self.environ.get("PATH_INFO")),
            self.peer,
            logsafe.escape(self.environ.get("HTTP_ORIGIN")),
        )

    # --- logging -------------------------------------------------------------------------

    def log_request(self) -> None:
        if getattr(self, "code", None) == 101 or str(self.status).startswith("101"):
            return  # a WebSocket logs one line at open and one at close instead
        if getattr(self, "environ", None) is None:
            return  # refused before an environ existed (431, 400): already logged by us
        # Skip the stock WebSocketHandler's logger; gunicorn's handler (if mixed in) logs access.
        with logsafe.access_log_view(self):  # escaped, tokens redacted (issue 13)
            super(WebSocketHandler, self).log_request()

    def log_error(self, msg, *args) -> None:
        """pywsgi's line for a bad request quotes the raw request line (a `repr`): redact
        its secrets, escape what a `repr` leaves (non-ASCII)."""
        text = msg % args if args else msg
        super().log_error(logsafe.escape(logsafe.redact_text(text), 2000, quotes=False))
