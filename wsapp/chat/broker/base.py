"""The Broker interface: the only state chat processes share.

Everything two processes must agree on goes through a broker: message ids, history,
fan-out of events to every process that has members in a room, and presence. The
in-process :class:`~wsapp.chat.broker.memory.MemoryBroker` is the embedded default; a Redis
broker implements the same interface and passes the same contract tests
(``tests/chat/test_broker_contract.py``, implementations listed in
``tests/chat/broker_impls.py``).

Message ids
    Strings assigned by :meth:`Broker.publish`, strictly increasing within a room, opaque to
    clients. Only the broker compares them (:meth:`Broker.id_key`). The default format is the
    one of Redis stream ids, ``"<unix ms>-<sequence>"``, compared as a pair of integers; a
    broker with another format overrides :meth:`Broker.id_key`.

Delivery
    :meth:`Broker.subscribe` registers a callback for one room. It is called once per event
    published in that room after ``subscribe`` returned (a :class:`Message`, a
    :class:`PresenceEvent` or a :class:`RoomEvent`), in publication order, from the
    publishing greenlet (memory) or from the broker's listener greenlet (Redis). Callbacks
    must not block: the hub's callback only puts pre-encoded frames on bounded connection
    queues.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Literal

log = logging.getLogger("wsapp.chat.broker")

class BrokerError(Exception):
    """Base class of broker failures."""


class BrokerUnavailable(BrokerError):
    """The broker cannot serve the request right now (e.g. Redis is down); retry later."""


class OutcomeUnknown(BrokerUnavailable):
    """The request was sent but its answer never came (e.g. Redis stalled): it may or may
    not have taken effect. For a publish: retry with the same ``sender`` and ``ref`` (a
    retry of a message that was published returns it instead of publishing it twice), or
    look for it in history; never report it as "not sent"."""


class InvalidMessageId(BrokerError, ValueError):
    """A client-supplied message id (``since=``) is not an id this broker could have made."""


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message as stored in history and delivered to subscribers."""

    room: str
    id: str
    name: str
    text: str
    ts: int  # Unix time in milliseconds, assigned by the broker

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room": self.room,
            "name": self.name,
            "text": self.text,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class Member:
    """One connection present in a room. ``id`` is unique across every process."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A member joined or left a room."""

    room: str
    kind: Literal["join", "leave"]
    member: Member


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A named event for every member of a room, kept nowhere (:meth:`Broker.emit`).

    ``data`` is JSON text, validated and encoded once by the emitter, carried as it is and
    spliced into the frame. ``sender``: the chat member that sent it (None when server code
    emitted it); ``skip``: a connection id that must not get it (the sender's, usually)."""

    room: str
    name: str
    data: str
    sender: Member | None = None
    skip: str | None = None


Event = Message | PresenceEvent | RoomEvent
Callback = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One row of ``GET /api/rooms``."""

    room: str
    members: int
    last_id: str | None


_subscription_ids = count(1)


@dataclass(eq=False)
class Subscription:
    """Handle returned by :meth:`Broker.subscribe`; pass it to :meth:`Broker.unsubscribe`."""

    room: str
    callback: Callback
    id: int = field(default_factory=lambda: next(_subscription_ids))
    active: bool = True


def fan_out(subscriptions: list[Subscription], event: Event) -> None:
    """Call every active subscription's callback with `event`, in subscription order.

    The one delivery loop of every broker. It iterates over a copy, so a callback may
    subscribe or unsubscribe; subscriptions found inactive are removed from the list. A
    callback that raises is logged and the others still get the event."""
    for sub in tuple(subscriptions):
        if not sub.active:
            if sub in subscriptions:
                subscriptions.remove(sub)
            continue
        try:
            sub.callback(event)
        except Exception:  # one broken subscriber must not starve the others
            log.exception("chat subscriber %s of room %s failed", sub.id, sub.room)


_STREAM_ID = re.compile(r"(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,18})")


def parse_stream_id(message_id: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` -> ``(ms, seq)``; raises InvalidMessageId for anything else."""
    if not isinstance(message_id, str):
        raise InvalidMessageId(f"message id must be a string, got {type(message_id).__name__}")
    m = _STREAM_ID.fullmatch(message_id)
    if m is None:
        raise InvalidMessageId(f"not a message id: {message_id[:80]!r}")
    return int(m.group(1)), int(m.group(2))


class Broker(ABC):
    """Publish with id assignment, per-room subscriptions, history since an id, presence.

    Methods that talk to a remote service raise :class:`BrokerUnavailable` when it is down.
    """

    #: short name for logs and /readyz ("memory", "redis")
    kind: str = "abstract"

    # ---- life cycle ------------------------------------------------------------------

    def start(self) -> None:  # noqa: B027 - optional hook
        """Connect and start background greenlets, if any. Called once by ``init_app``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work and release connections."""

    def healthy(self) -> bool:
        """True when publish/history/presence can be served right now, writes included
        (``/readyz``). The memory broker always can."""
        return True

    @property
    def ready(self) -> bool:
        return self.healthy()

    # ---- ids -------------------------------------------------------------------------

    def id_key(self, message_id: str) -> tuple[int, ...]:
        """Sort key of a message id: ids of one room compare like their keys.

        Raises InvalidMessageId for a string this broker could not have produced."""
        return parse_stream_id(message_id)

    def is_valid_id(self, message_id: str) -> bool:
        try:
            self.id_key(message_id)
        except InvalidMessageId:
            return False
        return True

    # ---- messages --------------------------------------------------------------------

    @abstractmethod
    def publish(
        self,
        room: str,
        name: str,
        text: str,
        *,
        sender: str | None = None,
        ref: str | None = None,
    ) -> Message:
        """Assign the next id of `room`, append to its history, deliver to its subscribers.

        With both `sender` (who publishes: unique across processes, e.g. a connection id)
        and `ref` (the client's correlation id), the publish is idempotent for WSAPP_REF_TTL
        seconds: a second publish with the same pair in the same room returns the message
        of the first (same id) and delivers nothing. Raises BrokerUnavailable when the
        message was not published, OutcomeUnknown when that is not known."""

    @abstractmethod
    def history(
        self, room: str, since: str | None = None, limit: int | None = None
    ) -> list[Message]:
        """Retained messages of `room`, oldest first.

        ``since=None``: the newest `limit` messages (all retained ones if `limit` is None).
        ``since=id``: every retained message with an id greater than `since` (the oldest
        `limit` of them if `limit` is given). Raises InvalidMessageId for a malformed `since`.
        """

    @abstractmethod
    def covers(self, room: str, since: str) -> bool:
        """True if history still holds every message of `room` published after `since`.

        False when messages after `since` were trimmed from history or may have been
        published before this broker's history began (e.g. the memory broker restarted)."""

    # ---- fan-out ---------------------------------------------------------------------

    @abstractmethod
    def subscribe(self, room: str, callback: Callback) -> Subscription:
        """Call `callback(event)` for every event of `room` published from now on."""

    @abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop deliveries to `subscription`; unknown or repeated calls are harmless."""

    @abstractmethod
    def emit(self, event: RoomEvent) -> None:
        """Deliver `event` to the subscribers of ``event.room`` in every process, now.

        Not kept in history, not replayed, never delivered twice: a subscriber that is not
        subscribed at that moment (or whose process is reconnecting to Redis) misses it.
        Raises BrokerUnavailable when it was not published, OutcomeUnknown when that is not
        known (it may have reached some or all subscribers)."""

    # ---- presence --------------------------------------------------------------------

    @abstractmethod
    def join(self, room: str, member: Member) -> None:
        """Record `member` as present in `room` and deliver a ``join`` event to subscribers."""

    @abstractmethod
    def leave(self, room: str, member_id: str) -> None:
        """Remove the member and deliver a ``leave`` event; unknown ids are ignored."""

    @abstractmethod
    def members(self, room: str) -> list[Member]:
        """Members present in `room` across all processes, in join order."""

    @abstractmethod
    def rooms(self) -> list[RoomInfo]:
        """Rooms with members or history, sorted by name."""
