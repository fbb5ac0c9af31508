"""wsapp: WebSocket echo and chat on Flask + gevent + gevent-websocket, hardened."""

from __future__ import annotations

import logging

from flask import Flask

from wsapp.app_state import init_state
from wsapp.engine import registry
from wsapp.engine.errors import ConnectionClosed
from wsapp.settings import Settings

__all__ = ["ConnectionClosed", "Settings", "create_app"]


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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory: nothing is configured at import time."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config["MAX_CONTENT_LENGTH"] = max(64 * 1024, settings.max_chat_bytes * 8)
    init_state(app, settings)
    rt = registry.configure(settings)
    from wsapp.speedups import select as speedups

    framing = speedups.configure(settings.speedups, settings.io_uring)
    logging.getLogger("wsapp").info("framing: %s", framing)

    from wsapp import echo, web

    app.register_blueprint(web.bp)
    app.register_blueprint(echo.bp)
    from wsapp import chat, metrics, pages  # /metrics: docs/security.md

    metrics.init_labels()
    rt.sink = metrics.Sink()
    app.register_blueprint(metrics.bp)
    chat.init_app(app, settings)
    app.register_blueprint(pages.bp)

    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    return app
