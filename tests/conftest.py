"""Shared fixtures: real server processes in both serving modes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import ServerProcess, running_server

#: Files whose tests bound a latency (a bystander's echo, a pong, an event's lag) in tens or
#: hundreds of milliseconds, or run pip: `make test` runs them alone, after everything else
#: has run in parallel (`-m timing` / `-m "not timing"`), so another test's CPU load cannot
#: move their figures.
TIMING_FILES = frozenset({
    "tests/chat/test_cli.py",
    "tests/engine/test_budgets.py",
    "tests/engine/test_classic_routes.py",
    "tests/examples/test_behind_nginx.py",
    "tests/examples/test_progress.py",
    "tests/extension/test_routes.py",
    "tests/packaging/test_install.py",
    "tests/redis/test_redis_broker.py",
    "tests/rooms/test_rooms_server.py",
    "tests/security/test_hostile.py",
    "tests/security/test_limits_deploy.py",
})


def pytest_collection_modifyitems(config, items) -> None:
    root = config.rootpath
    for item in items:
        if item.path.relative_to(root).as_posix() in TIMING_FILES:
            item.add_marker(pytest.mark.timing)

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
