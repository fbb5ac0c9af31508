"""Per-application state shared by the views: settings, hub and broker.

Kept on `app.extensions["wsapp"]` (Flask's place for extension state) so two apps in one
process never share it by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from wsapp.settings import Settings

EXTENSION_KEY = "wsapp"


@dataclass
class AppState:
    settings: Settings
    hub: Any = None
    broker: Any = None
    #: set once a broker made on first use (wsapp.rooms, apps not made by create_app) started
    hub_started: Any = None


def init_state(app: Flask, settings: Settings) -> AppState:
    state = AppState(settings=settings)
    app.extensions[EXTENSION_KEY] = state
    return state


def get_state(app: Flask | None = None) -> AppState:
    return (app or current_app).extensions[EXTENSION_KEY]
