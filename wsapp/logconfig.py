"""wsapp's log format and level, set once per process (`configure_logging`)."""

from __future__ import annotations

import logging

from wsapp.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def _lean_log_records() -> None:
    """Skip the LogRecord fields our format never shows (logging HOWTO, "Optimization").

    Every socket logs a line at open and at close. Under gevent each greenlet is its own
    "thread", so `threadName` made logging create a `_DummyThread` for every connection's
    greenlet, and the caller lookup walked the stack for a file and line nobody prints:
    47 -> 23 us per line from a fresh greenlet (`python -m bench.open_costs`). The switches
    are process-wide: an application embedding `create_app` whose own log format shows
    `%(threadName)s` or `%(filename)s` gets None or "(unknown file)" there."""
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def configure_logging(settings: Settings) -> None:
    """The "wsapp" logger at WSAPP_LOG_LEVEL, with one stream handler in wsapp's format
    (unless one is there already: an embedding application's handler is kept)."""
    _lean_log_records()
    logger = logging.getLogger("wsapp")
    logger.setLevel(settings.log_level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.propagate = False
