"""Two mistakes a Flask app with WebSocket routes makes silently, turned into log lines.

1. Serving it with a server that cannot upgrade (`flask run`, a plain WSGI server): the
   view finds no `environ["wsgi.websocket"]` and Flask answers 500 with a `KeyError`. Here
   the request is answered `501 Not Implemented` with a text naming the fix, and the log
   says it once per application.
2. A route that reads `wsgi.websocket` but was declared without `websocket=True`: Werkzeug
   routes the upgrade request nowhere (`WebsocketMismatch`), Flask answers its generic 400
   and logs nothing. Here one warning per path says to add `websocket=True`; the 400 stays.

`install(app)` adds one `before_request` function (it runs after URL matching, so it sees
Werkzeug's routing result). wsapp installs it on every Flask app it serves
(`python -m wsapp serve`, its gunicorn worker) and on its own app; call it yourself for
an app that `flask run` may serve.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.routing import WebsocketMismatch

from wsapp.protocol.handshake import wants_websocket

log = logging.getLogger("wsapp.routes")

#: Key in `app.extensions` marking an app whose checks are installed (install is idempotent).
EXTENSION_KEY = "wsapp.route_checks"
#: Paths remembered for "warn once per path" (a bound: paths come from clients).
MAX_WARNED_PATHS = 100

NO_UPGRADE_FIX = (
    "this server cannot accept WebSocket connections (no environ['wsgi.websocket']): "
    "serve the app with `python -m wsapp serve module:app`, or with gunicorn and wsapp's "
    "worker (`gunicorn -k wsapp.protocol.worker.WsappWorker module:app`, or "
    "`gunicorn -c gunicorn.conf.py module:app`), not with `flask run`"
)


class _Checks:
    def __init__(self) -> None:
        self.warned_no_upgrade = False
        self.warned_paths: set[str] = set()

    def before_request(self) -> Response | None:
        environ = request.environ
        if not wants_websocket(environ):
            return None
        mismatch = isinstance(request.routing_exception, WebsocketMismatch)
        if environ.get("wsgi.websocket") is None:
            if request.routing_exception is not None and not mismatch:
                return None  # 404, 405...: Flask's own answer is right
            if not self.warned_no_upgrade:
                self.warned_no_upgrade = True
                log.error("WebSocket request to %r: %s", request.path, NO_UPGRADE_FIX)
            return Response(NO_UPGRADE_FIX + "\n", status=501, mimetype="text/plain")
        if mismatch:
            self._warn_mismatch(request.path)
        return None

    def _warn_mismatch(self, path: str) -> None:
        if path in self.warned_paths or len(self.warned_paths) >= MAX_WARNED_PATHS:
            return
        self.warned_paths.add(path)
        log.warning(
            "WebSocket request to %r matches a route declared without websocket=True: Werkzeug "
            "answers 400 and the view never runs. Declare it with "
            "@app.route(..., websocket=True) to receive environ['wsgi.websocket']",
            path,
        )


def install(app: Flask) -> None:
    """Add the checks to `app` (once; later calls do nothing). They run before the app's own
    `before_request` functions, so an auth redirect cannot hide the mistake."""
    if EXTENSION_KEY in app.extensions:
        return
    checks = _Checks()
    app.extensions[EXTENSION_KEY] = checks
    app.before_request_funcs.setdefault(None, []).insert(0, checks.before_request)
