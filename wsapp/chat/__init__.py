"""Chat rooms (issue 3): views, events, the local hub and the broker interface.

``init_app(app, settings)`` creates the broker (memory, or Redis when WSAPP_REDIS_URL is
set) and the hub, stores them on the app state, and registers the chat WebSocket route
and the HTTP API (``wsapp.api``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .broker import Broker, create_broker
from .hub import Hub

if TYPE_CHECKING:
    from flask import Flask

    from wsapp.settings import Settings

__all__ = ["Broker", "Hub", "init_app"]


def init_app(app: Flask, settings: Settings, broker: Broker | None = None) -> Hub:
    from wsapp import api
    from wsapp.app_state import get_state

    from . import views

    broker = broker or create_broker(settings)
    broker.start()
    from wsapp.engine.fanout import send_to_all
    from wsapp.protocol import compression

    hub = Hub(
        broker,
        history=settings.history,
        queue_limit=settings.send_queue_bytes,
        send_to_all=send_to_all,
        max_text_bytes=settings.max_chat_bytes,
        deflate=compression.broadcast_deflate(settings.deflate_settings),
    )
    state = get_state(app)
    state.broker = broker
    state.hub = hub
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    return hub
