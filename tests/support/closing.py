"""Waiting for the server to close a `websockets` sync client connection."""

from __future__ import annotations

import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection


def close_code_of(ws: ClientConnection, timeout: float) -> int | None:
    """Read until the server closes; its close code, None if it sent none (1006)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    raise AssertionError("connection not closed")
