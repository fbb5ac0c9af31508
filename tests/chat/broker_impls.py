"""Broker implementations that the contract tests (test_broker_contract.py) run against.

To add one, write a factory and register it in ``IMPLS``::

    def redis_broker(request, options):
        server = request.getfixturevalue("redis_server")   # a session fixture of yours
        broker = RedisBroker(
            server.url, history=options.history, presence_ttl=options.presence_ttl
        )
        return started(broker)

    IMPLS["redis"] = redis_broker

A factory gets the pytest ``request`` (to reach fixtures such as a running redis-server)
and a :class:`BrokerOptions`, and returns a context manager giving a started broker
(``started(broker)``). Tests use fresh random room names, so one broker server can be shared
by every test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest

from wsapp.chat.broker import Broker, MemoryBroker


@dataclass(frozen=True)
class BrokerOptions:
    history: int = 100
    presence_ttl: float = 30.0
    room_ttl: float = 0.0  # 0: rooms are kept (the contract tests' default)


BrokerFactory = Callable[[pytest.FixtureRequest, BrokerOptions], AbstractContextManager[Broker]]


@contextmanager
def started(broker: Broker) -> Iterator[Broker]:
    """Start a broker for the duration of a test, then close it."""
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def memory_broker(
    request: pytest.FixtureRequest, options: BrokerOptions
) -> AbstractContextManager[Broker]:
    return started(MemoryBroker(history=options.history, room_ttl=options.room_ttl))


IMPLS: dict[str, BrokerFactory] = {
    "memory": memory_broker,
}


def redis_broker(
    request: pytest.FixtureRequest, options: BrokerOptions
) -> AbstractContextManager[Broker]:
    """The Redis broker (issue 4) against one real redis-server per test session."""
    from tests.support.redis_server import shared_redis
    from wsapp.chat.broker.redis import RedisBroker

    return started(
        RedisBroker(
            shared_redis().url,
            history=options.history,
            presence_ttl=options.presence_ttl,
            room_ttl=options.room_ttl,
        )
    )


IMPLS["redis"] = redis_broker
