"""One greenlet per process: keepalive pings, periodic metrics export, memory trim, and
freeing the compressors of connections idle for WSAPP_DEFLATE_IDLE."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import time
from typing import TYPE_CHECKING

import gevent

from wsapp.engine import keepalive
from wsapp.protocol import compression
from wsapp.protocol.frames import CloseCode
from wsapp.protocol.session import CloseCause

if TYPE_CHECKING:
    from wsapp.engine.registry import Registry

log = logging.getLogger("wsapp.runtime")

METRICS_FLUSH_INTERVAL = 2.0
KEEPALIVE_PAYLOAD = b"wsapp-keepalive"
KEEPALIVE_REASON = "keepalive timeout"
SCAN_SLICE = 256  # sockets pinged per slice before yielding to other greenlets
TRIM_INTERVAL = 10.0  # seconds between memory trims at most
TRIM_MIN_GONE = 500  # sockets that must have closed since the peak before trimming
TRIM_MIN_GAP = 2.0  # seconds between trims at least, when a wave of idle compressors ends


def _load_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()


class _State:
    def __init__(self) -> None:
        now = time.monotonic()
        self.pinged: dict = {}
        self.last_flush = now
        self.last_trim = now
        self.peak = 0
        self.released = 0  # compressors freed since the last trim


def run(registry: Registry) -> None:
    """The loop; never lets one bad socket stop it."""
    state = _State()
    while True:
        interval = registry.settings.ping_interval
        gevent.sleep(max(0.05, min(1.0, interval / 4)) if interval > 0 else 1.0)
        now = time.monotonic()
        if interval > 0:
            try:
                check_keepalive(registry, state.pinged, now)
            except Exception:
                log.exception("keepalive check failed")
        if now - state.last_flush >= METRICS_FLUSH_INTERVAL:
            state.last_flush = now
            try:
                registry.flush_metrics()
            except Exception:
                log.exception("metrics flush failed")
        released = 0
        if compression.deflaters_in_use():
            released = compression.release_idle(now, registry.settings.deflate_idle)
            state.released += released
        _maybe_trim_memory(registry, state, now, released)


def check_keepalive(registry: Registry, pinged: dict, now: float) -> None:
    settings = registry.settings
    decision = keepalive.decide(
        now, list(registry.sockets), pinged, settings.ping_interval, settings.ping_timeout
    )
    for index, ws in enumerate(decision.to_ping):
        if index and index % SCAN_SLICE == 0:
            gevent.sleep(0)  # with 10,000s of sockets, never hold the loop for a whole scan
        ws.ping(KEEPALIVE_PAYLOAD)  # never blocks
    for ws in decision.to_drop:
        log.warning(
            "keepalive timeout: no pong from %s in %.1fs (conn %s)",
            ws.peer, settings.ping_timeout, ws.id,
        )
        drop_dead_peer(ws)


def drop_dead_peer(ws) -> None:
    """Close 1011 (best effort: a dead peer will not read it), then cut TCP at once."""
    with contextlib.suppress(Exception):
        ws.session.close(CloseCode.INTERNAL_ERROR, KEEPALIVE_REASON, CloseCause.KEEPALIVE)
        out = ws.session.data_to_send()
        if out and ws.outbox is not None:
            ws.outbox.write(out, 0)
    ws.abort(CloseCode.INTERNAL_ERROR, KEEPALIVE_REASON, CloseCause.KEEPALIVE)


def _maybe_trim_memory(registry: Registry, state: _State, now: float, released: int = 0) -> None:
    """Give memory back to the OS after many connections have gone.

    CPython and glibc keep freed memory for reuse, so after a wave of thousands of
    connections RSS stays near its peak with no object left behind. When the socket
    count has fallen well below its recent peak, a full collection plus malloc_trim(0)
    returns the free pages. Idle compressors freed (WSAPP_DEFLATE_IDLE) hold tens of KiB of
    zlib state each, outside Python's objects: once a wave of them has been freed (this
    pass freed none), malloc_trim(0) alone returns their pages."""
    count = len(registry.sockets)
    state.peak = max(state.peak, count)
    wave_over = state.released >= TRIM_MIN_GONE and released == 0
    since = now - state.last_trim
    if since < TRIM_INTERVAL and not (wave_over and since >= TRIM_MIN_GAP):
        return
    gone = state.peak - count
    sockets_gone = gone >= TRIM_MIN_GONE and gone >= state.peak // 4
    if not sockets_gone and state.released < TRIM_MIN_GONE:
        return
    state.last_trim = now
    state.peak = count
    state.released = 0
    if sockets_gone:
        gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
