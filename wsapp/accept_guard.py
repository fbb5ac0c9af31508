"""Accepting connections when the process is out of file descriptors.

When accept(2) fails with EMFILE (or ENFILE, ENOBUFS, ENOMEM), gevent's server logs a
full traceback, pauses accepting for a moment and tries again, doubling the pause up to
a second: the connection stays in the listen backlog and its client hangs, /healthz
included, and the log gets a traceback every second for as long as it lasts.

`AcceptGuard` (a mixin for gevent's `StreamServer` family) keeps one spare descriptor
(``/dev/null``) for that moment, as libuv does: on EMFILE it closes the spare, accepts
the waiting connection with it, answers ``503`` with ``Retry-After``, closes it and takes
the spare back, for every connection waiting; then the listening socket is no longer
readable, so nothing spins. One warning line is logged per episode (and a count every
LOG_INTERVAL seconds while it lasts), no traceback. If not even that is possible the
server stops accepting for PAUSE seconds.

`WSAPP_MAX_CONNECTIONS` (wsapp.fdlimits) keeps WebSockets alone from getting here; this
is for whatever else uses up descriptors (many idle TCP connections, a leak).
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import time

log = logging.getLogger("wsapp.server")

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Connections answered 503 per wake-up of the listening socket, at most (then the loop
#: runs others; the rest are answered on the next wake-up).
REFUSE_BATCH = 64
PAUSE = 0.1
LOG_INTERVAL = 10.0

RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 48\r\n"
    b"Retry-After: 5\r\nConnection: close\r\n\r\n"
    b"server out of file descriptors, try again later\n"
)


def _close_now(fd: int) -> None:
    """close(2) at once. gevent's patched `os.close` defers closing a descriptor that is not
    a regular file to the event loop, which would leave the spare taken when we need it."""
    from gevent import monkey

    monkey.get_original("os", "close")(fd)


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _answer_and_close(fd: int) -> None:
    """Best effort, never blocking: the 503, then FIN, then drop what the client sent (so
    the close is a FIN, not a reset that could destroy the answer before it is read)."""
    conn = _socket.socket(fileno=fd)  # the C socket: gevent's would defer the close too
    try:
        conn.send(RESPONSE, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(65536, socket.MSG_DONTWAIT)
    except OSError:
        pass
    finally:
        conn.close()


class AcceptGuard:
    """Mix in before a gevent `StreamServer` subclass (pywsgi's `WSGIServer`, gunicorn's)."""

    _spare_fd: int | None = None
    _episode_since: float | None = None
    _episode_refused = 0
    _last_log = 0.0

    def init_socket(self) -> None:
        super().init_socket()  # type: ignore[misc]
        if self._spare_fd is None:
            self._spare_fd = _open_spare()

    def start_accepting(self) -> None:
        if self._spare_fd is None:  # gunicorn hands its server a ready socket
            self._spare_fd = _open_spare()
        super().start_accepting()  # type: ignore[misc]

    def do_read(self):
        try:
            result = super().do_read()  # type: ignore[misc]
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS:
                raise
            self._out_of_descriptors(exc.errno)
            return None
        if result is not None and self._episode_since is not None:
            self._log_episode(ended=True)
        return result

    def _out_of_descriptors(self, code: int) -> None:
        now = time.monotonic()
        if self._episode_since is None:
            self._episode_since = self._last_log = now
            self._episode_refused = 0
            log.warning(
                "out of file descriptors (%s, RLIMIT_NOFILE %d): new connections are answered 503 "
                "until some close",
                errno.errorcode.get(code, str(code)),
                _nofile(),
            )
        listener = self.socket  # type: ignore[attr-defined]
        pause = False
        for _ in range(REFUSE_BATCH):
            if self._spare_fd is None:
                pause = True
                break
            _close_now(self._spare_fd)
            self._spare_fd = None
            try:
                fd, _addr = listener._accept()
            except BlockingIOError:  # nobody else waiting
                fd = None
            except OSError:  # not even one descriptor (ENFILE, ENOMEM...): it stays readable
                fd = None
                pause = True
            if fd is not None:
                _answer_and_close(fd)
                self._episode_refused += 1
            self._spare_fd = _open_spare()
            if fd is None:
                break
        if now - self._last_log >= LOG_INTERVAL:
            self._last_log = now
            self._log_episode(ended=False)
        if pause:  # wait before trying again rather than spin on a readable socket
            self.stop_accepting()  # type: ignore[attr-defined]
            timer = self.loop.timer(PAUSE)  # type: ignore[attr-defined]
            timer.start(self._resume_accepting, timer)

    def _resume_accepting(self, timer) -> None:
        timer.close()
        if self._spare_fd is None:
            self._spare_fd = _open_spare()
        self._start_accepting_if_started()  # type: ignore[attr-defined]

    def _log_episode(self, ended: bool) -> None:
        elapsed = time.monotonic() - (self._episode_since or time.monotonic())
        if ended:
            self._episode_since = None
            log.warning(
                "file descriptors available again after %.1fs: %d connection(s) were answered 503",
                elapsed,
                self._episode_refused,
            )
        else:
            log.warning(
                "still out of file descriptors after %.0fs: %d connection(s) answered 503 so far",
                elapsed,
                self._episode_refused,
            )


def _nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
