"""`UwsgiConnection`: the server side of one WebSocket under uWSGI, for wsapp's engine.

Under gevent's pywsgi the engine's `WebSocket` gets its socket, peer, connection id and
the 101 from `WsappHandler`. Under uWSGI (`wsapp.uwsgi_glue`) this object plays that part
for one request: uWSGI has parsed the request head; the connection's descriptor
(`uwsgi.connection_fd()`) is duplicated into a gevent socket the engine owns, so the
socket can outlive the request (`WebSocket.serve`/`detach`): uWSGI closes its own
descriptor when the request ends, and TCP stays open until the engine closes ours.

uWSGI's HTTP parser reads whatever the first `read()` brought, so a frame the client sent
right behind its handshake sits in uWSGI's request buffer, not in the socket. uWSGI hands
such bytes out through `uwsgi_proto_base_read_body` (its WebSocket and body readers use
it); no Python API exposes it, so `carried_bytes` calls that exported C function on the
request's `wsgi_req` (which the gevent loop engine stores on the request greenlet as
`uwsgi_wsgi_req`). Without the symbol (another uWSGI build) those bytes would be lost:
`CARRY_SUPPORTED` says which, and the glue logs it once at start.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import gevent
from gevent import socket as gsocket

from wsapp import logsafe
from wsapp.engine import registry
from wsapp.protocol.handler import new_connection_id
from wsapp.protocol.handshake import response_extras, upgrade_response

if TYPE_CHECKING:
    from wsapp.engine.websocket import WebSocket

log = logging.getLogger("wsapp.handler")  # the same logger (and lines) as WsappHandler

#: One read of what uWSGI holds: more than its request buffer can hold (`buffer-size` is
#: at most 65535), so a single call returns every byte it kept.
CARRY_CHUNK = 65536


def _read_body_function() -> Any:
    """uWSGI's `ssize_t uwsgi_proto_base_read_body(wsgi_req *, char *, size_t)`, or None.

    `PyDLL`: the call keeps the GIL (it only copies uWSGI's buffer or makes one
    non-blocking `read`)."""
    try:
        fn = ctypes.PyDLL(None).uwsgi_proto_base_read_body
    except (AttributeError, OSError):
        return None
    fn.restype = ctypes.c_ssize_t
    fn.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
    return fn


_READ_BODY = _read_body_function()
#: Whether bytes uWSGI read past the request head can be handed to the engine.
CARRY_SUPPORTED = _READ_BODY is not None


def carried_bytes(wsgi_req: int | None) -> bytes:
    """The bytes uWSGI read beyond the request head (a client's first frames, when it did
    not wait for the 101), or, if it kept none, what one `read` of the socket returns now;
    b"" if nothing. One call, in the request, after the 101: it never blocks (uWSGI's
    sockets are non-blocking) and takes at most CARRY_CHUNK bytes, the reader's own read
    size; everything after comes through the engine's reader."""
    if _READ_BODY is None or not wsgi_req:
        return b""
    buf = ctypes.create_string_buffer(CARRY_CHUNK)
    got = _READ_BODY(wsgi_req, buf, CARRY_CHUNK)
    # 0: the peer closed (the reader sees it too); -1: EAGAIN, or an error the reader meets
    return buf.raw[:got] if got > 0 else b""


class _Carry:
    """The `rfile` the engine peeks at on `accept()` (`WebSocket._take_buffered`): here
    the bytes uWSGI holds for this connection, fetched when first asked for."""

    __slots__ = ("_wsgi_req", "_data")

    def __init__(self, wsgi_req: int | None) -> None:
        self._wsgi_req = wsgi_req
        self._data: bytes | None = None

    def peek(self, size: int = 1) -> bytes:
        if self._data is None:
            self._data = carried_bytes(self._wsgi_req)
        return self._data

    def read1(self, size: int = -1) -> bytes:
        data = self.peek()
        taken = data if size < 0 else data[:size]
        self._data = data[len(taken):]
        return taken


def _peer_of(sock: gsocket.socket, environ: dict) -> tuple[str, str]:
    """(ip, "ip:port") of the TCP peer; REMOTE_ADDR for a Unix socket."""
    try:
        addr = sock.getpeername()
    except OSError:
        addr = None
    if isinstance(addr, tuple) and len(addr) >= 2:
        ip = str(addr[0])
        return ip, f"[{ip}]:{addr[1]}" if ":" in ip else f"{ip}:{addr[1]}"
    ip = environ.get("REMOTE_ADDR") or "unix"
    return ip, ip


class UwsgiConnection:
    """What `WebSocket` needs of the server for one uWSGI request (the handler's role).

    `socket` is a duplicate of the request's descriptor, owned by the engine from
    `accept()` on; `client_ip` is the address limits count (X-Forwarded-For through
    trusted proxies, set by the glue), `peer` the one log lines show."""

    def __init__(self, environ: dict, fd: int) -> None:
        self.environ = environ
        self.socket = gsocket.socket(fileno=os.dup(fd))
        self.socket_ip, self._peer_text = _peer_of(self.socket, environ)
        self.client_ip: str | None = None
        self.connection_id = new_connection_id()
        self.rfile = _Carry(getattr(gevent.getcurrent(), "uwsgi_wsgi_req", None))
        self.detached = False

    @property
    def peer_ip(self) -> str:
        return self.client_ip if self.client_ip is not None else self.socket_ip

    @property
    def peer(self) -> str:
        if self.client_ip is not None and self.client_ip != self.socket_ip:
            return f"{self.client_ip} (via {self._peer_text})"
        return self._peer_text

    def send_upgrade(self, ws: WebSocket) -> None:
        """Write the 101 response and register the socket (called by `ws.accept()`).

        uWSGI never learns of it: no `start_response` was called, so it writes nothing
        when the request ends."""
        key = self.environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        with contextlib.suppress(OSError):
            # Frames are written whole and coalesced by the writer; Nagle would only add delay.
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        agreement, extras = response_extras(self.environ, ws.subprotocol, ws.deflate_settings)
        self.socket.sendall(upgrade_response(key, extras))
        if agreement is not None:
            ws.session.enable_deflate(agreement)
        registry.current().add(ws)
        log.info(
            "ws open conn=%s path=%s peer=%s origin=%s",
            ws.id,
            logsafe.escape(self.environ.get("PATH_INFO")),
            self.peer,
            logsafe.escape(self.environ.get("HTTP_ORIGIN")),
        )

    def websocket_detached(self, ws: WebSocket) -> None:
        """`ws.detach()` took the socket away: the request ends without closing it; the
        socket's reader does the end-of-connection work (`Registry.end_detached`)."""
        self.detached = True
        ws.end_hook = registry.current().end_detached

    def close(self) -> None:
        """The request is over and no WebSocket took the descriptor: close our duplicate."""
        sock, self.socket = self.socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                if sock.fileno() >= 0:
                    sock.close()
