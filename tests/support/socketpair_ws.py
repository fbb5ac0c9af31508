"""An accepted server-side WebSocket on one end of a real socket pair (in-process tests).

No HTTP and no server: the pywsgi handler is replaced by the few attributes WebSocket
reads from it; the socket is a real gevent socket, the other end a plain client socket.
"""

from __future__ import annotations

from gevent import socket

from wsapp.engine.websocket import WebSocket
from wsapp.settings import Settings


class FakeHandler:
    """Just what WebSocket needs from the pywsgi handler; the socket is real."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.rfile = sock.makefile("rb", -1)
        self.connection_id = "test-1"
        self.peer = "127.0.0.1:1"
        self.peer_ip = "127.0.0.1"

    def send_upgrade(self, ws: WebSocket) -> None:
        pass


def make_pair(**settings) -> tuple[WebSocket, socket.socket]:
    """(accepted server WebSocket, the client's end of the pair)."""
    server_sock, client_sock = socket.socketpair()
    ws = WebSocket({"PATH_INFO": "/t"}, FakeHandler(server_sock), Settings(**settings))
    ws.accept()
    return ws, client_sock
