"""The hardened `wsgi.websocket`: gevent-websocket's WebSocket API with a correct core.

Compared with gevent-websocket 0.10.1 it
- parses frames with `frames.Parser` (strict RFC 6455, size limit before any payload
  is read, UTF-8 checked as bytes arrive, C-speed unmasking);
- sends close frames that carry the code and reason, completes the close handshake and
  lingers so the peer actually receives our close frame before TCP goes away;
- serialises writes with a lock, so greenlets sending at once never interleave frames;
- is accepted lazily: no 101 is written until the view calls `accept()` (or first
  receives/sends), so a view can still refuse with a plain HTTP status;
- can leave the request that opened it (`detach`): the socket then lives on in a greenlet
  of its own, and the handler, its environ, buffered reader and the request's Flask
  context are freed while the connection waits (about half of an idle socket's memory).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent import socket as gsocket
from gevent.event import Event
from gevent.lock import Semaphore
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.websocket import WebSocket as StockWebSocket

from wsapp import logsafe
from wsapp.protocol import frames
from wsapp.protocol.frames import Close, CloseCode, Opcode, Ping, Pong, ProtocolError

if TYPE_CHECKING:
    from wsapp.settings import Settings

log = logging.getLogger("wsapp.ws")

READ_SIZE = 65536
RFILE_CHUNK = 1024  # the size of the handler's rfile buffer (WsappHandler.__init__)

CONNECTING, OPEN, CLOSING, CLOSED = "CONNECTING", "OPEN", "CLOSING", "CLOSED"


class WebSocket(StockWebSocket):
    """One server-side WebSocket; created by `WsappHandler`, found at `environ["wsgi.websocket"]`."""

    # Slots keep an idle connection small; "__dict__" still admits ad-hoc attributes.
    __slots__ = (
        "settings", "id", "peer", "peer_ip", "_socket", "_rfile", "_recv", "_raw_send", "_parser",
        "_pending", "_deferred_close", "_write_lock", "_closed_event", "_reader", "state", "opened_at",
        "close_code", "close_reason", "close_initiator", "last_received", "messages_in", "messages_out",
        "bytes_in", "bytes_out", "control_sink", "detached", "_carry", "fd", "__dict__", "__weakref__",
    )

    def __init__(self, environ: dict, handler: Any, settings: Settings) -> None:  # noqa: D107
        # The stock __init__ is skipped on purpose: it wires the per-byte stream reader.
        self.environ = environ
        self.handler = handler
        self.settings = settings
        self.stream = None
        self.id = handler.connection_id
        self.peer = handler.peer
        self.peer_ip = handler.peer_ip
        self._socket = handler.socket
        self._rfile = handler.rfile
        self._recv: Callable[[int], bytes] | None = None
        raw = getattr(self._socket, "_sock", None)  # gevent wraps a non-blocking socket
        self._raw_send: Callable[[Any], int] = raw.send if raw is not None else self._socket.send
        self._parser = frames.Parser(settings.max_message_bytes)
        self._pending: list[str | bytes] = []
        self._deferred_close: Close | None = None
        self._write_lock = Semaphore()
        self._closed_event: Event | None = None  # created only if someone waits for the close
        self._reader: gevent.Greenlet | None = None
        self.state = CONNECTING
        self.opened_at = 0.0
        self.close_code: int | None = None  # the code that ended the connection (1006: no close frame)
        self.close_reason = ""
        self.close_initiator = ""  # "server", "client" or "" before closing
        self.last_received = time.monotonic()
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        #: Where pong replies go; a Connection points it at its writer queue (one writer).
        self.control_sink: Callable[[bytes], Any] | None = None
        #: True once `detach` moved the socket off the request that opened it.
        self.detached = False
        self._carry = b""  # bytes taken from the handler's rfile at detach, read first
        #: The socket's file descriptor once accepted (-1 before): the C broadcast writes to
        #: it only while `state` is OPEN, which ends before the descriptor is closed.
        self.fd = -1

    def __del__(self) -> None:
        """No I/O from the garbage collector (the stock class closes here)."""

    # --- stock-compatible API ------------------------------------------------------------

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self.state in (CLOSING, CLOSED)

    @closed.setter
    def closed(self, value: bool) -> None:  # the stock code assigns it; we derive it
        pass

    @property
    def accepted(self) -> bool:
        return self.state != CONNECTING

    @property
    def origin(self) -> str | None:
        return self.environ.get("HTTP_ORIGIN")

    def accept(self) -> None:
        """Send the 101 response; idempotent."""
        if self.state != CONNECTING:
            return
        self.handler.send_upgrade(self)
        self.fd = self._socket.fileno()
        self.state = OPEN
        self.opened_at = time.monotonic()
        self.last_received = self.opened_at

    def receive(self) -> str | bytes | None:
        """Next complete message (`str` or `bytes`), or None once the connection is closed."""
        if not self._pending and not self._fill():
            return None
        return self._pending.pop(0)

    read_message = receive

    def receive_many(self) -> list[str | bytes]:
        """Every message completed by the next read(s): at least one, or [] once closed.

        The batch form lets a view answer a burst with one write instead of one per message.
        """
        if not self._pending and not self._fill():
            return []
        batch = self._pending
        self._pending = []
        return batch

    def _fill(self) -> bool:
        """Read until at least one message is pending; False once the connection is over."""
        if self.state == CONNECTING:
            self.accept()
        parser = self._parser
        pending = self._pending
        while not pending:
            if self._deferred_close is not None:
                event, self._deferred_close = self._deferred_close, None
                self._on_close_frame(event)
                return False
            if parser.error is not None:
                self._fail(parser.error.code, parser.error.reason)
                return False
            if self.state == CLOSED or parser.closed:
                return False
            data = self._read()
            if not data:
                self._on_transport_lost()
                return False
            controls = parser.controls
            try:
                events = parser.feed(data)
            except ProtocolError as exc:
                self._fail(exc.code, exc.reason)
                return False
            if parser.controls == controls and self.state == OPEN:
                # Only data messages (the common case): no per-event dispatch.
                self.messages_in += len(events)
                pending.extend(events)
            else:
                for event in events:
                    self._handle_event(event)
        return True

    def send(self, message: str | bytes, binary: bool | None = None) -> None:
        """Send one message: text for `str` (unless `binary`), binary for `bytes`."""
        if self.state == CONNECTING:
            self.accept()
        if binary is None:
            binary = not isinstance(message, str)
        payload = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        self.send_frame(frames.encode_frame(Opcode.BINARY if binary else Opcode.TEXT, payload))
        self.messages_out += 1

    def send_frame(self, data: bytes | bytearray | memoryview) -> None:
        """Write pre-encoded frame bytes atomically with respect to other senders."""
        if self.state != OPEN:
            raise WebSocketError("Connection is already closed")
        self._write(data)

    def close(self, code: int = CloseCode.NORMAL, message: str | bytes = "") -> None:
        """Start (or finish) the closing handshake and release the TCP connection."""
        reason = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        if self.state == CONNECTING:
            self.state = CLOSED
            return
        if self.state != OPEN:
            if self.state == CLOSING:
                self._wait_closed()
            return
        self._send_close(code, reason, initiator="server")
        self._wait_closed()

    def detach(self) -> None:
        """Leave the request that opened this socket; serving goes on in another greenlet.

        The gevent socket is re-wrapped around the same file descriptor (the handler's
        object is detached, so neither the handler nor the server closes the descriptor
        when the request ends), bytes still in the handler's rfile are carried over, and
        only the two environ entries the socket itself uses are kept. After this the
        handler tells the runtime it no longer owns the connection.
        """
        if self.detached or self.state != OPEN:
            return
        if self._recv is None:
            self._carry = self._take_buffered()
        old = self._socket
        family, kind, proto = old.family, old.type, old.proto
        new = gsocket.socket(family, kind, proto, fileno=old.detach())
        self._socket = new
        self._recv = new.recv
        self._raw_send = new._sock.send
        self._rfile = None
        environ = self.environ
        self.environ = {key: environ[key] for key in ("PATH_INFO", "HTTP_ORIGIN") if key in environ}
        handler, self.handler = self.handler, None
        self.detached = True
        handler.websocket_detached(self)

    # --- reading -------------------------------------------------------------------------

    def _read(self) -> bytes:
        """One read from the peer.

        The first read takes what the handler's buffered rfile may still hold; every read
        after that is `socket.recv`, which (unlike a buffered read) holds no buffer while
        it waits: an idle connection costs no read buffer.
        """
        self._reader = gevent.getcurrent()
        try:
            recv = self._recv
            if self._carry:
                data, self._carry = self._carry, b""
            elif recv is not None:
                data = recv(READ_SIZE)
            else:
                data = self._take_buffered()
                if not data:
                    data = self._recv(READ_SIZE)  # type: ignore[misc]
        except (OSError, ValueError, AttributeError):
            return b""
        finally:
            self._reader = None
        self.bytes_in += len(data)
        self.last_received = time.monotonic()
        return data

    def _take_buffered(self) -> bytes:
        """Bytes the client sent right behind its handshake, still in the handler's rfile.

        Peeked without blocking; afterwards every read is a plain `socket.recv`, so a
        waiting connection holds neither a read buffer nor the buffered reader's frames.
        """
        sock = self._socket
        self._recv = sock.recv
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            buffered = self._rfile.peek(1)
        except OSError:
            buffered = b""
        finally:
            sock.settimeout(timeout)
        return self._rfile.read1(len(buffered)) if buffered else b""

    def _handle_event(self, event: frames.Event) -> None:
        kind = type(event)
        if kind is str or kind is bytes:
            if self.state == OPEN:
                self.messages_in += 1
                self._pending.append(event)
        elif kind is Ping:
            if self.state == OPEN:
                self._send_control(frames.encode_frame(Opcode.PONG, event.payload))
        elif kind is Pong:
            pass  # receiving it updated last_received, which is all keepalive needs
        elif kind is Close:
            if self._pending:
                # Messages that arrived before the close are answered first (their replies
                # go out with the batch), then the close is echoed on the next receive.
                self._deferred_close = event
            else:
                self._on_close_frame(event)

    def _on_close_frame(self, event: Close) -> None:
        if self.state == OPEN:
            # Peer-initiated: echo its code (RFC 6455 5.5.1), then the server closes TCP first.
            reply = event.code if event.code is not None else CloseCode.NORMAL
            self.close_code, self.close_reason, self.close_initiator = reply, event.reason, "client"
            self.state = CLOSING
            self._try_write(frames.encode_close(reply, ""))
        # Otherwise this is the reply to our own close: the handshake is complete.
        self._finish()

    def _on_transport_lost(self) -> None:
        if self.state == OPEN:
            self.close_code, self.close_reason, self.close_initiator = CloseCode.ABNORMAL, "connection lost", "client"
        self._finish()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): close frame with the code, linger, close TCP."""
        log.warning(
            "protocol error from %s on %s (conn %s): %d %s",
            self.peer, logsafe.escape(self.path), self.id, code, reason,
        )
        if self.state == OPEN:
            self._send_close(code, reason, initiator="server")
        self._linger_and_finish()

    # --- closing -------------------------------------------------------------------------

    def _send_close(self, code: int, reason: str, initiator: str) -> None:
        self.close_code, self.close_reason, self.close_initiator = code, reason, initiator
        self.state = CLOSING
        self._try_write(frames.encode_close(code, reason))

    def _wait_closed(self) -> None:
        """Wait briefly for the peer's close reply; read it ourselves if nobody else reads."""
        timeout = self.settings.close_timeout
        if self._reader is not None and self._reader is not gevent.getcurrent():
            if self.state == CLOSED:
                return
            if self._closed_event is None:
                self._closed_event = Event()
            if not self._closed_event.wait(timeout):
                self._finish()
            return
        with gevent.Timeout(timeout, False):
            while self.state != CLOSED:
                data = self._read()
                if not data:
                    break
                try:
                    events = self._parser.feed(data)
                except ProtocolError:
                    break
                for event in events:
                    if type(event) is Close:
                        self._finish()
                        return
        self._finish()

    def _linger_and_finish(self) -> None:
        """Half-close and drain so our close frame is not destroyed by a TCP reset."""
        sock = self._socket
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        with gevent.Timeout(self.settings.close_timeout, False):
            while self._read():
                pass
        self._finish()

    def _finish(self) -> None:
        if self.state == CLOSED:
            return
        if self.close_code is None:
            self.close_code, self.close_initiator = CloseCode.ABNORMAL, "server"
        self.state = CLOSED
        sock = self._socket
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
        if self._closed_event is not None:
            self._closed_event.set()

    def abort(self, code: int = CloseCode.ABNORMAL, reason: str = "aborted") -> None:
        """Drop the TCP connection at once (dead or hopelessly slow peer)."""
        if self.state in (OPEN, CLOSING) and self.close_code is None:
            self.close_code, self.close_reason, self.close_initiator = code, reason, "server"
        self._finish()

    # --- writing -------------------------------------------------------------------------

    def _send_control(self, frame: bytes) -> None:
        if self.control_sink is not None:
            self.control_sink(frame)
        else:
            self._try_write(frame)

    def _send_some(self, data: bytes | bytearray | memoryview) -> int:
        """One send() on the underlying non-blocking socket: how many bytes it took."""
        try:
            return self._raw_send(data)
        except BlockingIOError:
            return 0

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        """Write `data` whole, never interleaved with another greenlet's write.

        Usually the kernel takes it all at once: one send() on the underlying non-blocking
        socket, skipping gevent's sendall bookkeeping (it queries SO_SNDBUF on every call).
        A non-blocking send cannot yield to another greenlet, so when nobody holds the write
        lock it needs no lock; only the rest of a partial send waits cooperatively, under it.
        """
        lock = self._write_lock
        try:
            sent = 0 if lock.locked() else self._send_some(data)
            if sent < len(data):
                with lock:
                    if not sent:  # someone else was writing: our turn now
                        sent = self._send_some(data)
                    if sent < len(data):
                        self._socket.sendall(memoryview(data)[sent:])
        except (OSError, AttributeError, TypeError) as exc:
            self._on_transport_lost()
            raise WebSocketError("Socket is dead") from exc
        self.bytes_out += len(data)

    def write_nowait(self, data: bytes) -> int:
        """One non-blocking send; returns how many bytes the kernel took (maybe 0).

        For callers that cannot wait (loop callbacks). Takes nothing (0) while a greenlet
        is in the middle of a write, so frames never interleave: the caller then writes
        the rest through `send_frame`, which waits its turn. Kept flat (no helper calls):
        a fan-out calls it once per member.
        """
        if self.state != OPEN:
            raise WebSocketError("Connection is already closed")
        if self._write_lock.locked():
            return 0
        try:
            sent = self._raw_send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._on_transport_lost()
            raise WebSocketError("Socket is dead") from exc
        self.bytes_out += sent
        return sent

    def _try_write(self, data: bytes) -> bool:
        try:
            self._write(data)
        except WebSocketError:
            return False
        return True

    def send_keepalive_ping(self, frame: bytes) -> None:
        if self.state == OPEN:
            self._send_control(frame)

