"""The access-log line of a request served under uWSGI (wsapp.uwsgi_glue).

uWSGI's own request log is off in deploy/uwsgi.ini: it prints the raw request target,
tokens and control characters included. This line is escaped and redacted as the other
serving modes' are (wsapp.logsafe): client, request line, status, bytes, seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from wsapp import logsafe

access_log = logging.getLogger("wsapp.access")


class Logged:
    """The response body, passed through; one access-log line when uWSGI closes it (the
    status comes from `state`, filled by the glue's start_response)."""

    __slots__ = ("_body", "_environ", "_state", "_started", "_size")

    def __init__(self, body: Iterable[bytes], environ: dict, state: list, started: float) -> None:
        self._body = body
        self._environ = environ
        self._state = state
        self._started = started
        self._size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            _log_access(self._environ, self._state, self._size, self._started)


def _log_access(environ: dict, state: list, size: int, started: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    target = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
    line = (
        f"{environ.get('REQUEST_METHOD', '-')} {target} {environ.get('SERVER_PROTOCOL', '-')}"
    )
    access_log.info(
        '%s "%s" %s %s %.6f',
        environ.get("REMOTE_ADDR") or "-",
        logsafe.escape(logsafe.redact_target(line), 1000),
        state[0] if state else "000",
        size or "-",
        time.monotonic() - started,
    )
