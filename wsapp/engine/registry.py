"""Process-wide WebSocket bookkeeping: admission slots, the open sockets, shutdown.

One `Registry` per process. The handler reserves a slot here for every handshake it
lets through (`admit`/`release`: the per-IP 429 and per-process 503 limits) and registers
every accepted socket (`add`/`finish`), so the process can keep them alive from one
greenlet (`wsapp.engine.housekeeping`), export traffic figures, and close everything
with 1001 on a planned shutdown. Metrics are told through a `sink` (set by the app), so
the engine imports nothing above it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

import gevent

from wsapp import ipcap, logsafe
from wsapp.admission import check_limits
from wsapp.engine import housekeeping
from wsapp.protocol.frames import CloseCode
from wsapp.protocol.handshake import Rejection
from wsapp.protocol.session import CloseCause, State
from wsapp.settings import Settings

if TYPE_CHECKING:
    from wsapp.engine.websocket import WebSocket

close_log = logging.getLogger("wsapp.handler")  # the open line is the handler's: same logger

SCAN_SLICE = 256  # sockets handled per slice of a periodic scan before yielding to others
#: Environ key naming the route (a Flask rule such as "/rooms/<room>") that serves a
#: socket, set before `accept()` by wsapp.extension: its metrics label.
ROUTE_KEY = "wsapp.route"


class MetricsSink(Protocol):
    """What the registry reports; `wsapp.metrics` implements it."""

    def endpoint_of(self, path: str | None, route: str | None = None) -> str: ...
    def connection_opened(self, endpoint: str) -> None: ...
    def connection_closed(self, endpoint: str) -> None: ...
    def record_traffic(self, endpoint: str, mi: int, mo: int, bi: int, bo: int) -> None: ...
    def record_close(self, endpoint: str, code: int | None, cause: CloseCause | None) -> None: ...
    def handshake_rejected(self, reason: str) -> None: ...


class _NullSink:
    def endpoint_of(self, path: str | None, route: str | None = None) -> str:
        return "other"

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


class Registry:
    """Open sockets and admission slots of this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sink: MetricsSink = _NullSink()  # type: ignore[assignment]
        self.sockets: set[WebSocket] = set()
        #: Admitted handshakes and open sockets per client IP (the 429 limit counts these).
        self.per_ip: Counter[str] = Counter()
        #: Admitted handshakes and open sockets in this process (the 503 limit counts these).
        self.admitted = 0
        self.shutting_down = False
        #: Per socket: endpoint label and the traffic counters already exported.
        self.tracked: dict[WebSocket, list] = {}
        self._housekeeping: gevent.Greenlet | None = None

    # --- admission -----------------------------------------------------------------------

    def admit(self, ip: str) -> Rejection | None:
        """Reserve a connection slot for `ip` before the view runs; None if admitted.

        Counting at admission (not at the 101) means a burst of simultaneous handshakes
        cannot overshoot the limits. Every admitted slot must be given back by `release`."""
        rejection = check_limits(self.per_ip[ip], self.admitted, self.settings)
        if rejection is None:
            rejection = ipcap.admit(ip, self.settings)  # the per-IP cap over a master's workers
        if rejection is None:
            self.per_ip[ip] += 1
            self.admitted += 1
        return rejection

    def release(self, ip: str) -> None:
        ipcap.release(ip)
        self.admitted -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]

    # --- registry ------------------------------------------------------------------------

    def add(self, ws: WebSocket) -> None:
        endpoint = self.sink.endpoint_of(ws.environ.get("PATH_INFO"), ws.environ.get(ROUTE_KEY))
        self.sockets.add(ws)
        self.tracked[ws] = [endpoint, 0, 0, 0, 0]
        self.sink.connection_opened(endpoint)
        if self._housekeeping is None:
            self._housekeeping = gevent.spawn(housekeeping.run, self)

    def discard(self, ws: WebSocket) -> None:
        """Forget a finished socket: export its last traffic and how it closed."""
        if ws in self.sockets:
            self.sockets.discard(ws)
            track = self.tracked.pop(ws, None)
            if track is not None:
                self.flush_one(ws, track)
                self.sink.connection_closed(track[0])
                self.sink.record_close(track[0], ws.close_code, ws.session.cause)

    def finish(self, ws: WebSocket) -> None:
        """A socket's serving is over: make sure TCP is gone, forget it, log one close line."""
        if ws.state is not State.CLOSED:
            ws.abort()
        self.discard(ws)
        cause = ws.session.cause
        close_log.info(
            "ws close conn=%s path=%s peer=%s code=%s by=%s cause=%s reason='%s' duration=%.3fs"
            " in=%d out=%d",
            ws.id, logsafe.escape(ws.path), ws.peer, ws.close_code, ws.close_initiator or "-",
            cause.value if cause is not None else "-", logsafe.escape(ws.close_reason),
            time.monotonic() - ws.opened_at, ws.messages_in, ws.messages_out,
        )

    def end_detached(self, ws: WebSocket) -> None:
        """The end of a socket that left its request: bookkeeping and its admission slot."""
        self.finish(ws)
        self.release(ws.peer_ip)

    def count(self) -> int:
        return len(self.sockets)

    # --- metrics -------------------------------------------------------------------------

    def flush_one(self, ws: WebSocket, track: list) -> None:
        mi, mo, bi, bo = ws.messages_in, ws.messages_out, ws.bytes_in, ws.bytes_out
        self.sink.record_traffic(
            track[0], mi - track[1], mo - track[2], bi - track[3], bo - track[4]
        )
        track[1:] = [mi, mo, bi, bo]

    def flush_metrics(self) -> None:
        """Export message and byte counts of open sockets (every few seconds and per scrape)."""
        totals: dict[str, list[int]] = {}
        for index, (ws, track) in enumerate(list(self.tracked.items())):
            if index and index % SCAN_SLICE == 0:
                gevent.sleep(0)
            mi, mo, bi, bo = ws.messages_in, ws.messages_out, ws.bytes_in, ws.bytes_out
            acc = totals.setdefault(track[0], [0, 0, 0, 0])
            acc[0] += mi - track[1]
            acc[1] += mo - track[2]
            acc[2] += bi - track[3]
            acc[3] += bo - track[4]
            track[1:] = [mi, mo, bi, bo]
        for endpoint, (mi, mo, bi, bo) in totals.items():
            self.sink.record_traffic(endpoint, mi, mo, bi, bo)

    # --- shutdown ------------------------------------------------------------------------

    def close_all(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down"
    ) -> int:
        """Close every open socket with `code` (1001) and wait for the handshakes, then for
        their end-of-connection work (at most END_WORK_SECONDS more); how many."""
        self.shutting_down = True
        targets = [ws for ws in list(self.sockets) if ws.state is State.OPEN]
        jobs = [gevent.spawn(_close_and_end, ws, code, reason) for ws in targets]
        gevent.joinall(jobs, timeout=self.settings.close_timeout + 1.0 + END_WORK_SECONDS)
        return len(targets)


#: Seconds a planned shutdown waits, after the close handshakes, for the sockets' end work
#: (end callbacks, `serve`'s on_end: leaving chat rooms and `wsapp.Rooms`, which with Redis
#: is a round trip), so members leave presence now instead of after WSAPP_PRESENCE_TTL.
END_WORK_SECONDS = 2.0


def _close_and_end(ws: WebSocket, code: int, reason: str) -> None:
    ws.close(code, reason)
    ws.wait_ended(END_WORK_SECONDS)


_registry: Registry | None = None


def configure(settings: Settings) -> Registry:
    """Install the process registry (called by create_app)."""
    global _registry
    # gevent records, for every greenlet, who spawned it and from where (a debugging aid).
    # With a greenlet per socket that costs memory per idle connection (docs/performance.md).
    gevent.config.track_greenlet_tree = False
    if _registry is None:
        _registry = Registry(settings)
    else:
        _registry.settings = settings
    return _registry


def current() -> Registry:
    global _registry
    if _registry is None:
        _registry = Registry(Settings.from_env())
    return _registry
