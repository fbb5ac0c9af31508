"""What wsapp does to any WSGI application it serves, in both serving modes.

`load_app("module:app")` imports an application the way gunicorn does (`module:name`, or a
factory call `module:create_app()` with literal arguments); `prepare_app(app)` applies the
process-wide settings (logging, the connection runtime's limits, the C speedups switch) and,
for a Flask app, the route checks of `wsapp.route_checks`. wsapp's own `create_app` does the
same for its app; calling `prepare_app` on it again changes nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from wsapp.app_state import EXTENSION_KEY
from wsapp.settings import Settings

log = logging.getLogger("wsapp")


class AppLoadError(Exception):
    """The application named on the command line cannot be found (the message says why)."""


def load_app(target: str) -> Any:
    """Import the WSGI application `target`: `module`, `module:name` or `module:factory(...)`.

    `module` alone means `module:app` (Flask's convention). The current directory is on
    the import path, as for `flask` and `gunicorn`. Errors raised inside the module itself
    propagate with their traceback; a missing module or attribute is an `AppLoadError`.
    """
    from gunicorn.errors import AppImportError
    from gunicorn.util import import_app

    module = target.split(":", 1)[0]
    if ":" not in target:
        target = f"{target}:app"
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return import_app(target)
    except AppImportError as exc:
        raise AppLoadError(f"{target}: {exc}") from None
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            raise AppLoadError(f"{target}: no module named {exc.name!r} (from {cwd})") from None
        raise
    except ImportError as exc:  # gunicorn's "did you mean 'app:app'?" for `app.py`
        if "did you mean" in str(exc):
            raise AppLoadError(f"{target}: {exc}") from None
        raise


def framing(settings: Settings) -> str:
    """Apply WSAPP_SPEEDUPS and WSAPP_IO_URING; the start-up log's description of the
    compiled loops in use."""
    from wsapp.speedups import select as speedups

    return speedups.configure(settings.speedups, settings.io_uring)


def prepare_process(settings: Settings) -> None:
    """Logging and the connection runtime from `settings`, before any application is
    imported (an app's module may open sockets or log at import)."""
    from wsapp.engine import registry
    from wsapp.logconfig import configure_logging

    configure_logging(settings)
    registry.configure(settings)


def prepare_app(app: Any, settings: Settings | None = None) -> Settings:
    """Apply wsapp's process settings and route checks to `app`; returns the settings used.

    `settings` defaults to those of wsapp's own app (`create_app`), else to the process
    runtime's (WSAPP_* variables). A WSGI app that is not Flask is served as it is.
    """
    from flask import Flask

    from wsapp import route_checks
    from wsapp.engine import registry
    from wsapp.extension import install_close_handler

    extensions = getattr(app, "extensions", None)
    own_state = extensions.get(EXTENSION_KEY) if isinstance(extensions, dict) else None
    if settings is None:
        settings = own_state.settings if own_state is not None else registry.current().settings
    prepare_process(settings)
    if own_state is None:  # create_app already chose and logged the framing of its app
        log.info("framing: %s", framing(settings))
    if isinstance(app, Flask):
        route_checks.install(app)
        install_close_handler(app)  # ConnectionClosed leaving a view: a normal end
        _log_through_wsapp(app)
    return settings


def _log_through_wsapp(app: Any) -> None:
    """Send the app's log (e.g. Flask's `Exception on /path` with its traceback) through
    wsapp's handler, if Flask's default handler is still the one in place.

    That default handler writes `[time] LEVEL in module: ...` into `wsgi.errors`, which the
    embedded server logs with its own time in front: two timestamps on one line, and
    `(unknown file)` for the module, since wsapp turns the caller lookup off. An app that
    configured its own logging keeps it."""
    from flask.logging import default_handler

    if default_handler in app.logger.handlers:
        app.logger.removeHandler(default_handler)
        for handler in logging.getLogger("wsapp").handlers:
            app.logger.addHandler(handler)
