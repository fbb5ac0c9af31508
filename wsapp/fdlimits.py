"""How many WebSockets a process can hold: the file-descriptor limit minus headroom.

Every WebSocket holds one descriptor, so `WSAPP_MAX_CONNECTIONS` must stay below
RLIMIT_NOFILE, or descriptors run out before the 503 does: then accept(2) fails, new
clients wait in the backlog, and /healthz cannot be answered either. Its default (0) is
derived here instead, at start:

1. the soft limit is raised to the hard limit when they differ (any process may);
2. from that limit, `headroom` descriptors are kept for everything that is not a
   WebSocket:

   - FIXED_FDS (32) for the process itself: stdio, the listening socket(s), log files,
     the event loop's epoll, signal and wake-up descriptors, io_uring, gunicorn's
     heartbeat file and its per-worker Prometheus files (measured: 8 in the embedded
     server, about 21 in a gunicorn worker);
   - REDIS_FDS (66) with WSAPP_REDIS_URL: the broker's pool of at most 64 connections,
     its pub/sub connection and one being reconnected;
   - a share of the limit (1/16, at least 32) for connections that are not WebSockets yet
     or never will be: HTTP requests (/healthz, /readyz, /metrics, pages, the API, idle
     keep-alive), handshakes in progress, and clients being refused with 503.

With `ulimit -n 256` that is 192 WebSockets (126 with Redis); at 20,000, 18,718; at the
65,536 of deploy/wsapp.service, 61,408. If something else still exhausts descriptors (a
flood of idle TCP connections), `wsapp.accept_guard` answers new clients 503 instead of
leaving them in the backlog.
"""

from __future__ import annotations

import resource

FIXED_FDS = 32
REDIS_FDS = 66
TRANSIENT_SHARE = 16
MIN_TRANSIENT_FDS = 32

#: Stands for an unlimited RLIMIT_NOFILE (Linux's default fs.nr_open).
_NO_LIMIT = 1 << 20
_raised: tuple[int, int] | None = None


def raise_nofile() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (once; children inherit
    it). Returns (soft before, soft now)."""
    global _raised
    if _raised is None:
        infinity = resource.RLIM_INFINITY
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        now = soft
        if soft != infinity and (hard == infinity or soft < hard):
            target = hard if hard != infinity else max(soft, _NO_LIMIT)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                now = target
            except (ValueError, OSError):  # e.g. above fs.nr_open: keep what we have
                pass
        _raised = (soft, now if now != infinity else _NO_LIMIT)
    return _raised


def nofile_limit() -> int:
    """The soft RLIMIT_NOFILE after `raise_nofile`."""
    return raise_nofile()[1]


def headroom(limit: int, redis: bool) -> int:
    """Descriptors kept for what is not a WebSocket (see the module docstring)."""
    transient = max(MIN_TRANSIENT_FDS, limit // TRANSIENT_SHARE)
    return FIXED_FDS + (REDIS_FDS if redis else 0) + transient


def default_max_connections(redis: bool) -> int:
    """WSAPP_MAX_CONNECTIONS when it is 0 (the default): the limit minus headroom, at least 1."""
    limit = nofile_limit()
    return max(1, limit - headroom(limit, redis))


def capacity_warning(max_connections: int, redis: bool) -> str | None:
    """A sentence for the start-up log when an explicit WSAPP_MAX_CONNECTIONS is more than
    the file limit can hold, else None."""
    limit = nofile_limit()
    fits = default_max_connections(redis)
    if max_connections <= fits:
        return None
    return (
        f"WSAPP_MAX_CONNECTIONS={max_connections} is more than the file limit allows "
        f"(RLIMIT_NOFILE {limit}, {headroom(limit, redis)} kept for other descriptors: {fits}); "
        "descriptors may run out before the 503 (raise `ulimit -n`, LimitNOFILE=, or leave "
        "WSAPP_MAX_CONNECTIONS unset)"
    )


def describe(max_connections: int, redis: bool) -> str:
    """One start-up log line: the connection limit and where it comes from."""
    before, limit = raise_nofile()
    raised = f", raised from {before}" if before != limit else ""
    return (
        f"connections: at most {max_connections} WebSockets per process "
        f"(RLIMIT_NOFILE {limit}{raised}; {headroom(limit, redis)} descriptors kept for the rest)"
    )
