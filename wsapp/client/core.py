"""The client's state without I/O: outbox, refs, acks, resume, events to hand out.

:class:`Client` (threads) and :class:`AsyncClient` (asyncio) drive one :class:`Core`
each: they open connections, feed it what they receive (:meth:`Core.receive`), write
what it hands out (:meth:`Core.next_writes`), and settle futures with what it reports.
It never blocks and never touches a socket, so both flavours behave the same.

At-least-once without duplicates (docs/client.md):

* every chat message gets a ``ref`` unique to this client (a random prefix per
  :class:`Core`, then a counter), and the connection carries ``?client=<id>``, stable for
  the client's life; wsapp remembers (client id, ref) for WSAPP_REF_TTL seconds and
  answers a repeat with the first copy's id instead of publishing it again;
* a message stays in the outbox until its ``ack``; after a reconnect everything unacked
  is written again, in order, before anything newer;
* a message whose first write is older than ``ref_ttl`` is not written again (the
  server may have forgotten its ref): it fails with :class:`Unconfirmed`;
* the connection URL carries ``since=<last message id seen>``, so the room's messages
  missed while away are replayed, each exactly once.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backoff import Backoff
from .errors import InvalidURL, NotSent, OutboxFull, Rejected, SendError, Unconfirmed
from .urls import CLIENT_ID_RE, is_chat_url, normalize_url, query_param, with_query

__all__ = ["RETRYABLE_CODES", "Core", "Feed", "Pending"]

#: Error event codes after which the same message is written again later (same ref):
#: not published (``unavailable``, ``rate_limited``) or maybe published
#: (``outcome_unknown``: the server deduplicates the retry).
RETRYABLE_CODES = frozenset({"unavailable", "outcome_unknown", "rate_limited"})
MAX_REF_CHARS = 128  # the server's limit (docs/protocol.md)
#: Delays before writing a message again after a retryable error event.
RETRY_BACKOFF = Backoff(initial=0.25, maximum=5.0)

Event = dict[str, Any]


@dataclass(eq=False)
class Pending:
    """One message in the outbox."""

    ref: str | None  # None on plain endpoints (no acks there)
    frame: str | bytes
    size: int
    future: Any  # concurrent.futures.Future or asyncio.Future, settled by the driver
    key: int = 0  # position in the outbox
    written: int = 0  # generation of the connection it was last written on (0: none)
    first_written: float | None = None
    not_before: float = 0.0  # held until then after a retryable error
    retries: int = 0


@dataclass
class Feed:
    """What one received message produced."""

    events: list[Event] = field(default_factory=list)
    #: (pending, message id or None, exception or None): futures to settle
    settled: list[tuple[Pending, str | None, BaseException | None]] = field(default_factory=list)


class Core:
    """One logical client across connections (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        token: str | None = None,
        since: str | None = None,
        client_id: str | None = None,
        chat: bool | None = None,
        max_in_flight: int = 64,
        outbox_bytes: int = 8 << 20,
        ref_ttl: float = 300.0,
        retry_backoff: Backoff = RETRY_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = normalize_url(url)
        self.chat = is_chat_url(self.url) if chat is None else chat
        self.name = name or query_param(self.url, "name")
        self.token = token or query_param(self.url, "token")
        self.last_id = since or query_param(self.url, "since")
        client_id = client_id or query_param(self.url, "client") or secrets.token_urlsafe(12)
        if CLIENT_ID_RE.fullmatch(client_id) is None:
            raise InvalidURL("client_id: use 1 to 64 of A-Z a-z 0-9 _ -")
        self.client_id = client_id
        if max_in_flight < 1 or outbox_bytes < 1:
            raise ValueError("max_in_flight and outbox_bytes must be positive")
        self.max_in_flight = max_in_flight
        self.outbox_bytes = outbox_bytes
        self.ref_ttl = ref_ttl
        self.retry_backoff = retry_backoff
        self.clock = clock
        self.outbox: OrderedDict[int, Pending] = OrderedDict()
        self.by_ref: dict[str, Pending] = {}
        self.queued_bytes = 0
        self.generation = 0  # one per connection opened
        self.live = False  # open and (chat) hello received: writes may go out
        self.hello: Event | None = None
        self.recovered: bool | None = None
        self.gaps = 0
        self._seq = 0
        self._ref_prefix = secrets.token_hex(4) + "-"

    # ---- connections ----------------------------------------------------------------

    def connect_url(self) -> str:
        """The URL of the next connection: name, token, client id, ``since`` last id."""
        if not self.chat:
            return self.url
        return with_query(self.url, name=self.name, token=self.token, since=self.last_id,
                          client=self.client_id)

    def opened(self) -> list[Event]:
        """A connection is open. Plain endpoints are live at once; chat after ``hello``."""
        self.generation += 1
        self.live = not self.chat
        if self.chat:
            return []
        return [{"type": "connect", "hello": None, "reconnect": self.generation > 1}]

    def closed(self) -> None:
        self.live = False

    # ---- sending ---------------------------------------------------------------------

    def add(self, frame: str | bytes, future: Any, ref: str | None = None) -> Pending:
        """Queue a frame built by :meth:`message_frame` / :meth:`event_frame` (or raw
        for plain endpoints). Raises OutboxFull over ``outbox_bytes``."""
        size = len(frame)
        if self.queued_bytes + size > self.outbox_bytes:
            raise OutboxFull(f"outbox full ({self.queued_bytes} of {self.outbox_bytes} bytes "
                             "unacknowledged): not sent", ref)
        self._seq += 1
        pending = Pending(ref, frame, size, future, key=self._seq)
        self.outbox[self._seq] = pending
        if ref is not None:
            self.by_ref[ref] = pending
        self.queued_bytes += size
        return pending

    def new_ref(self, ref: str | None = None) -> str:
        """A fresh ref, or the program's own (checked: unique in the outbox, <= 128)."""
        if ref is None:
            return f"{self._ref_prefix}{self._seq + 1}"
        if not isinstance(ref, str) or not ref or len(ref) > MAX_REF_CHARS:
            raise ValueError(f"ref must be a non-empty string of at most {MAX_REF_CHARS} chars")
        if ref in self.by_ref:
            raise ValueError(f"ref {ref!r} is already in the outbox")
        return ref

    @staticmethod
    def message_frame(text: str, ref: str) -> str:
        if not isinstance(text, str):
            raise TypeError("chat messages are text (str)")
        return json.dumps({"type": "message", "text": text, "ref": ref}, ensure_ascii=False)

    @staticmethod
    def event_frame(event: str, data: Any, ref: str) -> str:
        if not isinstance(event, str) or not event:
            raise ValueError("event name must be a non-empty string")
        return json.dumps({"type": "event", "event": event, "data": data, "ref": ref},
                          ensure_ascii=False)

    def next_writes(self) -> tuple[list[Pending], list[tuple[Pending, None, BaseException]],
                                   float | None]:
        """Frames to write now on the current connection, in outbox order.

        Returns (writes, expired, wake): `expired` are messages not to be written again
        (their ref may be forgotten by the server): settle them with their exception;
        `wake` is when a held message may go (None: nothing held)."""
        writes: list[Pending] = []
        expired: list[tuple[Pending, None, BaseException]] = []
        if not self.live:
            return writes, expired, None
        now = self.clock()
        gen = self.generation
        in_flight = sum(1 for p in self.outbox.values() if p.written == gen) if self.chat else 0
        for p in list(self.outbox.values()):
            if p.written == gen:
                continue
            if p.not_before > now:
                return writes, expired, p.not_before  # keep the order: nothing overtakes it
            if (self.chat and p.first_written is not None
                    and now - p.first_written > self.ref_ttl):
                self._remove(p)
                expired.append((p, None, Unconfirmed(
                    "written but not acknowledged within ref_ttl: it may or may not have been "
                    "delivered, and is not written again", p.ref)))
                continue
            if self.chat and in_flight >= self.max_in_flight:
                break
            p.written = gen
            if p.first_written is None:
                p.first_written = now
            in_flight += 1
            writes.append(p)
        return writes, expired, None

    def written(self, writes: list[Pending]) -> list[tuple[Pending, None, None]]:
        """Plain endpoints have no acks: a written message is done."""
        if self.chat:
            return []
        done = []
        for p in writes:
            if p.key in self.outbox:
                self._remove(p)
                done.append((p, None, None))
        return done

    def _remove(self, p: Pending) -> None:
        del self.outbox[p.key]
        if p.ref is not None:
            self.by_ref.pop(p.ref, None)
        self.queued_bytes -= p.size

    def _settle_ref(self, ref: str) -> Pending | None:
        p = self.by_ref.get(ref)
        if p is not None:
            self._remove(p)
        return p

    def fail_all(self, reason: str) -> list[tuple[Pending, None, BaseException]]:
        """Empty the outbox (the client ends): never written -> NotSent, else Unconfirmed."""
        out: list[tuple[Pending, None, BaseException]] = []
        for p in list(self.outbox.values()):
            self._remove(p)
            exc: SendError
            if p.first_written is None:
                exc = NotSent(f"not sent: {reason}", p.ref)
            else:
                exc = Unconfirmed(f"not acknowledged: {reason}; it may or may not have been "
                                  "delivered", p.ref)
            out.append((p, None, exc))
        return out

    def unacked(self) -> int:
        return len(self.outbox)

    # ---- receiving -------------------------------------------------------------------

    def receive(self, data: str | bytes) -> Feed:
        """One message from the server."""
        feed = Feed()
        if not self.chat:
            key = "text" if isinstance(data, str) else "data"
            feed.events.append({"type": "message", key: data})
            return feed
        try:
            event = json.loads(data)
        except ValueError:
            return feed  # wsapp sends JSON only; a stray frame is not an event
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return feed
        kind = event["type"]
        if kind == "hello":
            self._hello(event, feed)
            return feed
        if kind in ("message", "event") and isinstance(event.get("id"), str):
            self.last_id = event["id"]
        elif kind == "ack" and isinstance(event.get("ref"), str):
            p = self._settle_ref(event["ref"])
            if p is not None:
                feed.settled.append((p, event.get("id"), None))
        elif kind == "error" and isinstance(event.get("ref"), str):
            self._error(event, feed)
        feed.events.append(event)
        return feed

    def _hello(self, event: Event, feed: Feed) -> None:
        self.hello = event
        self.live = True
        if isinstance(event.get("name"), str):
            self.name = event["name"]  # keep a generated guest name across reconnects
        recovered = event.get("recovered")
        self.recovered = recovered if isinstance(recovered, bool) else None
        feed.events.append({"type": "connect", "hello": event, "reconnect": self.generation > 1})
        if self.recovered is False:
            self.gaps += 1
            feed.events.append({"type": "gap", "since": self.last_id, "room": event.get("room")})

    def _error(self, event: Event, feed: Feed) -> None:
        p = self.by_ref.get(event["ref"])
        if p is None:
            return
        code = str(event.get("code"))
        if code in RETRYABLE_CODES:
            p.retries += 1
            p.written = 0
            delays = self.retry_backoff.delays()
            delay = next(delays)
            for _ in range(min(p.retries - 1, 16)):
                delay = next(delays)
            p.not_before = self.clock() + delay
            return
        self._settle_ref(p.ref or "")
        feed.settled.append((p, None, Rejected(code, str(event.get("reason", "")), p.ref)))
