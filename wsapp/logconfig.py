"""wsapp's log format and the LogRecord fields it skips (process-wide)."""

from __future__ import annotations

import logging

from wsapp.settings import Settings


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
    _lean_log_records()
    logger = logging.getLogger("wsapp")
    logger.setLevel(settings.log_level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
        )
        logger.addHandler(handler)
        logger.propagate = False
