"""Prometheus metrics and the `/metrics` route (issue 6).

Several gunicorn workers: prometheus-client's multiprocess mode needs
``PROMETHEUS_MULTIPROC_DIR`` set *before* it is imported. If the operator set it, we use
it. Otherwise, when this process is a gunicorn worker, we set it ourselves to a private
directory named after the gunicorn master (our parent), so every worker of one master
shares it and no gunicorn.conf.py change is needed. Gauges of workers that died are
dropped at scrape time (what gunicorn's ``child_exit`` hook would do); counters of dead
workers keep counting, as Prometheus counters must.

Recording is cheap (no I/O) and never raises into the caller. Hooks used by other modules:
`connection_opened/closed`, `record_traffic`, `record_close`, `handshake_rejected`,
`broker_error`, `event_published`, `observe_fanout`.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import tempfile
from typing import Any

log = logging.getLogger("wsapp.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"


def _private_dir(path: str) -> bool:
    """Create `path` 0700, refusing one that another user owns or that is a symlink."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


def _gunicorn_master_pid() -> int:
    """Our parent when we are a forked worker; ourselves when imported in the master (preload)."""
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            parent = f.read()
    except OSError:
        return ppid
    return ppid if b"gunicorn" in parent else os.getpid()


def _setup_multiprocess_dir() -> str | None:
    configured = os.environ.get(ENV) or os.environ.get(ENV.lower())
    if configured:
        os.makedirs(configured, exist_ok=True)
        return configured
    if "gunicorn.arbiter" not in sys.modules:
        return None  # one process (python -m wsapp serve): the default registry is exact
    path = os.path.join(
        tempfile.gettempdir(), f"wsapp-prometheus-{os.getuid()}-{_gunicorn_master_pid()}"
    )
    if not _private_dir(path):
        log.warning("cannot use %s for multiprocess metrics; /metrics shows one worker only", path)
        return None
    os.environ[ENV] = path
    return path


MULTIPROC_DIR = _setup_multiprocess_dir()

# prometheus_client decides between in-memory and mmap-file values at import time.
from flask import Blueprint, Response  # noqa: E402
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _mp  # noqa: E402

from wsapp.engine import registry as engine_registry  # noqa: E402
from wsapp.protocol.session import CloseCause  # noqa: E402

CONNECTIONS_OPEN = Gauge(
    "wsapp_connections_open",
    "Open WebSockets by endpoint.",
    ["endpoint"],
    multiprocess_mode="livesum",
)
CONNECTIONS = Counter("wsapp_connections", "Accepted WebSockets by endpoint.", ["endpoint"])
MESSAGES = Counter(
    "wsapp_messages",
    "WebSocket messages by endpoint and direction (in/out).",
    ["endpoint", "direction"],
)
BYTES = Counter(
    "wsapp_bytes",
    "WebSocket bytes on the wire by endpoint and direction (in/out).",
    ["endpoint", "direction"],
)
CLOSES = Counter(
    "wsapp_closes",
    "Closed WebSockets by endpoint and close code (1006: no close frame).",
    ["endpoint", "code"],
)
REJECTIONS = Counter(
    "wsapp_handshake_rejections",
    "Refused WebSocket handshakes and dropped HTTP requests by reason.",
    ["reason"],
)
SLOW_CONSUMERS = Counter(
    "wsapp_slow_consumer_drops",
    "Connections closed 1008 because they did not read fast enough.",
    ["endpoint"],
)
RATE_LIMITED = Counter(
    "wsapp_rate_limited",
    "Connections closed 1008 for exceeding WSAPP_RATE_LIMIT.",
    ["endpoint"],
)
KEEPALIVE_TIMEOUTS = Counter(
    "wsapp_keepalive_timeouts",
    "Connections dropped because no pong came within WSAPP_PING_TIMEOUT.",
)
BROKER_ERRORS = Counter(
    "wsapp_broker_errors",
    "Chat broker operations that failed, by operation.",
    ["operation"],
)
EVENTS = Counter(
    "wsapp_events",
    "Named events handed to the broker, by origin: server (emit from code), client (a chat "
    "client's event), api (POST /api/rooms/<room>/events).",
    ["origin"],
)
_EVENT_ORIGINS = ("server", "client", "api")
FANOUT_SECONDS = Histogram(
    "wsapp_fanout_seconds",
    "Time to encode one chat event and queue it to every local member of the room.",
    buckets=(
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0
    ),
)

_ENDPOINTS = ("echo", "chat")

#: Distinct route labels one process exports; sockets of further routes count as "other".
#: Routes come from the application's code, not from clients, but an app that generates
#: rules must not make the series grow without bound.
MAX_ROUTE_LABELS = 32
_route_labels: set[str] = set()


