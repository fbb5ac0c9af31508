"""Process-wide WebSocket bookkeeping: settings, open sockets, keepalive, shutdown.

One `Runtime` per process. The handler registers every accepted socket here so that the
process can count connections (per IP and in total), ping idle peers from ONE greenlet
instead of one per socket, and close everything with 1001 on a planned shutdown.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

import gevent

from wsapp.protocol.frames import CloseCode, Opcode, encode_frame
from wsapp.settings import Settings

if TYPE_CHECKING:
    from wsapp.protocol.websocket import WebSocket

log = logging.getLogger("wsapp.runtime")


class Runtime:
    """Open sockets of this process and the greenlet that keeps them alive."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sockets: set[WebSocket] = set()
        self.per_ip: Counter[str] = Counter()
        self.shutting_down = False
        self._keepalive: gevent.Greenlet | None = None
        self._ping_sent: dict[WebSocket, float] = {}

    # --- registry ------------------------------------------------------------------------

    def add(self, ws: WebSocket) -> None:
        self.sockets.add(ws)
        self.per_ip[ws.peer_ip] += 1
        if self.settings.ping_interval > 0 and self._keepalive is None:
            self._keepalive = gevent.spawn(self._keepalive_loop)

    def discard(self, ws: WebSocket) -> None:
        if ws in self.sockets:
            self.sockets.discard(ws)
            self.per_ip[ws.peer_ip] -= 1
            if self.per_ip[ws.peer_ip] <= 0:
                del self.per_ip[ws.peer_ip]
        self._ping_sent.pop(ws, None)

    def count(self) -> int:
        return len(self.sockets)

    # --- keepalive -----------------------------------------------------------------------

    def _keepalive_loop(self) -> None:
        interval = self.settings.ping_interval
        tick = max(0.05, min(1.0, interval / 4))
        while True:
            gevent.sleep(tick)
            self.check_keepalive(time.monotonic())

    def check_keepalive(self, now: float) -> None:
        """Ping sockets idle for ping_interval; drop those that did not answer in ping_timeout."""
        interval = self.settings.ping_interval
        timeout = self.settings.ping_timeout
        for ws in list(self.sockets):
            if ws.state != "OPEN":
                continue
            sent = self._ping_sent.get(ws)
            if sent is not None and ws.last_received > sent:
                # Anything received after our ping (pong or data) proves the peer is alive.
                del self._ping_sent[ws]
                sent = None
            if sent is None:
                if now - ws.last_received >= interval:
                    self._ping_sent[ws] = now
                    gevent.spawn(ws.send_keepalive_ping, encode_frame(Opcode.PING, b"wsapp-keepalive"))
            elif now - sent >= timeout:
                del self._ping_sent[ws]
                log.warning("keepalive timeout: no pong from %s in %.1fs (conn %s)", ws.peer, timeout, ws.id)
                gevent.spawn(ws.abort, CloseCode.ABNORMAL, "keepalive timeout")

    # --- shutdown ------------------------------------------------------------------------

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> int:
        """Close every open socket with `code` (1001) and wait for the handshakes; returns how many."""
        self.shutting_down = True
        targets = [ws for ws in list(self.sockets) if ws.state == "OPEN"]
        jobs = [gevent.spawn(ws.shutdown_close, code, reason) for ws in targets]
        gevent.joinall(jobs, timeout=self.settings.close_timeout + 1.0)
        return len(targets)


_runtime: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    """Install the process runtime (called by create_app)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(settings)
    else:
        _runtime.settings = settings
    return _runtime


def current() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(Settings.from_env())
    return _runtime
