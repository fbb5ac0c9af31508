"""wsapp.client: Python clients for wsapp chat rooms and plain WebSocket endpoints.

:class:`Client` blocks (plain threads, or gevent after monkey patching);
:class:`AsyncClient` is the same for asyncio. Both are built on `websockets`, reconnect
with exponential backoff and jitter, resume chat rooms with ``since=`` and deliver every
message at least once and, with the server deduplicating by client id and ref, exactly
once. Guide: docs/client.md.
"""

from __future__ import annotations

from .aio import AsyncClient
from .backoff import Backoff
from .errors import (
    AckTimeout,
    ClientClosed,
    ClientError,
    ConnectFailed,
    GaveUp,
    InvalidURL,
    NotSent,
    OutboxFull,
    Refused,
    Rejected,
    SendError,
    TLSError,
    Unauthorized,
    Unconfirmed,
)
from .sync import Client
from .urls import normalize_url

__all__ = [
    "AckTimeout",
    "AsyncClient",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "GaveUp",
    "InvalidURL",
    "NotSent",
    "OutboxFull",
    "Refused",
    "Rejected",
    "SendError",
    "TLSError",
    "Unauthorized",
    "Unconfirmed",
    "normalize_url",
]
