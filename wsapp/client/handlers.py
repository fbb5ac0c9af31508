"""Handlers per event type, shared by :class:`Client` and :class:`AsyncClient`.

Event types a handler can be registered for (each event is a ``dict`` with ``"type"``):

========== ==================================================================================
connect    a connection is ready: ``hello`` (chat: the server's hello event; plain: None),
           ``reconnect`` (False for the first connection)
disconnect a connection ended: ``code``, ``reason``, ``by`` (``"server"``, ``"client"`` or
           None when it was lost without a close frame), ``reconnecting``
message    chat: the server's message event (``id``, ``name``, ``text``, ``ts``, ``replay``
           for history); plain endpoints: ``text`` (str) or ``data`` (bytes)
event      a named event relayed in the room (``event``, ``data``, ``room``, ``sender``);
           ``"event:<name>"`` registers for one name only
join/leave presence events of the room
ack        the server's ack of one of our messages (``ref``, ``id``)
error      an ``error`` event from the server (``code``, ``reason``, ``ref``), or the
           client's own (``"source": "client"``): a failed connection attempt
           (``connect_failed``, with ``attempt`` and ``delay``) or, last of all, the error
           that ended the client (``ended``, ``"fatal": True``)
gap        the server could not replay everything since our last id (``hello.recovered``
           was false): some messages were missed; once per reconnect that lost some
``*``      every event
========== ==================================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["EVENT_TYPES", "Handlers"]

EVENT_TYPES = frozenset({"connect", "disconnect", "message", "event", "join", "leave", "ack",
                         "error", "gap", "*"})

Handler = Callable[[dict[str, Any]], Any]


class Handlers:
    """A registry: ``on(kind)`` as a decorator or a call; ``for_event(event)``."""

    def __init__(self) -> None:
        self._by_kind: dict[str, list[Handler]] = {}

    def on(self, kind: str, handler: Handler | None = None) -> Any:
        if not isinstance(kind, str) or not (kind in EVENT_TYPES or kind.startswith("event:")):
            raise ValueError(f"unknown event type {kind!r}: one of {sorted(EVENT_TYPES)} "
                             "or 'event:<name>'")

        def register(fn: Handler) -> Handler:
            self._by_kind.setdefault(kind, []).append(fn)
            return fn

        return register if handler is None else register(handler)

    def __bool__(self) -> bool:
        return any(self._by_kind.values())

    def for_event(self, event: dict[str, Any]) -> list[Handler]:
        kind = event.get("type")
        found = list(self._by_kind.get(str(kind), ()))
        if kind == "event" and isinstance(event.get("event"), str):
            found += self._by_kind.get(f"event:{event['event']}", ())
        return found + self._by_kind.get("*", [])
