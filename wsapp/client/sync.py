"""`Client`: the blocking client, for plain threads and for gevent (monkey-patched).

Built on ``websockets.sync.client``. Each client runs three threads (greenlets under
gevent): the *runner* connects, reconnects and reads; the *writer* writes the outbox in
order; the *dispatcher* calls handlers and feeds iteration, so a slow handler never
stops acks from being read (a handler may even call ``send()`` and wait for the ack).
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .backoff import RetryBudget
from .base import ClientBase, CloseInfo, log
from .core import Core
from .errors import AckTimeout, ClientClosed, ClientError, ConnectFailed, connect_error
from .urls import display_url

__all__ = ["Client"]

_END = object()
_TICK = 0.1  # seconds between checks of the stop flag while a queue is full


class Client(ClientBase):
    """A WebSocket client for wsapp chat rooms and plain (echo-style) endpoints.

    ::

        with Client(max_tries=5) as client:
            client.on("message", lambda event: print(event["name"], event["text"]))
            client.connect("ws://127.0.0.1:8000/chat/lobby", name="ann")
            message_id = client.send("hello")   # waits for the server's ack

    Options (keyword-only) are described in :class:`wsapp.client.base.ClientBase`.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._cond = threading.Condition()
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._retry_first = False
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._done = threading.Event()
        self._iter_closed = threading.Event()
        self._events: queue.Queue[Any] = queue.Queue(self.max_queue)
        self._iter: queue.Queue[Any] = queue.Queue(self.max_queue)
        self._threads: list[threading.Thread] = []

    # ---- life cycle ----------------------------------------------------------------------

    def connect(
        self,
        url: str,
        *,
        name: str | None = None,
        token: str | None = None,
        since: str | None = None,
        client_id: str | None = None,
        chat: bool | None = None,
        retry: bool = False,
    ) -> dict[str, Any] | None:
        """Connect and wait until the connection is ready; returns the chat ``hello``
        (None for plain endpoints).

        `url`: ``ws://``/``wss://`` (``http(s)://`` and no scheme are converted);
        ``/chat/<room>`` URLs speak the chat protocol (force with `chat`). `name`,
        `token`, `since` and `client_id` become query parameters. With `retry` the
        first connection is retried like a reconnection (within ``max_tries`` and
        ``max_time``); without, its failure is raised at once: :class:`InvalidURL`,
        :class:`Refused` (:class:`Unauthorized` for 401/403), :class:`TLSError`,
        :class:`ConnectFailed`, :class:`GaveUp`."""
        with self._cond:
            if self._core is not None:
                raise ClientError("connect() was already called on this client")
            self._core = self._new_core(url, name, token, since, client_id, chat)
            self._retry_first = retry
        for target, label in ((self._dispatch_loop, "dispatch"), (self._write_loop, "write"),
                              (self._run, "run")):
            thread = threading.Thread(target=target, name=f"wsapp-client-{label}", daemon=True)
            self._threads.append(thread)
            thread.start()
        if not self._ready.wait(None if retry else 2 * self.open_timeout + 1):
            self.close(0)
            raise ConnectFailed(f"{display_url(self._core.url)}: not ready within "
                                f"{2 * self.open_timeout + 1:.0f} s")
        if self.error is not None and not self.connected:
            raise self.error
        return self.hello

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to `timeout` seconds for unacked messages, then close (1000).

        Messages still unacked fail: :class:`NotSent` if never written, else
        :class:`Unconfirmed`. Safe to call more than once, and from a handler."""
        if self._core is not None and timeout > 0 and not self._done.is_set():
            self.flush(timeout)
        with self._cond:
            self._stopping = True
            ws = self._ws
            self._cond.notify_all()
        self._wake.set()
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close(1000, "bye")
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(self.close_timeout + 1.0)
        self._finish(None, "the client was closed")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message was acked (or failed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done.is_set() or not self.unacked, timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the client ends (closed, or reconnection gave up); raises the
        error that ended it. False if `timeout` passed first."""
        if not self._done.wait(timeout):
            return False
        if self.error is not None:
            raise self.error
        return True

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- sending -------------------------------------------------------------------------

    def send(self, message: str | bytes, *, ref: str | None = None, wait: bool = True,
             timeout: float | None = None) -> Any:
        """Send a chat message (or, on a plain endpoint, a text or binary message).

        Chat: returns the message id from the server's ``ack`` once it came (within
        `timeout`, default ``ack_timeout``; else :class:`AckTimeout`, and the message
        stays queued). `ref` (optional) is your own correlation id, e.g. a task id: a
        retry with the same ``client_id`` and ref is published once. Messages sent
        while disconnected wait in the outbox. Plain endpoints return None once written.
        With ``wait=False``: a :class:`concurrent.futures.Future` of the same."""
        with self._cond:
            core = self._sendable()
            if core.chat:
                ref = core.new_ref(ref)
                frame = Core.message_frame(message, ref)  # type: ignore[arg-type]
                future = self._enqueue(core, frame, ref)
            else:
                future = self._enqueue(core, message, None)
        return self._await(future, wait, timeout, ref)

    def emit(self, event: str, data: Any = None, *, ref: str | None = None, wait: bool = True,
             timeout: float | None = None) -> Any:
        """Send a named event ``{"type": "event", "event": event, "data": data}`` to the
        room; returns the ``id`` of the server's ack (None if the ack has none). Same
        waiting, outbox and retry rules as :meth:`send`. On a plain endpoint the same
        JSON goes out without a ref and None is returned once written."""
        with self._cond:
            core = self._sendable()
            ref = core.new_ref(ref) if core.chat else None
            future = self._enqueue(core, Core.event_frame(event, data, ref), ref)
        return self._await(future, wait, timeout, ref)

    def _enqueue(self, core: Core, frame: str | bytes, ref: str | None) -> Future[Any]:
        future: Future[Any] = Future()
        core.add(frame, future, ref)
        self._cond.notify_all()
        return future

    def _await(self, future: Future[Any], wait: bool, timeout: float | None,
               ref: str | None) -> Any:
        if not wait:
            return future
        wait_for = self.ack_timeout if timeout is None else timeout
        try:
            return future.result(wait_for)
        except TimeoutError:
            if future.done():
                return future.result()
            raise AckTimeout(f"no ack within {wait_for} s; the message is still queued",
                             ref, future) from None

    # ---- receiving -----------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next event (see :mod:`wsapp.client.handlers` for the types); raises
        TimeoutError after `timeout`, and when the client has ended, the error that
        ended it (or ClientClosed)."""
        self._require_core()
        if not self._iterate:
            raise ClientError("events go to handlers: pass queue_events=True to iterate too")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _TICK if deadline is None else min(_TICK, deadline - time.monotonic())
            try:
                item = self._iter.get(timeout=max(0.0, left))
            except queue.Empty:
                if self._iter_closed.is_set() and self._iter.empty():
                    item = _END
                elif deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no event within {timeout} s") from None
                else:
                    continue
            if item is _END:
                raise self.error or ClientClosed("the client is closed")
            return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Events until the client ends; a client ended by an error raises it."""
        while True:
            try:
                event = self.receive()
            except ClientClosed:
                if self.error is not None:
                    raise
                return
            yield event

    # ---- threads -------------------------------------------------------------------------

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        """Put with back-pressure (a full queue pauses reading), dropped once stopping."""
        while True:
            try:
                q.put(item, timeout=_TICK)
                return
            except queue.Full:
                if self._stopping:
                    return

    def _emit(self, event: dict[str, Any]) -> None:
        self._put(self._events, event)

    def _dispatch_loop(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=_TICK)
            except queue.Empty:
                if not self._done.is_set():
                    continue
                event = _END  # _finish could not queue its end marker
            if event is _END:
                self._iter_closed.set()
                with contextlib.suppress(queue.Full):
                    self._iter.put_nowait(_END)
                return
            for handler in self.handlers.for_event(event):
                try:
                    handler(event)
                except Exception:
                    log.exception("wsapp client: %s handler failed", event.get("type"))
            if self._iterate:
                self._put(self._iter, event)

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping or self._done.is_set():
                        return
                    ws, core = self._ws, self._core
                    assert core is not None
                    writes, expired, wake = core.next_writes() if ws is not None else ([], [], None)
                    if writes or expired:
                        break
                    timeout = None if wake is None else max(0.0, wake - core.clock())
                    self._cond.wait(timeout)
            self._settle(expired)  # type: ignore[arg-type]
            sent = 0
            for pending in writes:
                try:
                    ws.send(pending.frame)  # type: ignore[union-attr]
                except (ConnectionClosed, OSError, RuntimeError):
                    break  # the runner sees the close; unacked messages go again after it
                sent += 1
            with self._cond:
                done = core.written(writes[:sent])
                if done:
                    self._cond.notify_all()
            self._settle(done)  # type: ignore[arg-type]

    def _run(self) -> None:
        core = self._require_core()
        budget = self._budget()
        first = True
        try:
            while not self._stopping:
                url = core.connect_url()
                try:
                    ws = connect(url, legacy=True, **self._connect_kwargs(url))
                    info, ready = self._serve(ws, budget)
                except Exception as exc:  # every failure is translated and classified
                    info, ready, error = None, False, connect_error(exc, display_url(url))
                else:
                    error = ConnectFailed(f"{info.describe()} before the connection was ready")
                verdict = self._after_close(info, self._stopping) if ready else False
                if ready:
                    assert info is not None
                    first = False
                    self._emit(self._disconnect_event(info, verdict))
                if self._stopping:
                    break
                if not ready:  # a failed attempt: the budget decides
                    if first and not self._retry_first:
                        raise error
                    self._sleep(self._next_delay(budget, error))
                    continue
                if verdict is not True:
                    if isinstance(verdict, ClientError):
                        raise verdict
                    break
                budget.begin()
                self._sleep(random.random() * self.backoff.initial)  # RFC 6455 7.2.3
            self._finish(None, "the client was closed")
        except ClientError as exc:
            self._finish(exc, str(exc))
        except Exception as exc:  # a bug: end the client with it rather than hang
            log.exception("wsapp client: runner failed")
            self._finish(ClientError(f"internal error: {exc!r}"), "internal error")

    def _next_delay(self, budget: RetryBudget, error: ClientError) -> float:
        delay = budget.failed(error)  # raises at the limits
        self._emit(self._retry_event(budget, error, delay))
        return delay

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)

    def _serve(self, ws: ClientConnection, budget: RetryBudget) -> tuple[CloseInfo, bool]:
        """Read until the connection ends: how it ended, and whether it became ready."""
        core = self._require_core()
        ready = False
        with self._cond:
            if self._stopping:
                ws.close(1000, "bye")
            self._ws = ws
            events = core.opened()
            self._cond.notify_all()
        try:
            while True:
                for event in events:
                    if event["type"] == "connect":
                        ready = True
                        budget.reset()
                        self._ready.set()
                    self._emit(event)
                data = ws.recv()
                with self._cond:
                    feed = core.receive(data)
                    if feed.settled or core.live:
                        self._cond.notify_all()
                self._settle(feed.settled)  # type: ignore[arg-type]
                events = feed.events
        except ConnectionClosed as exc:
            return CloseInfo.of(exc), ready
        finally:
            with self._cond:
                core.closed()
                self._ws = None
                self._cond.notify_all()

    def _finish(self, error: ClientError | None, reason: str) -> None:
        """End the client once: fail what is left, stop the threads, wake everyone."""
        with self._cond:
            if self._done.is_set():
                return
            if error is not None and self.error is None:
                self.error = error
            self._stopping = True
            failed = self._core.fail_all(reason) if self._core is not None else []
            self._done.set()
            self._cond.notify_all()
        self._settle(failed)  # type: ignore[arg-type]
        self._ready.set()
        self._wake.set()
        if error is not None:
            with contextlib.suppress(queue.Full):
                self._events.put(self._fatal_event(error), timeout=1.0)
        try:
            self._events.put(_END, timeout=1.0)
        except queue.Full:  # the dispatcher is stuck in a handler: iteration still ends
            self._iter_closed.set()

