"""The stock, seed-style baseline that wsapp is measured against.

Exactly what a Flask 3 + gevent-websocket tutorial produces: the view reads
`request.environ["wsgi.websocket"]` in a receive/send loop, the chat keeps a dict of
room -> set of sockets and loops `ws.send` over them for every message, and the app runs
under gevent's WSGIServer with the stock `geventwebsocket.handler.WebSocketHandler`.
Nothing here is tuned: it is the "before" picture.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from flask import Flask, request  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

app = Flask(__name__)
rooms: dict[str, set] = {}
ids = itertools.count(1)


@app.route("/echo", websocket=True)
def echo() -> str:
    """Send every message straight back."""
    ws = request.environ["wsgi.websocket"]
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)
    return ""


@app.route("/chat/<room>", websocket=True)
def chat(room: str) -> str:
    """Broadcast each text message to every socket in the room, sender included."""
    ws = request.environ["wsgi.websocket"]
    name = request.args.get("name", "anonymous")
    members = rooms.setdefault(room, set())
    members.add(ws)
    try:
        while True:
            text = ws.receive()
            if text is None:
                break
            event = json.dumps(
                {"type": "message", "id": next(ids), "room": room, "name": name,
                 "text": text, "ts": time.time()}
            )
            for peer in list(members):
                try:
                    peer.send(event)
                except Exception:
                    members.discard(peer)
    finally:
        members.discard(ws)
    return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="stock Flask + gevent-websocket baseline")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = WSGIServer((args.host, args.port), app, handler_class=WebSocketHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
