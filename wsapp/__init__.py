"""wsapp: WebSocket echo and chat on Flask + gevent + gevent-websocket, hardened.

Public API: `create_app` (wsapp's own echo and chat app), `WebSockets` (WebSocket routes for
any Flask app, docs/routes.md), `ConnectionClosed` (sending on a closed connection), `serve`
(the embedded server), `Settings` (the WSAPP_* settings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wsapp.engine.errors import ConnectionClosed
from wsapp.extension import WebSockets
from wsapp.factory import create_app
from wsapp.logconfig import configure_logging
from wsapp.settings import Settings

__all__ = [
    "BrokerUnavailable",
    "ConnectionClosed",
    "EventError",
    "Member",
    "OutcomeUnknown",
    "Publisher",
    "Rooms",
    "Settings",
    "WebSockets",
    "__version__",
    "configure_logging",
    "create_app",
    "serve",
]

#: Imported on first use (PEP 562): Publisher needs redis (the [redis] extra), and Rooms
#: brings in the chat hub and metrics, which `import wsapp` alone should not.
_LAZY = {
    "Rooms": ("wsapp.rooms", "Rooms"),
    "Publisher": ("wsapp.publisher", "Publisher"),
    "EventError": ("wsapp.chat.events", "EventError"),
    "Member": ("wsapp.chat.broker.base", "Member"),
    "BrokerUnavailable": ("wsapp.chat.broker.base", "BrokerUnavailable"),
    "OutcomeUnknown": ("wsapp.chat.broker.base", "OutcomeUnknown"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wsapp' has no attribute {name!r}")

#: The package version (pyproject.toml reads it from here).
__version__ = "0.1.0"


def serve(
    app: Callable[..., Any] | None = None,
    host: str | None = None,
    port: int | None = None,
    *,
    settings: Settings | None = None,
) -> None:
    """Serve a WSGI `app` (default: wsapp's own) with wsapp's embedded gevent server.

    Blocks until SIGTERM or SIGINT, which close every WebSocket with 1001 first. Host and
    port default to WSAPP_HOST and WSAPP_PORT; OSError if the address cannot be bound.
    Call `gevent.monkey.patch_all()` before any other import. See `wsapp.server` for
    `make_server` and `install_shutdown_handlers` (docs/routes.md)."""
    from wsapp.server import serve as serve_forever

    serve_forever(app, host, port, settings=settings)
