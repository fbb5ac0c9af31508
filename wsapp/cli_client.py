"""``python -m wsapp client URL`` and ``python -m wsapp publish URL``.

``client``: stdin lines are sent, events are printed readably. For ``/chat/`` URLs it
reconnects with exponential backoff and resumes with ``since=<last id seen>``, so nothing
said in the room while it was away is missed; lines typed meanwhile are sent after the
reconnect. Other URLs (``/echo``) get a plain line-in, message-out session.

``publish``: every stdin line becomes one chat message (``tail -f app.log | python -m
wsapp publish ws://host/chat/ops``). Each is sent with a ``ref`` and kept until the server
acks it; unacked lines are sent again after a reconnect (at-least-once; a line whose ack
was lost is recognised in the ``since=`` replay and not sent twice). Exit status 0 when
every line was acked, 1 otherwise.

Works with and without gevent's monkey patching (``python -m wsapp`` patches): stdin is
read in a real OS thread when patched, so reading it never blocks the event loop.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websocket  # websocket-client

OPCODE_TEXT = websocket.ABNF.OPCODE_TEXT
OPCODE_BINARY = websocket.ABNF.OPCODE_BINARY
OPCODE_CLOSE = websocket.ABNF.OPCODE_CLOSE

# Close codes after which reconnecting would only repeat the failure.
PERMANENT_CLOSE_CODES = frozenset({1002, 1003, 1007, 1009, 1010})


def is_chat_url(url: str) -> bool:
    return urlsplit(url).path.startswith("/chat/")


def with_query(url: str, **params: str | None) -> str:
    """`url` with query parameters set (None removes one)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for key, value in params.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def backoff_delays(base: float = 0.5, cap: float = 10.0, rng: Callable[[], float] = random.random) -> Iterator[float]:
    """0.5, 1, 2, 4 ... seconds up to `cap`, each with up to 25% random jitter."""
    delay = base
    while True:
        yield delay * (1 + 0.25 * rng())
        delay = min(cap, delay * 2)


def stdin_lines(stream: IO[str]) -> Iterator[str]:
    """Lines of `stream` without their newline; reads in an OS thread under gevent."""
    read: Callable[[], str] = stream.readline
    try:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent

            pool = gevent.get_hub().threadpool

            def read() -> str:  # noqa: F811 - the gevent-friendly variant
                return pool.apply(stream.readline)
    except ImportError:  # pragma: no cover - gevent is a dependency
        pass
    while True:
        line = read()
        if not line:
            return
        yield line.rstrip("\r\n")


def format_event(event: dict[str, Any]) -> str:
    """One server event as a line for humans."""
    kind = event.get("type")
    if kind == "message":
        ts = event.get("ts")
        when = datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S") if isinstance(ts, int | float) else "--:--:--"
        tail = "  (history)" if event.get("replay") else ""
        return f"[{when}] <{event.get('name')}> {event.get('text')}{tail}"
    if kind == "hello":
        members = ", ".join(str(m) for m in event.get("members", []))
        line = f"* joined #{event.get('room')} as {event.get('name')} (id {event.get('id')}); here: {members}"
        if event.get("recovered") is False:
            line += "\n* some messages while you were away are no longer in history"
        return line
    if kind == "join":
        return f"* {event.get('name')} joined"
    if kind == "leave":
        return f"* {event.get('name')} left"
    if kind == "error":
        return f"! {event.get('code')}: {event.get('reason')}"
    if kind == "ack":
        return f"(sent {event.get('ref')} as {event.get('id')})"
    if kind == "event":
        sender = event.get("sender")
        who = f"<{sender.get('name')}> " if isinstance(sender, dict) else ""
        return f"~ {who}{event.get('event')} {json.dumps(event.get('data'), ensure_ascii=False)}"
    return json.dumps(event, ensure_ascii=False)


def _shown(event: dict[str, Any]) -> bool:
    """Events the interactive client prints: not acks, not pages' typing notices."""
    kind = event.get("type")
    return kind != "ack" and not (kind == "event" and event.get("event") == "typing")


