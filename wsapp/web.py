"""Operational HTTP endpoints: liveness and readiness."""

from __future__ import annotations

import os
import time

from flask import Blueprint, jsonify

from wsapp.app_state import get_state
from wsapp.engine import registry

bp = Blueprint("web", __name__)

_STARTED = time.time()


@bp.get("/healthz")
def healthz():
    """Liveness: the process serves HTTP. Stays 200 even while the broker is away."""
    return jsonify(
        status="ok",
        pid=os.getpid(),
        uptime_s=round(time.time() - _STARTED, 3),
        connections=registry.current().count(),
    )


@bp.get("/readyz")
def readyz():
    """Readiness: 503 while the broker cannot serve (Redis unreachable, stalled, or refusing
    writes), so a balancer can route around us. Why it is not ready goes to the log, not to
    this unauthenticated answer."""
    broker = get_state().broker
    ready = True
    detail = "no broker"
    if broker is not None:
        ready = broker.healthy()
        detail = type(broker).__name__
    if registry.current().shutting_down:
        ready, detail = False, "shutting down"
    return jsonify(status="ready" if ready else "unavailable", broker=detail), 200 if ready else 503
