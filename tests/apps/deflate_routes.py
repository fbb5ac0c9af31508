"""A user's app whose routes choose their own permessage-deflate settings (tests/engine).

`ws.deflate_settings` is read when the socket is accepted: a view sets it before the first
`accept()`, `receive()` or `send()`.
"""

from __future__ import annotations

from flask import request

from wsapp import create_app

app = create_app()


def _echo(ws) -> str:
    while (message := ws.receive()) is not None:
        ws.send(message)
    return ""


@app.route("/default-echo", websocket=True)
def default_echo():
    """The process's WSAPP_DEFLATE_* (context takeover for the server's messages)."""
    return _echo(request.environ["wsgi.websocket"])


@app.route("/plain-echo", websocket=True)
def plain_echo():
    """This route declines permessage-deflate."""
    ws = request.environ["wsgi.websocket"]
    ws.deflate_settings = None
    return _echo(ws)


@app.route("/tuned-echo", websocket=True)
def tuned_echo():
    """No server context, a 10-bit window, everything compressed, at level 9."""
    ws = request.environ["wsgi.websocket"]
    ws.deflate_settings = ws.deflate_settings.for_rooms().with_changes(
        server_max_window_bits=10, threshold=0, level=9
    )
    return _echo(ws)
