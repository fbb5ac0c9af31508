"""The hardened `wsgi.websocket`: gevent-websocket's WebSocket API on a connection engine.

The protocol is decided by a sans-I/O `Session` (wsapp.protocol.session); this class
only moves bytes and wakes greenlets:

- one reader greenlet per connection, started at `accept()`, reads the socket, feeds
  the session and writes what it answers (pongs, the close reply) whatever the view is
  doing: sleeping, only sending, or never calling `receive()`. Messages go to the view's
  `receive()` through an inbox bounded in bytes (WSAPP_RECEIVE_QUEUE_BYTES): when the
  view does not take them, the reader stops reading and TCP pushes back. A view may
  instead hand the reader a function that handles each batch of messages in place
  (`serve`): no inbox, no greenlet switch (echo and chat do this);
- every byte goes out through the socket's `Outbox` (one write path, byte budget);
- no 101 is written until the view calls `accept()` (or first receives or sends), so a
  view can still refuse with a plain HTTP status;
- the socket can leave the request that opened it (`serve`/`detach`): the handler, its
  environ, buffered reader and Flask context are freed while the connection waits.

Compared with gevent-websocket 0.10.1 (see ../README): strict RFC 6455, close codes on
the wire, no interleaved frames, keepalive independent of the view.

It is longer than 400 lines because accepting, the reader loop and the send entry points
share the connection's slots and must change together; receiving and closing are in
inbox.py and closing.py.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import gevent
from gevent import socket as gsocket
from gevent.event import Event
from geventwebsocket.websocket import WebSocket as StockWebSocket

from wsapp import logsafe
from wsapp.engine.closing import ClosingMixin
from wsapp.engine.errors import ConnectionClosed
from wsapp.engine.inbox import InboxMixin
from wsapp.engine.outbox import Outbox
from wsapp.protocol import frames
from wsapp.protocol.compression import Compressor, SharedDeflater
from wsapp.protocol.frames import CloseCode, Opcode
from wsapp.protocol.session import CloseCause, Session, State

if TYPE_CHECKING:
    from wsapp.protocol.deflate import Agreement, DeflateSettings
    from wsapp.settings import Settings

log = logging.getLogger("wsapp.ws")

READ_SIZE = 65536
#: Seconds of work a reader does on reads that follow each other without waiting before
#: it lets other greenlets run (a flood of small frames must not hold the event loop; a
#: large message costs little per read and never gets there). The slow parsing path
#: (fragments) is fed in SLICE pieces. Both wait with `gevent.idle()`, not `sleep(0)`:
#: readers that keep yielding with sleep(0) keep the loop from polling sockets at all,
#: so everyone else's I/O would wait for the flood.
BUSY_YIELD = 0.005
BACK_TO_BACK = 0.001  # a gap longer than this between two reads: the reader waited
SLICE = 4096
RFILE_CHUNK = 1024  # the size of the handler's rfile buffer (WsappHandler.__init__)

Handle = Callable[[list], "list[bytes] | None"]



class WebSocket(InboxMixin, ClosingMixin, StockWebSocket):
    """One server-side WebSocket: made by `WsappHandler`, at `environ["wsgi.websocket"]`."""

    # Slots keep an idle connection small; "__dict__" still admits ad-hoc attributes.
    __slots__ = (
        "settings", "id", "peer", "peer_ip", "_socket", "_rfile", "session", "outbox", "_inbox",
        "_inbox_bytes", "_inbox_event", "_resume", "_reader", "_handle", "_on_end", "_closed_event",
        "opened_at", "last_received", "messages_in", "bytes_in", "detached", "_ended",
        "_close_wait", "end_hook", "_held", "subprotocol", "_end_callbacks", "deflate_settings",
        "__dict__", "__weakref__",
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
        self.session = Session(
            settings.max_message_bytes, settings.max_fragments, State.CONNECTING,
            settings.prealloc_bytes,
        )
        self.outbox: Outbox | None = None
        self._inbox: collections.deque | None = None  # created on the first queued message
        self._inbox_bytes = 0
        self._inbox_event: Event | None = None
        self._resume: Event | None = None
        self._reader: gevent.Greenlet | None = None
        self._handle: Handle | None = None
        self._on_end: Callable[[], None] | None = None
        self._closed_event: Event | None = None  # created only if someone waits for the end
        self.opened_at = 0.0
        self.last_received = time.monotonic()
        self.messages_in = 0
        self.bytes_in = 0
        #: True once `detach` moved the socket off the request that opened it.
        self.detached = False
        self._ended = False
        self._close_wait = False
        self._held = False  # the reader waits for the view to take its messages
        #: Set by the handler when the socket leaves its request: the runtime's
        #: end-of-connection bookkeeping, called once by the reader when it is done.
        self.end_hook: Callable[[WebSocket], None] | None = None
        #: The subprotocol the 101 names (Sec-WebSocket-Protocol), chosen before `accept()`
        #: from those the client offered (wsapp.extension); None: the response names none.
        self.subprotocol: str | None = None
        #: `add_end_callback`'s callbacks; False once they ran (later ones run at once).
        self._end_callbacks: list[Callable[[], None]] | Literal[False] | None = None
        #: What permessage-deflate this socket may negotiate when it is accepted (RFC 7692;
        #: the process's WSAPP_DEFLATE_* by default). A view may set it before `accept()`:
        #: None declines deflate, `deflate_settings.with_changes(...)` tunes it per route.
        self.deflate_settings: DeflateSettings | None = settings.deflate_settings

    def __del__(self) -> None:
        """No I/O from the garbage collector (the stock class closes here)."""

    # --- state ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self.session.state is not State.OPEN and self.session.state is not State.CONNECTING

    @closed.setter
    def closed(self, value: bool) -> None:  # the stock code assigns it; we derive it
        pass

    @property
    def close_code(self) -> int | None:
        return self.session.close_code

    @property
    def close_reason(self) -> str:
        return self.session.close_reason

    @property
    def close_initiator(self) -> str:
        return self.session.close_initiator

    @property
    def accepted(self) -> bool:
        return self.session.state is not State.CONNECTING

    @property
    def deflate(self) -> Agreement | None:
        """The permessage-deflate agreement once accepted; None when not negotiated."""
        return self.session.deflate

    @property
    def broadcast_compressor(self) -> Compressor | None:
        """The process's shared compressor when this socket negotiated deflate without
        server context takeover: a frame it compressed suits this socket as it is."""
        compressor = self.session.compressor
        return compressor if type(compressor) is SharedDeflater else None

    @property
    def origin(self) -> str | None:
        return self.environ.get("HTTP_ORIGIN")

    @property
    def fd(self) -> int:
        return self.outbox.fd if self.outbox is not None else -1

    @property
    def bytes_out(self) -> int:
        return self.outbox.bytes_out if self.outbox is not None else 0

    @property
    def messages_out(self) -> int:
        return self.outbox.messages_out if self.outbox is not None else 0

    @property
    def path(self) -> str:
        return self.environ.get("PATH_INFO", "")

    def keepalive_eligible(self) -> bool:
        """Open, and its reader is reading (not held back by a view that takes nothing)."""
        return self.session.state is State.OPEN and not self._held

    def queued(self) -> int:
        """Bytes waiting to be sent (not yet taken by the kernel)."""
        return self.outbox.queued_bytes if self.outbox is not None else 0

    # --- opening -------------------------------------------------------------------------

    def accept(self) -> None:
        """Send the 101 response and start the reader; idempotent."""
        if self.session.state is not State.CONNECTING:
            return
        self.handler.send_upgrade(self)
        carry = self._take_buffered()
        # Our own gevent socket on the same descriptor: the request's socket object is
        # detached, so neither the handler nor the server closes the descriptor when the
        # request ends, and the connection can outlive it (`detach`).
        old = self._socket
        sock = gsocket.socket(old.family, old.type, old.proto, fileno=old.detach())
        self._socket = sock
        self._rfile = None
        budget = self.settings.send_buffer_bytes
        if budget:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, budget)
        self.outbox = Outbox(
            sock._sock, self.settings.send_queue_bytes, self._overflow, self._transport_error
        )
        self.session.state = State.OPEN
        self.opened_at = time.monotonic()
        self.last_received = self.opened_at
        self._reader = gevent.spawn(self._read_loop, carry)

    def _take_buffered(self) -> bytes:
        """Bytes the client sent right behind its handshake, still in the handler's rfile
        (peeked without blocking); afterwards every read is a plain `socket.recv`, so a
        waiting connection holds neither a read buffer nor the buffered reader."""
        rfile = self._rfile
        if rfile is None:
            return b""
        sock = self._socket
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            buffered = rfile.peek(1)
        except OSError:
            buffered = b""
        finally:
            sock.settimeout(timeout)
        return rfile.read1(len(buffered)) if buffered else b""

    # --- serving in place (echo, chat, extension routes) -----------------------------------

    def serve(self, handle: Handle, on_end: Callable[[], None] | None = None) -> None:
        """Have the reader call `handle(batch)` for each batch of messages, in place.

        `handle` may return frames to send (written before the reader reads again: TCP
        backpressure on this peer). The request then leaves the socket (`detach`); `on_end`
        runs when the connection is over (outside any Flask context). Returns at once."""
        if self.session.state is State.CONNECTING:
            self.accept()
        while self._inbox:  # messages the reader queued before this call: first, in order
            self._handle_batch(handle, self._take_inbox())
        self._handle = handle
        self._on_end = on_end
        self.detach()
        if not self.detached:  # closed already: the request finishes it
            if on_end is not None:
                self._on_end = None
                on_end()
            return
        self._wake_reader()

    def detach(self) -> None:
        """Leave the request that opened this socket; the reader greenlet carries on.

        Only the two environ entries the socket itself uses are kept. After this the
        handler tells the runtime it no longer owns the connection."""
        if self.detached or self.session.state is not State.OPEN or self.handler is None:
            return
        environ = self.environ
        self.environ = {key: environ[key] for key in ("PATH_INFO", "HTTP_ORIGIN") if key in environ}
        handler, self.handler = self.handler, None
        self.detached = True
        handler.websocket_detached(self)

    # --- the reader ---------------------------------------------------------------------

    def _read_loop(self, data: bytes) -> None:
        session = self.session
        recv = self._socket.recv
        busy = 0.0
        done = 0.0
        monotonic = time.monotonic
        try:
            while True:
                if data:
                    self.bytes_in += len(data)
                    self.last_received = now = monotonic()
                    if now - done > BACK_TO_BACK:
                        busy = 0.0
                    self._feed(data)
                    done = monotonic()
                    busy += done - now
                    if busy > BUSY_YIELD:
                        busy = 0.0
                        gevent.idle()
                if session.close_expected() or session.state is State.CLOSED:
                    if session.failed and session.cause is not CloseCause.SLOW_CONSUMER:
                        log.warning(
                            "protocol error from %s on %s (conn %s): %d %s", self.peer,
                            logsafe.escape(self.path), self.id, session.close_code,
                            session.close_reason,
                        )
                    break
                if session.state is State.CLOSING:
                    data = self._read_closing(recv)
                else:
                    data = recv(READ_SIZE)
                if not data:
                    session.receive_eof()
                    break
        except (OSError, ValueError, AttributeError):  # socket closed under us
            session.receive_eof()
        except gevent.GreenletExit:
            pass
        except Exception:
            log.exception("error in WebSocket handler (conn %s)", self.id)
            self._close_now(
                CloseCode.INTERNAL_ERROR, "internal server error", CloseCause.INTERNAL_ERROR
            )
        finally:
            self._end_tcp()
            self._end()

    def _read_closing(self, recv: Callable[[int], bytes]) -> bytes:
        """While our close frame waits for its reply: read with WSAPP_CLOSE_TIMEOUT."""
        with gevent.Timeout(self.settings.close_timeout, False):
            return recv(READ_SIZE)
        return b""

    def _feed(self, data: bytes) -> None:
        """Hand `data` to the session, then act on what it decided, in stream order:
        its replies (pongs), the messages, then a close reply held behind them."""
        session = self.session
        parser = session.parser
        if (
            len(data) > SLICE
            and parser.payload_due() < len(data)
            and (parser.in_message or parser.pending() or (data[0] & 0xC0) != 0x80)
        ):
            # The slow path (fragments, partial frames; a frame without FIN starts a
            # fragmented message; RSV1: a compressed one, which inflates up to the size
            # limit) costs more per frame: let other connections run between slices. Not
            # when the read is the middle of one large payload: one unmask and append.
            for start in range(0, len(data), SLICE):
                if start:
                    gevent.idle()
                self._feed(data[start:start + SLICE])
            return
        session.receive_data(data)
        out = session.data_to_send()
        if out:
            self.outbox.write(out, 0, wait=True)  # type: ignore[union-attr]
        if session.has_events():
            messages = session.events_received()
            self.messages_in += len(messages)
            handle = self._handle
            if handle is not None:
                self._handle_batch(handle, messages)
            else:
                self._queue_messages(messages)
            out = session.data_to_send()
            if out:
                self.outbox.write(out, 0, wait=True)  # type: ignore[union-attr]

    # --- sending -----------------------------------------------------------------------

    def send(self, message: str | bytes, binary: bool | None = None) -> None:
        """Send one message: text for `str` (unless `binary`), binary for `bytes`.

        Waits while this socket's send queue is over its budget (the peer reads slowly).
        Raises `ConnectionClosed` (a `WebSocketError`) once the connection is closing."""
        if self.session.state is State.CONNECTING:
            self.accept()
        if binary is None:
            binary = not isinstance(message, str)
        parts = self.session.encode_parts(message, binary)  # compressed if negotiated
        if self.session.state is not State.OPEN or not self.outbox.write(parts, 1, wait=True):  # type: ignore[union-attr]
            raise ConnectionClosed(self.session.close_code, self.session.close_reason)

    def send_frame(self, frame: bytes) -> bool:
        """Queue one pre-encoded frame; never blocks. False if closed (or now, as too slow)."""
        if self.session.state is not State.OPEN:
            return False
        return self.outbox.write((frame,), 1)  # type: ignore[union-attr]

    def send_frames(self, frames_: list[bytes]) -> bool:
        if self.session.state is not State.OPEN:
            return False
        return self.outbox.write(frames_, len(frames_))  # type: ignore[union-attr]

    def ping(self, payload: bytes = b"") -> bool:
        """Send a ping (never blocks); False if the connection is not open."""
        if self.session.state is not State.OPEN:
            return False
        return self.outbox.write((frames.encode_frame(Opcode.PING, payload),), 0)  # type: ignore[union-attr]

    send_keepalive_ping = ping