def _close_code(frame: Any) -> int | None:
    data = getattr(frame, "data", b"") or b""
    if len(data) >= 2:
        return int.from_bytes(data[:2], "big")
    return None


class ChatSession:
    """One logical chat presence across reconnects: resume with since=, resend unacked."""

    def __init__(
        self,
        url: str,
        name: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        reconnect: bool = True,
        max_attempts: int | None = None,
        connect_timeout: float = 10.0,
        backoff: Callable[[], Iterator[float]] = backoff_delays,
    ) -> None:
        self.url = url
        self.name = name
        self.on_event = on_event or (lambda event: None)
        self.on_status = on_status or (lambda text: None)
        self.reconnect = reconnect
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.last_id: str | None = None
        self.outbox: OrderedDict[str, str] = OrderedDict()  # ref -> text, unacked, in order
        self.failed = 0  # messages the server refused with an error event
        self._refs = itertools.count(1)
        self._lock = threading.Lock()
        self._ws: websocket.WebSocket | None = None
        self._stopping = False
        self._finished = threading.Event()
        self._connected = threading.Event()
        self._idle = threading.Condition(self._lock)
        self.fatal: str | None = None
        self._thread: threading.Thread | None = None

    # ---- public API

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wsapp-chat-session", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def submit(self, text: str) -> str:
        """Queue a message; sent now if connected, else after the next (re)connect."""
        ref = str(next(self._refs))
        with self._lock:
            self.outbox[ref] = text
            ws = self._ws
        if ws is not None:
            self._send(ws, ref, text)
        return ref

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted message was acked or refused (or the session ended)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.outbox and not self._finished.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(min(remaining, 0.1))
            return not self.outbox

    def window_wait(self, size: int, timeout: float) -> None:
        """Block while more than `size` messages are unacked (flow control for publish)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.outbox) > size and not self._finished.is_set() and time.monotonic() < deadline:
                self._idle.wait(0.1)

    def stop(self, timeout: float = 3.0) -> None:
        """Close normally and wait for the session thread to finish."""
        self._stopping = True
        with self._lock:
            ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.send_close(1000, b"bye")
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.shutdown()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    # ---- internals

    def _send(self, ws: websocket.WebSocket, ref: str, text: str) -> None:
        # A failed send is noticed by the receive loop, which reconnects and resends.
        with contextlib.suppress(Exception):
            ws.send(json.dumps({"type": "message", "text": text, "ref": ref}, ensure_ascii=False))

    def _connect_url(self) -> str:
        """The URL with our name (once known) and `since=` the last id we saw (once any)."""
        params: dict[str, str | None] = {}
        if self.name is not None:
            params["name"] = self.name
        if self.last_id is not None:
            params["since"] = self.last_id
        return with_query(self.url, **params)

    def _run(self) -> None:
        delays = self.backoff()
        attempts = 0
        try:
            while not self._stopping:
                attempts += 1
                try:
                    ws = websocket.create_connection(self._connect_url(), timeout=self.connect_timeout)
                except websocket.WebSocketBadStatusException as exc:
                    if 400 <= exc.status_code < 500:
                        body = (exc.resp_body or b"").decode("utf-8", "replace").strip()
                        self.fatal = f"refused: HTTP {exc.status_code} {body}".strip()
                        self.on_status(self.fatal)
                        return
                    self.on_status(f"connect failed: HTTP {exc.status_code}")
                except (OSError, websocket.WebSocketException) as exc:
                    self.on_status(f"connect failed: {exc}")
                else:
                    attempts = 0
                    delays = self.backoff()
                    code = self._serve(ws)
                    if self._stopping:
                        return
                    if code in PERMANENT_CLOSE_CODES:
                        self.fatal = f"closed by server with {code}"
                        self.on_status(self.fatal)
                        return
                    self.on_status(f"disconnected (close code {code})")
                if not self.reconnect or (self.max_attempts is not None and attempts >= self.max_attempts):
                    if self.fatal is None:
                        self.fatal = "gave up reconnecting"
                    return
                delay = next(delays)
                self.on_status(f"reconnecting in {delay:.1f}s")
                deadline = time.monotonic() + delay
                while not self._stopping and time.monotonic() < deadline:
                    time.sleep(min(0.05, delay))
        finally:
            self._finished.set()
            with self._lock:
                self._idle.notify_all()

    def _serve(self, ws: websocket.WebSocket) -> int | None:
        """Receive until the connection ends; returns the close code (None: no close frame).

        Unacked messages are resent once the replay announced by ``hello.history`` is
        over, minus those the replay shows already arrived."""
        ws.settimeout(None)
        replay_left: int | None = None  # None until hello
        try:
            while True:
                opcode, frame = ws.recv_data_frame(control_frame=False)
                if opcode == OPCODE_CLOSE:
                    return _close_code(frame)
                if opcode != OPCODE_TEXT:
                    continue
                try:
                    event = json.loads(frame.data if hasattr(frame, "data") else frame)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                kind = event.get("type")
                if kind == "hello" and replay_left is None:
                    self.name = event.get("name") or self.name  # keep a generated guest name
                    replay_left = int(event.get("history") or 0)
                    self.on_event(event)
                    if replay_left <= 0:
                        self._go_live(ws)
                    continue
                if kind == "message":
                    self._on_message(event)
                elif kind == "ack":
                    self._settle(str(event.get("ref")))
                elif kind == "error" and event.get("ref") is not None:
                    self.failed += 1
                    self._settle(str(event.get("ref")))
                self.on_event(event)
                if kind == "message" and event.get("replay") and replay_left:
                    replay_left -= 1
                    if replay_left == 0:
                        self._go_live(ws)
        except (OSError, websocket.WebSocketException):
            return None
        finally:
            with self._lock:
                if self._ws is ws:
                    self._ws = None
            with contextlib.suppress(Exception):
                ws.shutdown()

    def _go_live(self, ws: websocket.WebSocket) -> None:
        """Resend what is still unacked, in order, then send new lines directly."""
        with self._lock:
            for ref, text in list(self.outbox.items()):
                self._send(ws, ref, text)
            self._ws = ws
        self._connected.set()

    def _on_message(self, event: dict[str, Any]) -> None:
        if isinstance(event.get("id"), str):
            self.last_id = event["id"]
        if event.get("replay") and event.get("name") == self.name:
            # Our own message from before the reconnect: its ack may have been lost.
            with self._lock:
                for ref, text in self.outbox.items():
                    if text == event.get("text"):
                        del self.outbox[ref]
                        self._idle.notify_all()
                        break

    def _settle(self, ref: str) -> None:
        with self._lock:
            self.outbox.pop(ref, None)
            self._idle.notify_all()


def _pacer(rate: float | None, burst: int, clock: Callable[[], float] = time.monotonic) -> Callable[[], None]:
    """A function that sleeps as needed to keep calls under `rate` per second (token bucket)."""
    if not rate:
        return lambda: None
    state = {"tokens": float(burst), "at": clock()}

    def pace() -> None:
        now = clock()
        state["tokens"] = min(float(burst), state["tokens"] + (now - state["at"]) * rate)
        state["at"] = now
        if state["tokens"] < 1.0:
            time.sleep((1.0 - state["tokens"]) / rate)
            state["tokens"] = 1.0
            state["at"] = clock()
        state["tokens"] -= 1.0

    return pace


def _printer(out: IO[str]) -> Callable[[str], None]:
    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            out.write(line + "\n")
            out.flush()

    return emit


def _run_plain(url: str, stdin: IO[str], out: Callable[[str], None], err: Callable[[str], None], timeout: float) -> int:
    """Line-in, message-out session for non-chat URLs (/echo); no reconnect."""
    try:
        ws = websocket.create_connection(url, timeout=timeout)
    except websocket.WebSocketBadStatusException as exc:
        err(f"refused: HTTP {exc.status_code}")
        return 1
    except (OSError, websocket.WebSocketException) as exc:
        err(f"cannot connect to {url}: {exc}")
        return 1
    ws.settimeout(None)
    done = threading.Event()
    counts = {"sent": 0, "received": 0}

    def receive() -> None:
        try:
            while True:
                opcode, frame = ws.recv_data_frame()
                if opcode == OPCODE_CLOSE:
                    err(f"* closed by server ({_close_code(frame)})")
                    return
                data = frame.data if hasattr(frame, "data") else frame
                if opcode == OPCODE_TEXT:
                    out(data.decode("utf-8", "replace") if isinstance(data, bytes) else data)
                else:
                    out(f"<binary {len(data)} bytes>")
                counts["received"] += 1
        except (OSError, websocket.WebSocketException):
            pass
        finally:
            done.set()

    threading.Thread(target=receive, daemon=True).start()
    for line in stdin_lines(stdin):
        if done.is_set():
            break
        try:
            ws.send(line)
        except (OSError, websocket.WebSocketException):
            break
        counts["sent"] += 1
    # let the answers to what we sent arrive (an echo answers each line), at most 2 s
    deadline = time.monotonic() + 2.0
    while counts["received"] < counts["sent"] and not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    with contextlib.suppress(Exception):
        ws.send_close(1000, b"bye")
    done.wait(2.0)
    with contextlib.suppress(Exception):
        ws.shutdown()
    return 0


def run_client(
    url: str,
    name: str | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    reconnect: bool = True,
    max_attempts: int | None = None,
    drain_timeout: float = 5.0,
) -> int:
    """Interactive client. Returns the process exit status."""
    stdin = stdin if stdin is not None else sys.stdin
    out = _printer(stdout if stdout is not None else sys.stdout)
    err = _printer(stderr if stderr is not None else sys.stderr)
    if not is_chat_url(url):
        return _run_plain(url, stdin, out, err, timeout=10.0)
    session = ChatSession(
        url,
        name=name,
        on_event=lambda event: out(format_event(event)) if _shown(event) else None,
        on_status=lambda text: err(f"* {text}"),
        reconnect=reconnect,
        max_attempts=max_attempts,
    )
    session.start()
    try:
        for line in stdin_lines(stdin):
            if session.finished:
                break
            if line.strip():  # a line of white space only is not a message (the server refuses it)
                session.submit(line)
        session.drain(drain_timeout)
    except KeyboardInterrupt:
        session.stop()
        return 130
    session.stop()
    return 1 if session.fatal and not session.wait_connected(0) else 0


def run_publish(
    url: str,
    name: str | None = None,
    stdin: IO[str] | None = None,
    stderr: IO[str] | None = None,
    window: int = 32,
    drain_timeout: float = 30.0,
    reconnect: bool = True,
    max_attempts: int | None = None,
    rate: float | None = 15.0,
    burst: int = 30,
) -> int:
    """Send each stdin line as a chat message; exit 0 once all were acked.

    `rate`/`burst` pace the lines (messages per second, token bucket) below the server's
    default per-connection limit (WSAPP_RATE_LIMIT 20/s, burst 40), which closes a faster
    sender with 1008; None sends as fast as acks allow (`window` unacked at most)."""
    stdin = stdin if stdin is not None else sys.stdin
    err = _printer(stderr if stderr is not None else sys.stderr)
    if not is_chat_url(url):
        err(f"publish needs a /chat/<room> URL, got {url}")
        return 2

    def on_event(event: dict[str, Any]) -> None:
        if event.get("type") == "error":
            err(format_event(event))

    session = ChatSession(
        url,
        name=name,
        on_event=on_event,
        on_status=lambda text: err(f"* {text}"),
        reconnect=reconnect,
        max_attempts=max_attempts,
    )
    session.start()
    sent = 0
    unsent = False
    pace = _pacer(rate, burst)
    try:
        for line in stdin_lines(stdin):
            if not line.strip():
                continue
            if session.finished:
                unsent = True
                break
            session.window_wait(window, timeout=60.0)
            pace()
            session.submit(line)
            sent += 1
        complete = session.drain(drain_timeout)
    except KeyboardInterrupt:
        session.stop()
        return 130
    session.stop()
    if session.fatal and (session.outbox or unsent):
        err(f"* {session.fatal}")
    if unsent or not complete or session.failed:
        err(f"* {len(session.outbox)} of {sent} sent lines unconfirmed, {session.failed} refused"
            + (", input left unsent" if unsent else ""))
        return 1
    return 0
