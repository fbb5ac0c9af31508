"""`create_app`: wsapp's own application (echo, chat, pages, HTTP API, health, metrics)."""

from __future__ import annotations

import logging

from flask import Flask

from wsapp.app_state import init_state
from wsapp.assets import STATIC_DIR, TEMPLATES_DIR
from wsapp.engine import registry
from wsapp.extension import install_close_handler
from wsapp.logconfig import configure_logging
from wsapp.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """wsapp's own app (echo, chat, pages, API, metrics); nothing is configured at import
    time. `settings` default to the WSAPP_* variables."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    app = Flask("wsapp", template_folder=TEMPLATES_DIR, static_folder=STATIC_DIR)
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
    install_close_handler(app)  # ConnectionClosed leaving a view: a normal end
    return app