def endpoint_of(path: str | None, route: str | None = None) -> str:
    """Low-cardinality endpoint label: a `WebSockets` route's rule (e.g. "/rooms/<room>",
    never the path a client asked for), wsapp's own "echo" and "chat", else "other"."""
    if route is not None:
        if route in _route_labels:
            return route
        if len(_route_labels) < MAX_ROUTE_LABELS:
            _route_labels.add(route)
            return route
        return "other"
    if path == "/echo":
        return "echo"
    if path and path.startswith("/chat/"):
        return "chat"
    return "other"


# --- hooks ------------------------------------------------------------------------------

_children: dict[tuple, Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: every socket's open and close record about
    seven series, and `labels()` validates and looks up its arguments on every call. (The
    children stay valid across fork: prometheus-client switches their files by pid.)"""
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def connection_opened(endpoint: str) -> None:
    _child(CONNECTIONS, endpoint).inc()
    _child(CONNECTIONS_OPEN, endpoint).inc()


def connection_closed(endpoint: str) -> None:
    _child(CONNECTIONS_OPEN, endpoint).dec()


def record_traffic(
    endpoint: str, messages_in: int, messages_out: int, bytes_in: int, bytes_out: int
) -> None:
    if messages_in:
        _child(MESSAGES, endpoint, "in").inc(messages_in)
    if messages_out:
        _child(MESSAGES, endpoint, "out").inc(messages_out)
    if bytes_in:
        _child(BYTES, endpoint, "in").inc(bytes_in)
    if bytes_out:
        _child(BYTES, endpoint, "out").inc(bytes_out)


#: Close codes a peer or we may use, as labels; any other code counts under its class, so
#: a client choosing among the ~2,000 valid codes cannot create a series per code.
_KNOWN_CODES = frozenset((1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011,
                          1012, 1013, 1014))


def close_code_label(code: int | None) -> str:
    """Bounded label for a close code: the registered ones, else "3xxx"/"4xxx"/"other"."""
    if code is None:
        return "none"
    if code in _KNOWN_CODES:
        return str(code)
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return "other"


def record_close(endpoint: str, code: int | None, cause: CloseCause | None) -> None:
    """One closed WebSocket, by code label; slow consumers, rate limiting and dead peers
    by the cause recorded when it happened."""
    _child(CLOSES, endpoint, close_code_label(code)).inc()
    if cause is CloseCause.SLOW_CONSUMER:
        _child(SLOW_CONSUMERS, endpoint).inc()
    elif cause is CloseCause.RATE_LIMIT:
        _child(RATE_LIMITED, endpoint).inc()
    elif cause is CloseCause.KEEPALIVE:
        KEEPALIVE_TIMEOUTS.inc()


def handshake_rejected(reason: str) -> None:
    REJECTIONS.labels(reason).inc()


def broker_error(operation: str) -> None:
    BROKER_ERRORS.labels(operation).inc()


def event_published(origin: str) -> None:
    _child(EVENTS, origin).inc()


def observe_fanout(seconds: float) -> None:
    FANOUT_SECONDS.observe(seconds)


# --- exposition -------------------------------------------------------------------------

_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def _pid_alive(pid: int) -> bool:
    """True for a running process. A killed worker the master has not reaped yet is a
    zombie: `kill(pid, 0)` still succeeds on it, so /proc is asked for its state too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def _drop_dead_workers(path: str) -> None:
    dead = set()
    for name in os.listdir(path):
        match = _LIVE_FILE.match(name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        _mp.mark_process_dead(pid, path)


def render() -> bytes:
    """The exposition text: this process, or every worker sharing PROMETHEUS_MULTIPROC_DIR."""
    engine_registry.current().flush_metrics()
    path = os.environ.get(ENV)
    if path:
        _drop_dead_workers(path)
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_view():
    return Response(
        render(), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )


def init_labels() -> None:
    """Export zero series for the known endpoints so dashboards see them from the start."""
    for endpoint in _ENDPOINTS:
        CONNECTIONS_OPEN.labels(endpoint)
        CONNECTIONS.labels(endpoint)
        SLOW_CONSUMERS.labels(endpoint)
        for direction in ("in", "out"):
            MESSAGES.labels(endpoint, direction)
            BYTES.labels(endpoint, direction)
    for origin in _EVENT_ORIGINS:
        EVENTS.labels(origin)


class Sink:
    """The registry's metrics sink (`wsapp.engine.registry.MetricsSink`): this module."""

    endpoint_of = staticmethod(endpoint_of)
    connection_opened = staticmethod(connection_opened)
    connection_closed = staticmethod(connection_closed)
    record_traffic = staticmethod(record_traffic)
    record_close = staticmethod(record_close)
    handshake_rejected = staticmethod(handshake_rejected)
