"""The app nginx fronts in this example: an echo, a "who am I" and a ticker, as WebSockets routes.

    cd examples/behind_nginx
    WSAPP_TRUSTED_PROXIES=1 gunicorn -c ../../gunicorn.conf.py -b 127.0.0.1:8000 app:app
    mkdir -p logs tmp && nginx -p "$PWD/" -e logs/error.log -c nginx.conf -g 'daemon off;'
    python -m wsapp client ws://127.0.0.1:8080/echo              # through nginx

With WSAPP_TRUSTED_PROXIES=1 (one proxy: nginx) wsapp takes the client's address from
nginx's X-Forwarded-For for its per-IP limit and logs, and the scheme and host from
X-Forwarded-Proto/-Host for the same-origin check; `/whoami` sends back the address it saw.
"""

from __future__ import annotations

import time

from flask import Flask, request

from wsapp import WebSockets

app = Flask(__name__)
sockets = WebSockets(app)


@app.get("/")
def index() -> str:
    return "WebSockets at /echo, /whoami and /ticker\n"


@sockets.route("/echo")
def echo(ws) -> None:
    for message in ws:
        ws.send(message)


@sockets.route("/whoami")
def whoami(ws) -> None:
    # The client's address as wsapp's checks and logs see it (through trusted proxies).
    ws.send(request.environ.get("wsapp.client_ip", request.remote_addr or ""))


@sockets.route("/ticker")
def ticker(ws) -> None:
    """One message a second until the client leaves (or the server shuts down: 1001)."""
    n = 0
    while True:
        ws.send(f"tick {n}")
        n += 1
        time.sleep(1)
