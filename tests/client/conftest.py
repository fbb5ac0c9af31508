"""Fixtures of the client tests: real servers (memory broker; Redis where history must
survive a restart) on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.support import CLIENT_ENV
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import ServerProcess, running_server


@pytest.fixture(scope="session")
def client_server() -> Iterator[ServerProcess]:
    """`python -m wsapp serve` with the memory broker and CLIENT_ENV (shared)."""
    with running_server("serve", env=CLIENT_ENV) as srv:
        yield srv


@pytest.fixture(scope="session")
def token_server() -> Iterator[ServerProcess]:
    """A server that requires signed tokens on /chat/ (WSAPP_REQUIRE_TOKEN=1)."""
    env = {**CLIENT_ENV, "WSAPP_REQUIRE_TOKEN": "1", "WSAPP_SECRET": "client-test-secret"}
    with running_server("serve", env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server
