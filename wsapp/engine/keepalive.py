"""Which sockets to ping and which to drop: a pure decision, tested without sockets.

RFC 6455 5.5.2 lets an endpoint ping at any time; a peer that answers nothing (no pong,
no data) within the timeout is taken for dead. Anything received after our ping proves
the peer alive. A socket whose reader is held back by its own view (the view does not
take its messages, so we do not read) is not pinged: its pong could not be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Watched(Protocol):
    last_received: float  # monotonic time of the last read from the peer

    def keepalive_eligible(self) -> bool: ...


@dataclass
class Decision:
    to_ping: list
    to_drop: list


def decide(
    now: float,
    sockets: Iterable[Watched],
    pinged: dict,
    interval: float,
    timeout: float,
) -> Decision:
    """Sockets idle for `interval` get a ping; pinged ones silent for `timeout` are dropped.

    `pinged` maps a socket to when we pinged it; it is updated in place (entries for
    sockets that answered or were dropped are removed, new pings added)."""
    decision = Decision([], [])
    for sock in sockets:
        if not sock.keepalive_eligible():
            pinged.pop(sock, None)
            continue
        sent = pinged.get(sock)
        if sent is not None and sock.last_received > sent:
            del pinged[sock]
            sent = None
        if sent is None:
            if now - sock.last_received >= interval:
                pinged[sock] = now
                decision.to_ping.append(sock)
        elif now - sent >= timeout:
            del pinged[sock]
            decision.to_drop.append(sock)
    return decision
