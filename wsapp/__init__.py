"""wsapp: WebSocket echo and chat on Flask + gevent + gevent-websocket, hardened."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask

from wsapp.app_state import init_state
from wsapp.assets import STATIC_DIR, TEMPLATES_DIR
from wsapp.engine import registry
from wsapp.engine.errors import ConnectionClosed
from wsapp.settings import Settings

__all__ = [
    "BrokerUnavailable",
    "ConnectionClosed",
    "EventError",
    "Member",
    "OutcomeUnknown",
    "Publisher",
    "Rooms",
    "Settings",
    "__version__",
    "create_app",
    "serve",
]

#: Imported on first use (PEP 562): Publisher needs redis (the [redis] extra), and Rooms
#: brings in the chat hub and metrics, which `import wsapp` alone should not.
_LAZY = {
    "Rooms": ("wsapp.rooms", "Rooms"),
    "Publisher": ("wsapp.publisher", "Publisher"),
    "EventError": ("wsapp.chat.events", "EventError"),
    "Member": ("wsapp.chat.broker.base", "Member"),
    "BrokerUnavailable": ("wsapp.chat.broker.base", "BrokerUnavailable"),
    "OutcomeUnknown": ("wsapp.chat.broker.base", "OutcomeUnknown"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wsapp' has no attribute {name!r}")

#: The package version (pyproject.toml reads it from here).
__version__ = "0.1.0"


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
    app = Flask(__name__, template_folder=TEMPLATES_DIR, static_folder=STATIC_DIR)
    app.config["MAX_CONTENT_LENGTH"] = max(64 * 1024, settings.max_chat_bytes * 8)
    init_state(app, settings)
    rt = registry.configure(settings)
    from wsapp.hosting import framing

    logging.getLogger("wsapp").info("framing: %s", framing(settings))

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
    from wsapp import route_checks  # `flask run` and a missing websocket=True: a log line

    route_checks.install(app)
    return app


def serve(
    app: Callable[..., Any] | None = None,
    host: str | None = None,
    port: int | None = None,
    *,
    settings: Settings | None = None,
) -> None:
    """Serve a WSGI `app` (default: wsapp's own) with wsapp's embedded gevent server.

    Blocks until SIGTERM or SIGINT, which close every WebSocket with 1001 first. Host and
    port default to WSAPP_HOST and WSAPP_PORT; OSError if the address cannot be bound.
    Call `gevent.monkey.patch_all()` before any other import. See `wsapp.server` for
    `make_server` and `install_shutdown_handlers` (docs/routes.md)."""
    from wsapp.server import serve as serve_forever

    serve_forever(app, host, port, settings=settings)
