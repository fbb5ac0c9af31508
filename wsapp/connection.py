"""One `Connection` per accepted WebSocket: reader loop, bounded outbound queue, one writer.

Views never write to the socket themselves. They put pre-encoded frames on the queue
(`send_frame` never blocks). The reader writes its own replies after each batch
(`serve_batches`); frames queued by other greenlets are written by one loop callback with
a non-blocking send, and only a socket that cannot take them all at once gets a writer
greenlet. A peer that stops reading fills its own queue and is closed 1008; nobody else
waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import gevent
from geventwebsocket.exceptions import WebSocketError

from wsapp.protocol import frames, runtime
from wsapp.protocol.frames import CloseCode

if TYPE_CHECKING:
    from wsapp.protocol.websocket import WebSocket
    from wsapp.settings import Settings

log = logging.getLogger("wsapp.connection")

class _CloseRequest:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


_SCHEDULED = object()  # Connection._writer while a loop callback is due to flush it
_flush_list: list[Connection] = []
_flush_scheduled = False


def _flush_all() -> None:
    """Loop callback: flush every connection that had frames queued since the last run."""
    global _flush_scheduled
    _flush_scheduled = False
    pending = _flush_list[:]
    _flush_list.clear()
    for conn in pending:
        try:
            conn._flush_nowait()
        except Exception:  # never let one socket break the hub's callback
            log.exception("flushing conn %s failed", conn.id)


_in_burst = False  # a broadcast already went out directly in this turn of the event loop


def _end_burst() -> None:
    global _in_burst
    _in_burst = False


def send_to_all(conns: list[Connection], frame: bytes) -> None:
    """One frame to many connections (a chat broadcast), written at once where possible.

    A connection with nothing queued, no writer and no write under way gets the frame
    with one non-blocking send() right here; every other connection (or the rest of a
    partial send) goes through its queue as usual, so frames never overtake each other.
    Further broadcasts in the same turn of the event loop (a burst, e.g. several messages
    in one read from Redis pub/sub) are queued instead, so the loop callback writes each
    member the rest of the burst with one send() rather than one per message.

    The direct part runs in C when the speedups are built (`_speedups.broadcast`, same
    rules) and otherwise in one flat Python loop that reads the WebSocket's write state
    directly: about three quarters of the server CPU per delivery is then the kernel's
    send() itself (perf; docs/performance.md).
    """
    global _in_burst
    if _in_burst:
        for conn in conns:
            conn.send_frame(frame)
        return
    _in_burst = True
    gevent.get_hub().loop.run_callback(_end_burst)
    broadcast = frames.c_broadcast
    leftovers = broadcast(conns, frame) if broadcast is not None else _broadcast_py(conns, frame)
    for conn, sent in leftovers:
        _finish_broadcast(conn, frame, sent)


def _broadcast_py(conns: list[Connection], frame: bytes) -> list[tuple[Connection, int | None]]:
    """The pure Python `_speedups.broadcast`: send to the ready ones, return the rest."""
    size = len(frame)
    rest: list[tuple[Connection, int | None]] = []
    for conn in conns:
        ws = conn.ws
        if (
            conn._writer is not None
            or conn._queue
            or conn._batch_owner is not None
            or conn._closing
            or ws.state != "OPEN"
            or ws._write_lock.locked()
        ):
            rest.append((conn, None))
            continue
        try:
            sent = ws._raw_send(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            rest.append((conn, -(exc.errno or 1)))
            continue
        if sent == size:
            ws.bytes_out += size
            ws.messages_out += 1
        else:
            rest.append((conn, sent))
    return rest


def _finish_broadcast(conn: Connection, frame: bytes, sent: int | None) -> None:
    """A member the direct send did not serve: not ready, partly written, or dead."""
    if sent is None:
        conn.send_frame(frame)  # busy or closing: the queue keeps the order (or refuses)
    elif sent < 0:
        conn.ws._on_transport_lost()
    else:  # the kernel took part of it (or nothing): the rest goes out through the queue
        conn.ws.bytes_out += sent
        conn._write_rest_later(frame, sent)


class Connection:
    """The application's side of one WebSocket."""

    __slots__ = (
        "ws", "settings", "endpoint", "id", "peer", "_queue", "_writer", "_limit", "_closing", "_batch_owner",
        "_flush_at",
        "__weakref__",
    )

    def __init__(self, ws: WebSocket, settings: Settings, endpoint: str) -> None:
        self.ws = ws
        self.settings = settings
        self.endpoint = endpoint
        self.id = ws.id
        self.peer = ws.peer
        self._queue: list[bytes | _CloseRequest] = []
        self._writer: gevent.Greenlet | None = None
        self._limit = settings.send_queue
        self._flush_at = max(1, min(64, settings.send_queue // 2))
        self._closing = False
        self._batch_owner: gevent.Greenlet | None = None

    @classmethod
    @contextmanager
    def open(cls, ws: WebSocket, settings: Settings, endpoint: str) -> Iterator[Connection]:
        """Accept the socket, yield the connection, then flush and close it properly.

        Unless the body handed the connection to `serve_in_background`: closing is then
        that greenlet's job."""
        ws.accept()
        conn = cls(ws, settings, endpoint)
        ws.control_sink = conn.send_frame  # pongs and keepalive pings share the queue
        with conn._closed_at_exit(skip_if_detached=True):
            yield conn

    @contextmanager
    def _closed_at_exit(self, skip_if_detached: bool = False) -> Iterator[None]:
        """Close 1000 when the body ends, 1011 (and log, and re-raise) if it raised."""
        try:
            yield
        except Exception:
            log.exception("error in %s handler (conn %s)", self.endpoint, self.id)
            self.close(CloseCode.INTERNAL_ERROR, "internal server error")
            self.wait_closed()
            raise
        if skip_if_detached and self.ws.detached:
            return
        self.close(CloseCode.NORMAL, "")
        self.wait_closed()

    def serve_in_background(
        self,
        handle: Callable[[list[str | bytes]], list[bytes] | None],
        on_end: Callable[[], None] | None = None,
    ) -> None:
        """`serve_batches(handle)` in a greenlet of the connection's own; returns at once.

        The view returns right after this, so the request (its handler, environ, buffered
        reader and Flask context, and the deep stack of the greenlet that ran it) is freed,
        and a waiting connection costs only a shallow greenlet and its own objects: an idle
        echo socket about half of what it cost inside the request. `on_end` runs when the
        socket is done (before the close handshake), e.g. to leave a chat room; it runs
        outside any Flask context.
        """
        self.ws.detach()
        if self.ws.detached:  # else it is closed already: the request finishes it
            gevent.spawn(self._serve_detached, handle, on_end)
        elif on_end is not None:
            on_end()

    def _serve_detached(self, handle, on_end) -> None:
        ws = self.ws
        try:
            with self._closed_at_exit():
                try:
                    self.serve_batches(handle)
                finally:
                    if on_end is not None:
                        on_end()
        except Exception:
            pass  # logged and closed 1011 by _closed_at_exit
        finally:
            rt = runtime.current()
            rt.finish(ws)
            rt.release(ws.peer_ip)

    # --- state ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closing or self.ws.state != "OPEN"

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    def queued(self) -> int:
        return len(self._queue)

    # --- receiving -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[str | bytes]:
        """Messages one by one (`str` text, `bytes` binary) until the socket closes.

        The simple form; `serve_batches` is the fast one (replies to a burst in one write).
        """
        receive_many = self.ws.receive_many
        while batch := receive_many():
            yield from batch

    def serve_batches(self, handle: Callable[[list[str | bytes]], list[bytes] | None]) -> None:
        """Call `handle(batch)` for each batch until the socket closes; queue the frames it returns.

        A batch is every message one read completed. While `handle` runs, the reader's own
        replies wait in the queue and go out together right after it, in one send from the
        reader itself (frames queued by other greenlets, such as broadcasts, still go out at
        once). A plain loop rather than a generator: a connection waiting for data then holds
        a shallower, smaller greenlet stack.
        """
        receive_many = self.ws.receive_many
        me = gevent.getcurrent()
        while True:
            batch = receive_many()
            if not batch:
                return
            self._batch_owner = me
            try:
                replies = handle(batch)
                if replies:
                    self.send_frames(replies)
            finally:
                self._batch_owner = None
            if self._queue and self._writer is None:
                self._writer = me
                self._drain()
            if self._closing:
                return  # the handler closed the connection: stop reading its messages

    # --- sending -------------------------------------------------------------------------

    def send_frame(self, frame: bytes) -> bool:
        """Queue one pre-encoded frame; never blocks. False if closed or now closed for overflow."""
        return self.send_frames((frame,))

    def send_frames(self, frames: list[bytes] | tuple[bytes, ...]) -> bool:
        """Queue pre-encoded frames; never blocks. False if closed or now closed for overflow.

        A peer whose queue would pass WSAPP_SEND_QUEUE frames is too slow: it is closed 1008
        and nobody waits for it. The reader's own replies (inside `serve_batches`) are the
        exception while no writer is stuck: after a long burst they are written right away
        by the reader, so TCP pushes back on that peer instead.
        """
        if self._closing or self.ws.state != "OPEN":
            return False
        queue = self._queue
        writer = self._writer
        owner = self._batch_owner is gevent.getcurrent()
        # The reader's own replies never overflow while it can write them itself (it then
        # blocks on its own socket: TCP backpressure); only a stuck writer makes them pile up.
        if (writer is not None or not owner) and len(queue) + len(frames) > self._limit:
            self._overflow()
            return False
        queue.extend(frames)
        if writer is None:
            if not owner:
                self._wake_writer()
            elif len(queue) >= self._flush_at:
                self._writer = gevent.getcurrent()
                self._drain()
        return True

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Send what is queued, then the close frame; returns at once."""
        if self._closing or self.ws.state != "OPEN":
            return
        self._queue_close(code, reason)

    def _queue_close(self, code: int, reason: str) -> None:
        self._closing = True
        self._queue.append(_CloseRequest(code, reason))
        if self._writer is None:
            self._writer = gevent.spawn(self._drain)

    def wait_closed(self, timeout: float | None = None) -> None:
        while self._writer is _SCHEDULED:
            gevent.sleep(0)  # let the pending flush run (it may hand over to a writer greenlet)
        writer = self._writer
        if writer is not None:
            writer.join(timeout if timeout is not None else self.settings.close_timeout + 1.0)
        if self.ws.state != "CLOSED" and not self._queue:
            self.ws.close()

    def _overflow(self) -> None:
        """Slow consumer: drop its backlog, tell it why, and never let it hold anyone up."""
        log.warning(
            "slow consumer: %s queue over %d frames, closing 1008 (conn %s, peer %s)",
            self.endpoint,
            self._limit,
            self.id,
            self.peer,
        )
        self._queue.clear()
        self._queue_close(CloseCode.POLICY_VIOLATION, "send queue overflow: client too slow")
        # If the peer never reads again, the close frame cannot go out either: cut TCP.
        gevent.spawn_later(self.settings.close_timeout, self._abort_if_stuck)

    def _abort_if_stuck(self) -> None:
        if self.ws.state != "CLOSED":
            self.ws.abort(CloseCode.POLICY_VIOLATION, "send queue overflow: client too slow")

    def _wake_writer(self) -> None:
        """Have the queue written soon, without a greenlet in the common case.

        Frames queued by other greenlets (a broadcast to a thousand members) are written by
        one loop callback that tries a non-blocking send for every connection it was handed.
        Only a connection whose socket cannot take everything at once gets a writer
        greenlet for the rest, so a fan-out costs one send() per member and no greenlets.
        """
        global _flush_scheduled
        self._writer = _SCHEDULED
        _flush_list.append(self)
        if not _flush_scheduled:
            _flush_scheduled = True
            gevent.get_hub().loop.run_callback(_flush_all)

    def _flush_nowait(self) -> None:
        """Runs in the hub: one non-blocking write of everything queued, or hand over."""
        if self._writer is not _SCHEDULED:
            return
        self._writer = None
        queue = self._queue
        if not queue:
            return
        ws = self.ws
        if ws.state != "OPEN":
            queue.clear()
            return
        if self._closing:
            self._writer = gevent.spawn(self._drain)  # a close to perform
            return
        self._queue = []
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        try:
            sent = ws.write_nowait(data)  # 0 while another greenlet is mid-write: it goes on below
        except WebSocketError:
            return
        if sent < len(data):
            self._write_rest_later(data, sent)
        else:
            ws.messages_out += len(queue)

    def _write_rest_later(self, data: bytes, sent: int) -> None:
        """The kernel took `sent` bytes of `data`: a writer greenlet sends the rest first."""
        self._queue.insert(0, memoryview(data)[sent:])
        self._writer = gevent.spawn(self._drain)

    def _drain(self) -> None:
        ws = self.ws
        try:
            while self._queue:
                # Take everything queued so far; frames queued while we write go in the next round.
                items, self._queue = self._queue, []
                close: _CloseRequest | None = None
                for index, item in enumerate(items):
                    if type(item) is _CloseRequest:
                        close = item
                        del items[index:]
                        break
                if items:
                    try:
                        ws.send_frame(items[0] if len(items) == 1 else b"".join(items))
                    except WebSocketError:
                        self._queue.clear()
                        return
                    ws.messages_out += len(items)
                if close is not None:
                    self._queue.clear()
                    ws.close(close.code, close.reason)
                    return
        finally:
            self._writer = None
