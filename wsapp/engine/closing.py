"""Ending a connection: the closing handshake, slow consumers, aborts, releasing TCP.

A mixin of `wsapp.engine.websocket.WebSocket` (its slots live there). RFC 6455 7.1: the
closing handshake is started by a close frame and completed by the peer's; the server
ends TCP first; a connection we fail lingers (half-closed, drained) so our close frame
is not destroyed by a TCP reset.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable

import gevent
from gevent.event import Event

from wsapp.protocol.close import is_valid_close_code
from wsapp.protocol.frames import CloseCode
from wsapp.protocol.session import CloseCause, State

log = logging.getLogger("wsapp.ws")
READ_SIZE = 65536

_CAUSE_OF_CODE = {
    CloseCode.NORMAL: CloseCause.SERVER,
    CloseCode.GOING_AWAY: CloseCause.SHUTDOWN,
    CloseCode.INTERNAL_ERROR: CloseCause.INTERNAL_ERROR,
}


class ClosingMixin:
    """Closing for `WebSocket`; see the module docstring."""

    __slots__ = ()

    def _overflow(self) -> None:
        """Slow consumer: drop its backlog, tell it why, and never let it hold anyone up."""
        if self.session.state is not State.OPEN:
            return
        log.warning(
            "slow consumer: %s send queue over %d bytes, closing 1008 (conn %s, peer %s)",
            self.path, self.settings.send_queue_bytes, self.id, self.peer,
        )
        self.outbox.drop_queued()  # type: ignore[union-attr]
        self._close_frame(CloseCode.POLICY_VIOLATION, "send queue overflow: client too slow",
                          CloseCause.SLOW_CONSUMER)
        # If the peer never reads again, the close frame cannot go out either: cut TCP.
        gevent.spawn_later(self.settings.close_timeout, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self.session.state is not State.CLOSED:
            self.abort()

    def _transport_error(self) -> None:
        """A send failed (reset, broken pipe): nothing more can be written. The reader still
        reads what the peer sent before it went (TCP delivered it: it is processed), then
        meets the error or the end of the stream and ends the connection."""
        self.outbox.detach_socket()  # type: ignore[union-attr]
        self._wake_reader()


    def close(
        self, code: int = CloseCode.NORMAL, reason: str | bytes = "", *,
        message: str | bytes | None = None,
    ) -> None:
        """Start the closing handshake with `code` and `reason` and, unless called by the
        reader itself, wait (at most WSAPP_CLOSE_TIMEOUT) for it to finish and TCP to be
        released. `message` is gevent-websocket's name for `reason`. No effect once closing."""
        self.close_nowait(code, reason if message is None else message)
        if gevent.getcurrent() is not self._reader:
            self.wait_closed()

    def close_nowait(
        self,
        code: int = CloseCode.NORMAL,
        message: str | bytes = "",
        cause: CloseCause | None = None,
    ) -> None:
        """Send the close frame (after what is queued) and return; the reader completes the
        handshake. `cause` is recorded for metrics (default: from the code). ValueError for
        a code no close frame may carry (RFC 6455 7.4: 1005, 1006, 1015, under 1000...)."""
        if not is_valid_close_code(code):
            raise ValueError(f"close code {code} cannot be sent in a close frame (RFC 6455 7.4)")
        reason = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        state = self.session.state
        if state is State.CONNECTING:
            self.session.state = State.CLOSED
            return
        if state is State.OPEN:
            self._close_frame(code, reason, cause or _CAUSE_OF_CODE.get(code, CloseCause.POLICY))
            self._wake_reader()  # a reader held for the view reads the reply now


    def _close_frame(self, code: int, reason: str, cause: CloseCause) -> None:
        self.session.close(code, reason, cause)
        self.outbox.stop_data()  # type: ignore[union-attr]
        out = self.session.data_to_send()
        if out:
            self.outbox.write(out, 0)  # type: ignore[union-attr]

    def _close_now(self, code: int, reason: str, cause: CloseCause) -> None:
        if self.session.state is State.OPEN:
            self._close_frame(code, reason, cause)

    def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the reader has ended the connection; abort it after the timeout."""
        reader = self._reader
        if reader is None or reader.dead or reader is gevent.getcurrent():
            return
        if self._closed_event is None:
            self._closed_event = Event()
        limit = self.settings.close_timeout + 0.5 if timeout is None else timeout
        if not self._closed_event.wait(limit):
            self.abort()

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Wait until the reader has finished, its end-of-connection work included (end
        callbacks, `serve`'s on_end); True if it has."""
        reader = self._reader
        if reader is None or reader.dead or reader is gevent.getcurrent():
            return True
        reader.join(timeout)
        return reader.dead

    def abort(self, code: int = CloseCode.ABNORMAL, reason: str = "aborted",
              cause: CloseCause = CloseCause.ABORTED) -> None:
        """Drop the TCP connection at once (dead or hopelessly slow peer)."""
        self.session.abort(code, reason, cause)
        self._end_tcp()
        reader = self._reader
        if reader is not None and not reader.dead and reader is not gevent.getcurrent():
            reader.kill(block=False)

    def _end_tcp(self) -> None:
        """Flush what may still go out, linger if we failed the connection (so our close
        frame is not destroyed by a TCP reset, RFC 6455 7.1.1), close the socket."""
        sock = self._socket
        if sock is None or self.outbox is None:
            return
        outbox = self.outbox
        if self.session.state is not State.CLOSED:
            outbox.wait_empty(self.settings.close_timeout)
            if self.session.failed and not self.session.close_received:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                linger = gevent.Timeout(self.settings.close_timeout, False)
                with linger, contextlib.suppress(OSError):
                    while sock.recv(READ_SIZE):
                        pass
            self.session.receive_eof()
        self._socket = None
        outbox.detach_socket()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
        if self._inbox_event is not None:
            self._inbox_event.set()

    def add_end_callback(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once when the connection is over: its reader has ended and TCP
        is closed, whether the view still runs or the socket left its request (`serve`).

        Callbacks run in the reader's greenlet, in the order they were added, before the
        socket's own end-of-connection bookkeeping; one that raises is logged and the others
        still run. Added when the connection is over already, it runs at once, here.
        (`wsapp.rooms` leaves a socket's rooms with it.)"""
        callbacks = self._end_callbacks
        if callbacks is False or (self._reader is None and self.session.state is State.CLOSED):
            callback()
        elif callbacks is None:
            self._end_callbacks = [callback]
        else:
            callbacks.append(callback)  # type: ignore[union-attr]

    def _run_end_callbacks(self) -> None:
        callbacks, self._end_callbacks = self._end_callbacks, False
        if not isinstance(callbacks, list):
            return
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("end-of-connection callback failed (conn %s)", self.id)

    def _end(self) -> None:
        """The reader is done: wake waiters and run the end callbacks; a detached socket
        does its own bookkeeping."""
        if self._closed_event is not None:
            self._closed_event.set()
        if self._inbox_event is not None:
            self._inbox_event.set()
        self._run_end_callbacks()
        if self.detached and not self._ended:
            self._ended = True
            on_end, self._on_end = self._on_end, None
            if on_end is not None:
                try:
                    on_end()
                except Exception:
                    log.exception("end-of-connection hook failed (conn %s)", self.id)
            end_hook, self.end_hook = self.end_hook, None
            if end_hook is not None:
                end_hook(self)
