"""Brokers: the interface (base.py), the embedded memory broker, and the factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    Callback,
    Event,
    InvalidMessageId,
    Member,
    Message,
    OutcomeUnknown,
    PresenceEvent,
    RoomEvent,
    RoomInfo,
    Subscription,
    parse_stream_id,
)
from .memory import MemoryBroker

if TYPE_CHECKING:
    from wsapp.settings import Settings

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "Callback",
    "Event",
    "InvalidMessageId",
    "Member",
    "MemoryBroker",
    "Message",
    "OutcomeUnknown",
    "PresenceEvent",
    "RoomEvent",
    "RoomInfo",
    "Subscription",
    "create_broker",
    "parse_stream_id",
]


def create_broker(settings: Settings) -> Broker:
    """The memory broker, or the Redis broker when WSAPP_REDIS_URL is set (issue 4).

    The Redis implementation lives in the ``broker/redis/`` package and provides
    ``RedisBroker.from_settings(settings)``; it is imported only when configured.
    """
    if settings.redis_url:
        from .redis import RedisBroker

        return RedisBroker.from_settings(settings)
    return MemoryBroker.from_settings(settings)
