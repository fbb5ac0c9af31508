"""`Outbox`: the one write path of a socket. Every byte a WebSocket sends goes through it.

One rule, in one place (`write`): if nothing is queued and no write is under way, the
frames go to the kernel now with one non-blocking send; whatever the kernel does not
take waits in the queue, in order, and a writer greenlet sends it when the socket is
writable again. Frames never overtake each other and never interleave.

`ready` is the public predicate a broadcast uses to write to many sockets at once
(`wsapp.engine.fanout`): true exactly when `write` would send at once. Bytes waiting in
the queue are counted (`queued_bytes`) against a budget (WSAPP_SEND_QUEUE_BYTES): a
writer that may wait (the socket's own view or reader) waits for the queue to drain
(TCP backpressure on that peer); anyone else (a broadcast, a keepalive ping) has the
peer declared too slow (`on_overflow`, closed 1008 by the WebSocket). The queue holds
references to the frames: a broadcast frame queued for many members exists once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event

log = logging.getLogger("wsapp.ws")

#: Buffers handed to one sendmsg() (Linux IOV_MAX is 1024).
IOV_BATCH = 1024
#: Several frames adding up to at most this many bytes are joined and sent with one
#: send(): copying small frames once costs less than a gathering sendmsg() of them and
#: the bookkeeping of its iovecs. Larger sets (a large payload behind its header) gather.
JOIN_MAX = 32768

_SCHEDULED = object()  # Outbox._writer while a loop callback is due to flush it
_flush_list: list[Outbox] = []
_flush_scheduled = False


def _flush_all() -> None:
    """Loop callback: one non-blocking write for every outbox queued by `write_soon`."""
    global _flush_scheduled
    _flush_scheduled = False
    pending = _flush_list[:]
    _flush_list.clear()
    for outbox in pending:
        try:
            outbox._flush_nowait()
        except Exception:  # never let one socket break the hub's callback
            log.exception("flushing a socket failed")


class Outbox:
    """Ordered, budgeted writes to one non-blocking socket; see the module docstring."""

    __slots__ = (
        "ready", "open", "fd", "queued_bytes", "budget", "bytes_out", "messages_out",
        "_sock", "_queue", "_writer", "_drained", "_on_overflow", "_on_error", "_io",
    )

    def __init__(
        self,
        sock: Any,
        budget: int,
        on_overflow: Callable[[], None],
        on_error: Callable[[], None],
    ) -> None:
        self._sock = sock  # the plain non-blocking socket under the gevent one
        self.fd: int = sock.fileno()
        #: True when a write would go to the kernel at once (see module docstring).
        self.ready = True
        #: False once the connection no longer takes data frames (closing, closed).
        self.open = True
        self.queued_bytes = 0
        self.budget = budget
        self.bytes_out = 0
        self.messages_out = 0
        self._queue: list[Any] = []  # bytes, or a memoryview of a frame's unsent rest
        self._writer: Any = None  # writer greenlet, _SCHEDULED, or None
        self._drained: Event | None = None  # created only when someone waits
        self._on_overflow = on_overflow
        self._on_error = on_error
        self._io: Any = None  # the write watcher, once the socket pushed back

    # --- the write path --------------------------------------------------------------

    def write(
        self, frames: list[bytes] | tuple[bytes, ...], count: int = 1, wait: bool = False
    ) -> bool:
        """Send `frames` (`count` of them are messages, for the counters) in order.

        Returns False if the socket is gone. Over budget, `wait=True` blocks until the
        queue is below it again; otherwise the peer is too slow (`on_overflow`)."""
        if self._sock is None:
            return False
        if self._writer is None and not self._queue:
            if len(frames) == 1:
                data = frames[0]
                size = len(data)
                try:
                    sent = self._sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._on_error()
                    return False
                self.bytes_out += sent
                if sent == size:
                    self.messages_out += count
                    return True
                self._queue.append(memoryview(data)[sent:] if sent else data)
                self.queued_bytes += size - sent
            else:
                sent = self._send_some(frames)
                if sent < 0:
                    return False
                if not self._queue:
                    self.messages_out += count
                    return True
            self.messages_out += count  # counted when handed over; the rest is on its way
            self.ready = False
            if wait:
                # A writer that may wait sends the rest itself (no greenlet to start), and
                # what others queue meanwhile after it, in order.
                self._writer = gevent.getcurrent()
                self._drain()
                return self._sock is not None
            self._writer = gevent.spawn(self._drain)
        else:
            size = 0
            for data in frames:
                size += len(data)
            self._queue.extend(frames)
            self.queued_bytes += size
            self.messages_out += count
        if self.queued_bytes > self.budget:
            if wait:
                return self._wait_below_budget()
            self._on_overflow()
            return False
        return True

    def write_soon(self, frame: bytes) -> bool:
        """Queue `frame` and write it from a loop callback in this turn of the event loop.

        For broadcast bursts: several frames queued for a socket in one turn go out with
        one send. Never blocks; over budget the peer is too slow."""
        if self._sock is None:
            return False
        global _flush_scheduled
        self._queue.append(frame)
        self.queued_bytes += len(frame)
        self.messages_out += 1
        if self._writer is None:
            self.ready = False
            self._writer = _SCHEDULED
            _flush_list.append(self)
            if not _flush_scheduled:
                _flush_scheduled = True
                gevent.get_hub().loop.run_callback(_flush_all)
        if self.queued_bytes > self.budget:
            if self._writer is _SCHEDULED:
                self._flush_nowait()  # the budget counts what the kernel refused: ask it now
            if self.queued_bytes > self.budget:
                self._on_overflow()
                return False
        return True

    def fail(self) -> None:
        """A send to this socket failed outside `write` (a broadcast): the connection is lost."""
        self._on_error()

    def sent_partly(self, frame: bytes, sent: int) -> None:
        """A broadcast's direct send took `sent` bytes of `frame` (0 included): send the rest."""
        self.bytes_out += sent
        self.messages_out += 1
        self._queue.append(memoryview(frame)[sent:] if sent else frame)
        self.queued_bytes += len(frame) - sent
        self.ready = False
        self._writer = gevent.spawn(self._drain)
        if self.queued_bytes > self.budget:
            self._on_overflow()

    def _send_some(self, buffers: Any) -> int:
        """One non-blocking send of `buffers` (small ones joined, JOIN_MAX); the unsent rest
        is queued in front of what is queued already. Returns the bytes sent, -1 if the
        socket broke."""
        if len(buffers) == 1:
            data = buffers[0]
        elif sum(map(len, buffers)) <= JOIN_MAX:
            data = b"".join(buffers)
        else:
            return self._send_gathered(buffers)
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._on_error()
            return -1
        self.bytes_out += sent
        size = len(data)
        if sent < size:
            self._queue.insert(0, memoryview(data)[sent:] if sent else data)
            self.queued_bytes += size - sent
        return sent

    def _send_gathered(self, buffers: Any) -> int:
        """`_send_some` for large sets: one sendmsg of up to IOV_BATCH buffers."""
        batch = buffers[:IOV_BATCH]
        try:
            sent = self._sock.sendmsg(batch)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._on_error()
            return -1
        self.bytes_out += sent
        rest = list(buffers[len(batch):])
        left = sent
        for index, data in enumerate(batch):
            size = len(data)
            if left >= size:
                left -= size
                continue
            rest[:0] = [memoryview(data)[left:] if left else data, *batch[index + 1:]]
            break
        unsent = 0
        for data in rest:
            unsent += len(data)
        self._queue[:0] = rest  # the callers took the queue first: nothing can be behind
        self.queued_bytes += unsent
        return sent

    def _take_queue(self) -> list[Any]:
        queue, self._queue = self._queue, []
        self.queued_bytes = 0
        return queue

    def _flush_nowait(self) -> None:
        """Runs in the hub: one non-blocking write of everything queued, or hand over."""
        if self._writer is not _SCHEDULED:
            return
        self._writer = None
        if self._sock is None or not self._queue:
            self._set_idle()
            return
        if self._send_some(self._take_queue()) < 0:
            return
        if self._queue:
            self._writer = gevent.spawn(self._drain)
        else:
            self._set_idle()

    def _drain(self) -> None:
        """The writer greenlet: send the queue as the socket becomes writable, then leave."""
        try:
            while self._queue and self._sock is not None:
                if self._send_some(self._take_queue()) < 0:
                    return
                if self.queued_bytes <= self.budget // 2 and self._drained is not None:
                    self._drained.set()
                if self._queue:
                    try:
                        self._wait_writable()
                    except OSError:
                        self._on_error()
                        return
        finally:
            if self._writer is gevent.getcurrent():
                self._writer = None
            self._set_idle()

    def _set_idle(self) -> None:
        if not self._queue and self._writer is None:
            self.ready = self.open and self._sock is not None
            if self._drained is not None:
                self._drained.set()

    def _wait_below_budget(self) -> bool:
        while self.queued_bytes > self.budget and self._sock is not None:
            if self._drained is None:
                self._drained = Event()
            self._drained.clear()
            self._drained.wait()
        return self._sock is not None

    # --- state ----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once the socket is closed or a send to it failed."""
        return self._sock is not None

    def stop_data(self) -> None:
        """No more data frames: a broadcast must go through `write` (which refuses)."""
        self.open = False
        self.ready = False

    def wait_empty(self, timeout: float) -> bool:
        """Wait up to `timeout` for everything queued to reach the kernel."""
        if not self._queue and self._writer is None:
            return True
        if self._drained is None:
            self._drained = Event()
        with gevent.Timeout(timeout, False):
            while (self._queue or self._writer is not None) and self._sock is not None:
                self._drained.clear()
                self._drained.wait()
        return not self._queue

    def drop_queued(self) -> None:
        """Forget what is queued, except the unsent rest of a frame the kernel has part of
        (the peer would otherwise see a corrupt frame before our close)."""
        head = self._queue[:1]
        keep = head if head and isinstance(head[0], memoryview) else []
        self._queue = keep
        self.queued_bytes = sum(len(d) for d in keep)

    def _wait_writable(self) -> None:
        """Wait until the kernel takes more: one write watcher per outbox, made the first
        time the socket pushes back and kept (a new watcher for every wait costs more than
        the send it waits for when a large message goes out in many pieces)."""
        io = self._io
        if io is None:
            io = self._io = gevent.get_hub().loop.io(self.fd, 2)
        gevent.get_hub().wait(io)

    def detach_socket(self) -> None:
        """The socket is closed: nothing more can be written; wake every waiter."""
        if self._io is not None:
            self._io.close()
            self._io = None
        self._sock = None
        self.ready = False
        self.open = False
        self._queue = []
        self.queued_bytes = 0
        if self._drained is not None:
            self._drained.set()
        writer = self._writer
        if writer is not None and writer is not _SCHEDULED and writer is not gevent.getcurrent():
            writer.kill(block=False)
        self._writer = None
