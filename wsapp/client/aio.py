"""`AsyncClient`: the asyncio client, the same behaviour as `Client` with coroutines.

Built on ``websockets.asyncio.client``. Three tasks per client: the runner (connect,
reconnect, read), the writer (the outbox, in order) and the dispatcher (handlers, which
may be plain functions or coroutine functions, and iteration).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .backoff import RetryBudget
from .base import ClientBase, CloseInfo, log
from .core import Core
from .errors import AckTimeout, ClientClosed, ClientError, ConnectFailed, connect_error
from .urls import display_url

__all__ = ["AsyncClient"]

_END = object()


class AsyncClient(ClientBase):
    """The asyncio client; options as :class:`wsapp.client.Client`.

    ::

        async with AsyncClient(max_time=60) as client:
            await client.connect("ws://127.0.0.1:8000/chat/ops", name="worker", retry=True)
            message_id = await client.send("deployed v1.2")
            async for event in client:
                ...
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._retry_first = False
        self._tick = asyncio.Event()  # replaced at every change: a broadcast to waiters
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._iter_closed = asyncio.Event()
        self._events: asyncio.Queue[Any] = asyncio.Queue(self.max_queue)
        self._iter: asyncio.Queue[Any] = asyncio.Queue(self.max_queue)
        self._tasks: list[asyncio.Task[None]] = []

    def _changed(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def _until(self, predicate: Any, timeout: float | None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not predicate():
            tick = self._tick
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tick.wait(), left)
        return True

    # ---- life cycle ----------------------------------------------------------------------

    async def connect(
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
        """As :meth:`Client.connect <wsapp.client.Client.connect>`."""
        if self._core is not None:
            raise ClientError("connect() was already called on this client")
        self._core = self._new_core(url, name, token, since, client_id, chat)
        self._retry_first = retry
        for coro in (self._dispatch_loop(), self._write_loop(), self._run()):
            self._tasks.append(asyncio.create_task(coro))
        limit = None if retry else 2 * self.open_timeout + 1
        try:
            await asyncio.wait_for(self._ready.wait(), limit)
        except TimeoutError:
            await self.close(0)
            raise ConnectFailed(f"{display_url(self._core.url)}: not ready within "
                                f"{limit:.0f} s") from None
        if self.error is not None and not self.connected:
            raise self.error
        return self.hello

    async def close(self, timeout: float = 5.0) -> None:
        """As :meth:`Client.close <wsapp.client.Client.close>`."""
        if self._core is not None and timeout > 0 and not self._done.is_set():
            await self.flush(timeout)
        self._stopping = True
        self._changed()
        self._wake.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, "bye")
        current = asyncio.current_task()
        others = [t for t in self._tasks if t is not current and not t.done()]
        if others:
            _, pending = await asyncio.wait(others, timeout=self.close_timeout + 1.0)
            for task in pending:
                task.cancel()
        self._finish(None, "the client was closed")

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message was acked (or failed); False on timeout."""
        return await self._until(lambda: self._done.is_set() or not self.unacked, timeout)

    async def wait(self, timeout: float | None = None) -> bool:
        """As :meth:`Client.wait <wsapp.client.Client.wait>`."""
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            return False
        if self.error is not None:
            raise self.error
        return True

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- sending -------------------------------------------------------------------------

    async def send(self, message: str | bytes, *, ref: str | None = None, wait: bool = True,
                   timeout: float | None = None) -> Any:
        """As :meth:`Client.send <wsapp.client.Client.send>`; ``wait=False`` returns an
        :class:`asyncio.Future`."""
        core = self._sendable()
        if core.chat:
            ref = core.new_ref(ref)
            future = self._enqueue(core, Core.message_frame(message, ref), ref)  # type: ignore[arg-type]
        else:
            future = self._enqueue(core, message, None)
        return await self._await(future, wait, timeout, ref)

    async def emit(self, event: str, data: Any = None, *, ref: str | None = None,
                   wait: bool = True, timeout: float | None = None) -> Any:
        """As :meth:`Client.emit <wsapp.client.Client.emit>`."""
        core = self._sendable()
        ref = core.new_ref(ref) if core.chat else None
        future = self._enqueue(core, Core.event_frame(event, data, ref), ref)
        return await self._await(future, wait, timeout, ref)

    def _enqueue(self, core: Core, frame: str | bytes, ref: str | None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        core.add(frame, future, ref)
        self._changed()
        return future

    async def _await(self, future: asyncio.Future[Any], wait: bool, timeout: float | None,
                     ref: str | None) -> Any:
        if not wait:
            return future
        wait_for = self.ack_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait_for)
        except TimeoutError:
            raise AckTimeout(f"no ack within {wait_for} s; the message is still queued",
                             ref, future) from None

    # ---- receiving -----------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """As :meth:`Client.receive <wsapp.client.Client.receive>`."""
        self._require_core()
        if not self._iterate:
            raise ClientError("events go to handlers: pass queue_events=True to iterate too")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if not self._iter.empty():
                item = self._iter.get_nowait()
            elif self._iter_closed.is_set():
                item = _END
            else:
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no event within {timeout} s")
                getter = asyncio.ensure_future(self._iter.get())
                closed = asyncio.ensure_future(self._iter_closed.wait())
                done, _ = await asyncio.wait({getter, closed}, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if getter in done:
                    item = getter.result()
                else:
                    getter.cancel()
                    continue
            if item is _END:
                raise self.error or ClientClosed("the client is closed")
            return item

    async def _aiter(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                event = await self.receive()
            except ClientClosed:
                if self.error is not None:
                    raise
                return
            yield event

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Events until the client ends; a client ended by an error raises it."""
        return self._aiter()

    # ---- tasks ---------------------------------------------------------------------------

    async def _put(self, q: asyncio.Queue[Any], item: Any) -> None:
        """Put with back-pressure (a full queue pauses reading), dropped once stopping."""
        while True:
            try:
                q.put_nowait(item)
                return
            except asyncio.QueueFull:
                if self._stopping:
                    return
                await asyncio.sleep(0.05)

    async def _dispatch_loop(self) -> None:
        while True:
            try:
                event = await asyncio.wait_for(self._events.get(), 0.1)
            except TimeoutError:
                if not self._done.is_set():
                    continue
                event = _END  # _finish could not queue its end marker
            if event is _END:
                self._iter_closed.set()
                with contextlib.suppress(asyncio.QueueFull):
                    self._iter.put_nowait(_END)
                return
            for handler in self.handlers.for_event(event):
                try:
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("wsapp client: %s handler failed", event.get("type"))
            if self._iterate:
                await self._put(self._iter, event)

    async def _write_loop(self) -> None:
        core = self._require_core()
        while not (self._stopping or self._done.is_set()):
            tick = self._tick
            ws = self._ws
            writes, expired, wake = core.next_writes() if ws is not None else ([], [], None)
            self._settle(expired)  # type: ignore[arg-type]
            if not writes:
                if not expired:
                    left = None if wake is None else max(0.0, wake - core.clock())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(tick.wait(), left)
                continue
            sent = 0
            for pending in writes:
                try:
                    await ws.send(pending.frame)  # type: ignore[union-attr]
                except (ConnectionClosed, OSError, RuntimeError):
                    break  # the runner sees the close; unacked messages go again after it
                sent += 1
            done = core.written(writes[:sent])
            if done:
                self._changed()
            self._settle(done)  # type: ignore[arg-type]

    async def _run(self) -> None:
        core = self._require_core()
        budget = self._budget()
        first = True
        try:
            while not self._stopping:
                url = core.connect_url()
                try:
                    ws = await connect(url, **self._connect_kwargs(url))
                    info, ready = await self._serve(ws, budget)
                except Exception as exc:  # every failure is translated and classified
                    info, ready, error = None, False, connect_error(exc, display_url(url))
                else:
                    error = ConnectFailed(f"{info.describe()} before the connection was ready")
                verdict = self._after_close(info, self._stopping) if ready else False
                if ready:
                    assert info is not None
                    first = False
                    await self._put(self._events, self._disconnect_event(info, verdict))
                if self._stopping:
                    break
                if not ready:  # a failed attempt: the budget decides
                    if first and not self._retry_first:
                        raise error
                    await self._sleep(self._next_delay(budget, error))
                    continue
                if verdict is not True:
                    if isinstance(verdict, ClientError):
                        raise verdict
                    break
                budget.begin()
                await self._sleep(random.random() * self.backoff.initial)  # RFC 6455 7.2.3
            self._finish(None, "the client was closed")
        except ClientError as exc:
            self._finish(exc, str(exc))
        except Exception as exc:  # a bug: end the client with it rather than hang
            log.exception("wsapp client: runner failed")
            self._finish(ClientError(f"internal error: {exc!r}"), "internal error")

    def _next_delay(self, budget: RetryBudget, error: ClientError) -> float:
        delay = budget.failed(error)  # raises at the limits
        with contextlib.suppress(asyncio.QueueFull):  # a failed attempt is not worth a stall
            self._events.put_nowait(self._retry_event(budget, error, delay))
        return delay

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _serve(self, ws: ClientConnection, budget: RetryBudget) -> tuple[CloseInfo, bool]:
        """Read until the connection ends: how it ended, and whether it became ready."""
        core = self._require_core()
        ready = False
        if self._stopping:
            await ws.close(1000, "bye")
        self._ws = ws
        events = core.opened()
        self._changed()
        try:
            while True:
                for event in events:
                    if event["type"] == "connect":
                        ready = True
                        budget.reset()
                        self._ready.set()
                    await self._put(self._events, event)
                data = await ws.recv()
                feed = core.receive(data)
                if feed.settled or core.live:
                    self._changed()
                self._settle(feed.settled)  # type: ignore[arg-type]
                events = feed.events
        except ConnectionClosed as exc:
            return CloseInfo.of(exc), ready
        finally:
            core.closed()
            self._ws = None
            self._changed()

    def _finish(self, error: ClientError | None, reason: str) -> None:
        """End the client once: fail what is left, stop the tasks, wake everyone."""
        if self._done.is_set():
            return
        if error is not None and self.error is None:
            self.error = error
        self._stopping = True
        failed = self._core.fail_all(reason) if self._core is not None else []
        self._done.set()
        self._changed()
        self._settle(failed)  # type: ignore[arg-type]
        self._ready.set()
        self._wake.set()
        try:
            if error is not None:
                self._events.put_nowait(self._fatal_event(error))
            self._events.put_nowait(_END)
        except asyncio.QueueFull:  # the dispatcher is behind: iteration still ends
            self._iter_closed.set()
