"""Shared fixtures: real server processes in both serving modes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import ServerProcess, running_server

SERVING_MODES = ["serve", "gunicorn"]


@pytest.fixture(scope="session", params=SERVING_MODES)
def server(request) -> Iterator[ServerProcess]:
    """A default-configured wsapp, once per serving mode (shared by read-only tests)."""
    with running_server(request.param) as srv:
        yield srv


@pytest.fixture(scope="session")
def serve_server() -> Iterator[ServerProcess]:
    """A default-configured `python -m wsapp serve` for tests that need only one mode."""
    with running_server("serve") as srv:
        yield srv
