"""Fixtures of the chat tests: brokers for the contract tests, chat-configured servers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.chat.broker_impls import IMPLS, BrokerOptions
from tests.support.servers import ServerProcess, running_server
from wsapp.chat.broker import Broker

API_TOKEN = "chat-test-token"

# One configuration for the chat integration tests: small queues and history so that
# overflow and trimming happen quickly, a short keepalive so dead peers are found fast,
# no rate limit (tests send thousands of messages), and a POST token.
CHAT_ENV = {
    "WSAPP_SEND_QUEUE_BYTES": "65536",
    "WSAPP_HISTORY": "400",  # the resume test must never outrun history, even on a loaded machine
    "WSAPP_MAX_CHAT_BYTES": "16384",
    "WSAPP_API_TOKEN": API_TOKEN,
    "WSAPP_PING_INTERVAL": "1",
    "WSAPP_PING_TIMEOUT": "1",
    "WSAPP_CLOSE_TIMEOUT": "0.5",
    "WSAPP_RATE_LIMIT": "0",
    "WSAPP_MAX_CONN_PER_IP": "0",
    "WSAPP_LOG_LEVEL": "INFO",
}


@pytest.fixture(params=sorted(IMPLS))
def make_broker(request: pytest.FixtureRequest) -> Iterator[Callable[..., Broker]]:
    """`make_broker(history=..)` -> a started broker of the parametrised implementation."""
    factory = IMPLS[request.param]
    with ExitStack() as stack:

        def make(**options) -> Broker:
            return stack.enter_context(factory(request, BrokerOptions(**options)))

        yield make


@pytest.fixture
def broker(make_broker: Callable[..., Broker]) -> Broker:
    return make_broker()


def new_room(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def room() -> str:
    return new_room()


@pytest.fixture(scope="session")
def chat_servers() -> Iterator[Callable[[str], ServerProcess]]:
    """`chat_servers(mode)`: the CHAT_ENV server of that mode, started on first use."""
    with ExitStack() as stack:
        cache: dict[str, ServerProcess] = {}

        def get(mode: str) -> ServerProcess:
            if mode not in cache:
                cache[mode] = stack.enter_context(running_server(mode, env=CHAT_ENV))
            return cache[mode]

        yield get


@pytest.fixture(params=["serve", "gunicorn", "uwsgi"])
def chat_server(request: pytest.FixtureRequest, chat_servers) -> ServerProcess:
    """The chat configuration, once per serving mode."""
    return chat_servers(request.param)


@pytest.fixture
def chat_serve_server(chat_servers) -> ServerProcess:
    """The chat configuration under `python -m wsapp serve` only (the heavier tests)."""
    return chat_servers("serve")
