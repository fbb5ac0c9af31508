"""uWSGI's own WebSocket API as an echo server: the baseline wsapp's uWSGI glue was measured
against (docs/architecture.md, "uWSGI").

    uwsgi --http-socket 127.0.0.1:8765 --gevent 1000 --module bench.uwsgi_native

`uwsgi.websocket_handshake()` writes the 101; `websocket_recv()` returns each message's
payload (uWSGI answers pings and waits for the next message itself) without saying whether
it was text or binary, so every echo goes back as a text frame: the echo loop of uWSGI's
documentation and of flask-uwsgi-websocket. Any other request: 200 "ok" (readiness).
"""

from __future__ import annotations

import uwsgi


def application(environ, start_response):
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]
    uwsgi.websocket_handshake(
        environ.get("HTTP_SEC_WEBSOCKET_KEY", ""), environ.get("HTTP_ORIGIN", "")
    )
    while True:
        try:
            message = uwsgi.websocket_recv()
        except OSError:  # the peer closed, or uWSGI refused a frame: the request ends
            return []
        uwsgi.websocket_send(message)
