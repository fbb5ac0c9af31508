"""Process-wide WebSocket bookkeeping: settings, open sockets, keepalive, shutdown.

One `Runtime` per process. The handler reserves a slot here for every handshake it lets
through (`admit`/`release`: the per-IP 429 and per-process 503 limits) and registers every
accepted socket (`add`/`discard`), so that the process can ping idle peers from ONE
greenlet instead of one per socket, export traffic metrics, and close everything with
1001 on a planned shutdown.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

import gevent

from wsapp import ipcap
from wsapp.admission import check_limits
from wsapp.protocol.frames import CloseCode, Opcode, encode_close, encode_frame
from wsapp.protocol.handshake import Rejection
from wsapp.settings import Settings

if TYPE_CHECKING:
    from wsapp.protocol.websocket import WebSocket

log = logging.getLogger("wsapp.runtime")
close_log = logging.getLogger("wsapp.handler")  # the open line is the handler's: same logger

METRICS_FLUSH_INTERVAL = 2.0
KEEPALIVE_REASON = "keepalive timeout"


SCAN_SLICE = 256  # sockets handled per slice of a periodic scan before yielding to others
_KEEPALIVE_PING = encode_frame(Opcode.PING, b"wsapp-keepalive")
TRIM_INTERVAL = 10.0  # seconds between memory trims at most
TRIM_MIN_GONE = 500  # sockets that must have closed since the peak before trimming


def _load_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()


class Runtime:
    """Open sockets of this process and the greenlet that keeps them alive."""

    def __init__(self, settings: Settings) -> None:
        from wsapp import metrics  # imported here, never in a gunicorn master (see wsapp.metrics)

        self.settings = settings
        self.metrics = metrics
        self.sockets: set[WebSocket] = set()
        #: Admitted handshakes and open sockets per client IP (the 429 limit counts these).
        self.per_ip: Counter[str] = Counter()
        #: Admitted handshakes and open sockets in this process (the 503 limit counts these).
        self.admitted = 0
        self.shutting_down = False
        self._keepalive: gevent.Greenlet | None = None
        self._ping_sent: dict[WebSocket, float] = {}
        #: Per socket: endpoint label and the traffic counters already exported to metrics.
        self._flushed: dict[WebSocket, list] = {}
        self._last_flush = time.monotonic()
        self._peak = 0
        self._last_trim = time.monotonic()

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
        endpoint = self.metrics.endpoint_of(ws.environ.get("PATH_INFO"))
        self.sockets.add(ws)
        self._flushed[ws] = [endpoint, 0, 0, 0, 0]
        self.metrics.connection_opened(endpoint)
        if self._keepalive is None:
            self._keepalive = gevent.spawn(self._housekeeping_loop)

    def discard(self, ws: WebSocket) -> None:
        """Forget a finished socket: export its last traffic and its close code."""
        if ws in self.sockets:
            self.sockets.discard(ws)
            track = self._flushed.pop(ws, None)
            if track is not None:
                self._flush_one(ws, track)
                self.metrics.connection_closed(track[0])
                self.metrics.record_close(track[0], ws.close_code, ws.close_reason or "")
        self._ping_sent.pop(ws, None)

    def finish(self, ws: WebSocket) -> None:
        """A socket's serving is over: make sure TCP is gone, forget it, log one close line."""
        if ws.state != "CLOSED":
            ws.abort()
        self.discard(ws)
        close_log.info(
            "ws close conn=%s path=%s peer=%s code=%s by=%s reason=%r duration=%.3fs in=%d out=%d",
            ws.id,
            ws.path,
            ws.peer,
            ws.close_code,
            ws.close_initiator or "-",
            ws.close_reason,
            time.monotonic() - ws.opened_at,
            ws.messages_in,
            ws.messages_out,
        )

    def count(self) -> int:
        return len(self.sockets)

    # --- metrics -------------------------------------------------------------------------

    def _flush_one(self, ws: WebSocket, track: list) -> None:
        mi, mo, bi, bo = ws.messages_in, ws.messages_out, ws.bytes_in, ws.bytes_out
        self.metrics.record_traffic(track[0], mi - track[1], mo - track[2], bi - track[3], bo - track[4])
        track[1:] = [mi, mo, bi, bo]

    def flush_metrics(self) -> None:
        """Export message and byte counts of open sockets (done every few seconds and per scrape)."""
        totals: dict[str, list[int]] = {}
        for index, (ws, track) in enumerate(list(self._flushed.items())):
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
            self.metrics.record_traffic(endpoint, mi, mo, bi, bo)
        self._last_flush = time.monotonic()

    # --- keepalive -----------------------------------------------------------------------

    def _housekeeping_loop(self) -> None:
        """One greenlet per process: keepalive pings and periodic metrics export."""
        while True:
            interval = self.settings.ping_interval
            tick = max(0.05, min(1.0, interval / 4)) if interval > 0 else 1.0
            gevent.sleep(tick)
            now = time.monotonic()
            if interval > 0:
                try:
                    self.check_keepalive(now)
                except Exception:  # never let one bad socket stop keepalive for all
                    log.exception("keepalive check failed")
            if now - self._last_flush >= METRICS_FLUSH_INTERVAL:
                try:
                    self.flush_metrics()
                except Exception:
                    log.exception("metrics flush failed")
            self._maybe_trim_memory(now)

    def _maybe_trim_memory(self, now: float) -> None:
        """Give memory back to the OS after many connections have gone.

        CPython and glibc keep freed memory for reuse, so after a wave of thousands of
        connections RSS stays near its peak (measured: 149 MiB -> 80 MiB after trimming,
        with no object left behind). When the socket count has fallen well below its
        recent peak, a full collection plus malloc_trim(0) returns the free pages.
        """
        count = len(self.sockets)
        self._peak = max(self._peak, count)
        if now - self._last_trim < TRIM_INTERVAL:
            return
        gone = self._peak - count
        if gone < TRIM_MIN_GONE or gone < self._peak // 4:
            return
        self._last_trim = now
        self._peak = count
        gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)

    def check_keepalive(self, now: float) -> None:
        """Ping sockets idle for ping_interval; drop those that did not answer in ping_timeout."""
        interval = self.settings.ping_interval
        timeout = self.settings.ping_timeout
        for index, ws in enumerate(list(self.sockets)):
            if index and index % SCAN_SLICE == 0:
                gevent.sleep(0)  # with 10,000s of sockets, never hold the loop for a whole scan
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
                    if ws.control_sink is not None:
                        ws.send_keepalive_ping(_KEEPALIVE_PING)  # queued: never blocks
                    else:
                        gevent.spawn(ws.send_keepalive_ping, _KEEPALIVE_PING)
            elif now - sent >= timeout:
                del self._ping_sent[ws]
                log.warning("keepalive timeout: no pong from %s in %.1fs (conn %s)", ws.peer, timeout, ws.id)
                gevent.spawn(self._drop_dead_peer, ws)

    @staticmethod
    def _drop_dead_peer(ws: WebSocket) -> None:
        """Close 1011 (best effort: a dead peer will not read it), then cut TCP at once."""
        with gevent.Timeout(0.5, False), contextlib.suppress(Exception):  # closing already, or gone
            ws.send_frame(encode_close(CloseCode.INTERNAL_ERROR, KEEPALIVE_REASON))
        ws.abort(CloseCode.INTERNAL_ERROR, KEEPALIVE_REASON)

    # --- shutdown ------------------------------------------------------------------------

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> int:
        """Close every open socket with `code` (1001) and wait for the handshakes; returns how many."""
        self.shutting_down = True
        targets = [ws for ws in list(self.sockets) if ws.state == "OPEN"]
        jobs = [gevent.spawn(ws.close, code, reason) for ws in targets]
        gevent.joinall(jobs, timeout=self.settings.close_timeout + 1.0)
        return len(targets)


_runtime: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    """Install the process runtime (called by create_app)."""
    global _runtime
    # gevent records, for every greenlet, who spawned it and from where (a debugging aid
    # for gevent.util.print_run_info). With a greenlet per socket that costs about 0.7 KiB
    # per idle connection and 5 % of connection set-up (measured with loadgen idle).
    gevent.config.track_greenlet_tree = False
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
