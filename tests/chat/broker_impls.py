"""Broker implementations that the contract tests (test_broker_contract.py) run against.

To add one, write a factory and register it in ``IMPLS``::

    @contextmanager
    def redis_broker(request, options):
        server = request.getfixturevalue("redis_server")   # a session fixture of yours
        broker = RedisBroker(server.url, history=options.history, presence_ttl=options.presence_ttl)
        broker.start()
        try:
            yield broker
        finally:
            broker.close()

    IMPLS["redis"] = redis_broker

A factory gets the pytest ``request`` (to reach fixtures such as a running redis-server)
and a :class:`BrokerOptions`, and yields a started broker. Tests use fresh random room
names, so one broker server can be shared by every test.
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


BrokerFactory = Callable[[pytest.FixtureRequest, BrokerOptions], AbstractContextManager[Broker]]


@contextmanager
def memory_broker(request: pytest.FixtureRequest, options: BrokerOptions) -> Iterator[Broker]:
    broker = MemoryBroker(history=options.history)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


IMPLS: dict[str, BrokerFactory] = {
    "memory": memory_broker,
}


@contextmanager
def redis_broker(request: pytest.FixtureRequest, options: BrokerOptions) -> Iterator[Broker]:
    """The Redis broker (issue 4) against one real redis-server per test session."""
    from tests.support.redis_server import shared_redis
    from wsapp.chat.broker.redis import RedisBroker

    broker = RedisBroker(shared_redis().url, history=options.history, presence_ttl=options.presence_ttl)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


IMPLS["redis"] = redis_broker
