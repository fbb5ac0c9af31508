"""The view's side of receiving: an inbox bounded in bytes between the reader and `receive()`.

A mixin of `wsapp.engine.websocket.WebSocket` (its slots live there). The reader queues
the messages it assembled (`_queue_messages`); when the view does not take them and the
inbox is over WSAPP_RECEIVE_QUEUE_BYTES, the reader waits (`_hold_for_view`) and TCP
pushes back on the peer. A close frame that came behind messages is answered once the
view has taken them and come back for more (or after WSAPP_CLOSE_TIMEOUT), so a classic
echo loop still answers a peer's last messages.
"""

from __future__ import annotations

import collections
import time

import gevent
from gevent.event import Event

from wsapp.protocol.frames import Frames
from wsapp.protocol.session import State


class InboxMixin:
    """Receiving for `WebSocket`; see the module docstring."""

    __slots__ = ()

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Next message (`str` text, `bytes` binary); None once the connection is closed.

        With `timeout` (seconds), None also when nothing arrived in time: check `closed`."""
        if self.session.state is State.CONNECTING:
            self.accept()
        inbox = self._inbox
        if not inbox:
            if not self._wait_inbox(timeout):
                return None
            inbox = self._inbox
        message = inbox.popleft()  # type: ignore[union-attr]
        self._took(len(message))
        return message

    read_message = receive

    def receive_many(self) -> list[str | bytes]:
        """Every message queued now: at least one, or [] once closed."""
        if self.session.state is State.CONNECTING:
            self.accept()
        if not self._inbox and not self._wait_inbox(None):
            return []
        batch = list(self._inbox)  # type: ignore[arg-type]
        self._inbox.clear()  # type: ignore[union-attr]
        self._took(self._inbox_bytes)
        return batch

    def __iter__(self):
        """Messages until the connection closes."""
        while (message := self.receive()) is not None:
            yield message

    def _wait_inbox(self, timeout: float | None) -> bool:
        """Wait for a message; False on close (or timeout)."""
        # The view has answered everything it took: a close held back for it may proceed.
        self._close_wait = True
        self._wake_reader()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._inbox:
                if self._reader is None or self._reader.dead:
                    return False
                if self._inbox_event is None:
                    self._inbox_event = Event()
                self._inbox_event.clear()
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._inbox_event.wait(left) and not self._inbox:
                    return False
            return True
        finally:
            self._close_wait = False

    def _took(self, size: int) -> None:
        self._inbox_bytes -= size
        if self._inbox_bytes <= self.settings.receive_queue_bytes // 2:
            self._wake_reader()

    def _wake_reader(self) -> None:
        if self._resume is not None:
            self._resume.set()

    def _queue_messages(self, messages: list) -> None:
        """The view takes them with receive(); over the budget, stop reading until it does."""
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = collections.deque()
        size = 0
        for message in messages:
            size += len(message)
        inbox.extend(messages)
        self._inbox_bytes += size
        if self._inbox_event is not None:
            self._inbox_event.set()
        budget = self.settings.receive_queue_bytes
        if self._inbox_bytes >= budget or self.session.close_pending():
            self._hold_for_view(budget)

    def _hold_for_view(self, budget: int) -> None:
        """Wait while the view has not taken its messages (budget), or before answering a
        close until it has taken those that came before it (at most WSAPP_CLOSE_TIMEOUT)."""
        if self._resume is None:
            self._resume = Event()
        session = self.session
        closing = session.close_pending()
        timeout = self.settings.close_timeout if closing else None
        self._held = True
        with gevent.Timeout(timeout, False):
            while self._handle is None and session.state is State.OPEN and self.outbox.alive:  # type: ignore[union-attr]
                if closing:
                    if not self._inbox and self._close_wait:
                        break
                elif self._inbox_bytes < budget:
                    break
                self._resume.clear()
                self._resume.wait()
        self._held = False
        if self._handle is not None and self._inbox:
            self._handle_batch(self._handle, self._take_inbox())

    def _take_inbox(self) -> list:
        """Every queued message, for a `serve` handler that takes over from the inbox."""
        batch = list(self._inbox)  # type: ignore[arg-type]
        self._inbox.clear()  # type: ignore[union-attr]
        self._inbox_bytes = 0
        return batch

    def _handle_batch(self, handle, batch: list) -> None:
        """`handle(batch)` in place; the frames it returns go out before the next read (the
        reader waits for them: TCP backpressure on this peer)."""
        replies = handle(batch)
        if replies and self.session.state is State.OPEN:
            count = replies.messages if type(replies) is Frames else len(replies)
            self.outbox.write(replies, count, wait=True)  # type: ignore[union-attr]
