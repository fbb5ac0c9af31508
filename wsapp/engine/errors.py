"""Exceptions of the connection engine (public: re-exported by `wsapp`)."""

from __future__ import annotations

from geventwebsocket.exceptions import WebSocketError


class ConnectionClosed(WebSocketError):
    """Sending on a connection that is closing or closed.

    A `WebSocketError` (gevent-websocket's), so code written for the classic loop that
    catches that keeps working. `code` and `reason` say how the connection ended
    (1006 when TCP went away without a close frame; None if it is still closing)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason
