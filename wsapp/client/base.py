"""What :class:`Client` and :class:`AsyncClient` share: options, handlers, state queries,
close classification, and the arguments given to `websockets`' ``connect``."""

from __future__ import annotations

import logging
import ssl as ssl_module
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from wsapp import __version__

from .backoff import Backoff, RetryBudget
from .core import Core
from .errors import ClientClosed, ClientError, TLSError
from .handlers import Handlers

__all__ = ["PERMANENT_CLOSE_CODES", "ClientBase", "CloseInfo"]

#: Close codes after which connecting again would only repeat the failure (RFC 6455
#: section 7.4.1: protocol error, unsupported data, invalid payload, too big, extension).
PERMANENT_CLOSE_CODES = frozenset({1002, 1003, 1007, 1009, 1010})
NO_CLOSE_FRAME = 1006  # RFC 6455 section 7.1.5: the connection closed without a close frame
USER_AGENT = f"wsapp-client/{__version__} websockets/{websockets.__version__}"

log = logging.getLogger("wsapp.client")


@dataclass(frozen=True)
class CloseInfo:
    """How a connection ended. ``by``: "server", "client", or None (lost, no close frame)."""

    code: int
    reason: str
    by: str | None

    @classmethod
    def of(cls, exc: ConnectionClosed) -> CloseInfo:
        rcvd, sent = exc.rcvd, exc.sent
        if rcvd is not None and (sent is None or exc.rcvd_then_sent):
            return cls(rcvd.code, rcvd.reason, "server")
        if sent is not None:
            return cls(sent.code, sent.reason, "client")
        return cls(NO_CLOSE_FRAME, "", None)

    def describe(self) -> str:
        """Words for people: who closed, with which code and reason."""
        reason = f" {self.reason}" if self.reason else ""
        if self.by == "server":
            return f"closed by the server ({self.code}{reason})"
        if self.by == "client":
            return f"closed ({self.code}{reason})"
        return "connection lost (no close frame)"


class ClientBase:
    """Options and state common to both clients (see :class:`wsapp.client.Client`).

    Options (all keyword-only): ``reconnect`` (default True), ``max_tries`` (failed
    attempts in a row before giving up, None: no limit), ``max_time`` (seconds one
    outage may last, None: no limit), ``backoff`` (:class:`Backoff`), ``ack_timeout``
    (default wait of ``send``), ``open_timeout``, ``close_timeout``, ``ping_interval``,
    ``ping_timeout``, ``ca_file`` or ``ssl`` (for ``wss://``; default: the system's CA
    store), ``max_in_flight`` (messages written and not yet acked), ``outbox_bytes``
    (budget of unacked messages), ``ref_ttl`` (the server's WSAPP_REF_TTL: an unacked
    message is not written again after it), ``queue_events`` (keep events for
    iteration; default: only when no handler is registered at connect), ``max_queue``
    (events waiting for the program before reading pauses), ``max_size`` (largest
    message received), ``headers``, ``compression`` and ``proxy`` (as in `websockets`).
    """

    def __init__(
        self,
        *,
        reconnect: bool = True,
        max_tries: int | None = None,
        max_time: float | None = None,
        backoff: Backoff | None = None,
        ack_timeout: float = 10.0,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        ca_file: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        max_in_flight: int = 64,
        outbox_bytes: int = 8 << 20,
        ref_ttl: float = 300.0,
        queue_events: bool | None = None,
        max_queue: int = 10_000,
        max_size: int | None = 1 << 20,
        headers: Mapping[str, str] | None = None,
        compression: str | None = None,
        proxy: str | bool | None = True,
    ) -> None:
        if ca_file is not None and ssl is not None:
            raise ValueError("give ca_file or ssl, not both")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        RetryBudget(self.backoff, max_tries, max_time)  # validates the limits now
        self.max_tries = max_tries
        self.max_time = max_time
        self.ack_timeout = ack_timeout
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.ca_file = ca_file
        self.ssl = ssl
        if ca_file is not None:
            self.ssl = self._ssl_context()  # a bad CA file fails here, not at connect
        self.max_in_flight = max_in_flight
        self.outbox_bytes = outbox_bytes
        self.ref_ttl = ref_ttl
        self.queue_events = queue_events
        self.max_queue = max_queue
        self.max_size = max_size
        self.headers = dict(headers or {})
        self.compression = compression
        self.proxy = proxy
        self.handlers = Handlers()
        self._core: Core | None = None
        self._iterate = False
        #: The error that ended the client (None while it runs, or after a normal close).
        self.error: ClientError | None = None

    # ---- handlers ----------------------------------------------------------------------

    def on(self, kind: str, handler: Any = None) -> Any:
        """Register `handler(event)` for events of `kind` (``"message"``, ``"event"``,
        ``"event:<name>"``, ``"connect"``, ``"disconnect"``, ``"error"``, ``"gap"``,
        ``"join"``, ``"leave"``, ``"ack"``, ``"*"``); usable as ``@client.on("message")``.
        Handlers run one at a time, in the order events arrived."""
        return self.handlers.on(kind, handler)

    # ---- state ---------------------------------------------------------------------------

    def _require_core(self) -> Core:
        if self._core is None:
            raise ClientError("not connected: call connect(url) first")
        return self._core

    @property
    def url(self) -> str | None:
        return None if self._core is None else self._core.url

    @property
    def client_id(self) -> str | None:
        """The id sent as ``?client=``: the server deduplicates retries by it and the ref."""
        return None if self._core is None else self._core.client_id

    @property
    def name(self) -> str | None:
        """The nickname the server gave us (a generated ``guest-XXXX`` is kept)."""
        return None if self._core is None else self._core.name

    @property
    def last_id(self) -> str | None:
        """The id of the last message seen: the ``since=`` of the next connection."""
        return None if self._core is None else self._core.last_id

    @property
    def hello(self) -> dict[str, Any] | None:
        return None if self._core is None else self._core.hello

    @property
    def recovered(self) -> bool | None:
        """The last ``hello.recovered``: False if messages since our last id were lost."""
        return None if self._core is None else self._core.recovered

    @property
    def gaps(self) -> int:
        """How many reconnects could not replay everything (``gap`` events)."""
        return 0 if self._core is None else self._core.gaps

    @property
    def unacked(self) -> int:
        """Messages in the outbox (not yet acknowledged)."""
        return 0 if self._core is None else self._core.unacked()

    @property
    def connected(self) -> bool:
        return self._core is not None and self._core.live

    @property
    def is_chat(self) -> bool:
        """True when the URL is a chat room (acks, refs, resume); False: a plain endpoint."""
        return self._core is not None and self._core.chat

    @property
    def ended(self) -> bool:
        """True once the client was closed or ended by an error (see ``error``)."""
        return self._done.is_set()  # type: ignore[attr-defined]

    # ---- helpers for the drivers ---------------------------------------------------------

    def _new_core(self, url: str, name: str | None, token: str | None, since: str | None,
                  client_id: str | None, chat: bool | None) -> Core:
        core = Core(url, name=name, token=token, since=since, client_id=client_id, chat=chat,
                    max_in_flight=self.max_in_flight, outbox_bytes=self.outbox_bytes,
                    ref_ttl=self.ref_ttl)
        self._iterate = self.queue_events if self.queue_events is not None else not self.handlers
        return core

    def _budget(self) -> RetryBudget:
        return RetryBudget(self.backoff, self.max_tries, self.max_time)

    def _ssl_context(self) -> ssl_module.SSLContext:
        if self.ssl is not None:
            return self.ssl
        try:
            return ssl_module.create_default_context(cafile=self.ca_file)
        except (OSError, ssl_module.SSLError) as exc:
            raise TLSError(f"cannot load the CA file {self.ca_file!r}: {exc}") from None

    def _connect_kwargs(self, url: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "open_timeout": self.open_timeout,
            "close_timeout": self.close_timeout,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "max_size": self.max_size,
            "compression": self.compression,
            "additional_headers": self.headers or None,
            "user_agent_header": USER_AGENT,
            "proxy": self.proxy if self.proxy is not False else None,
        }
        if url.startswith("wss:"):
            kwargs["ssl"] = self._ssl_context()
        return kwargs

    def _sendable(self) -> Core:
        core = self._require_core()
        if self._stopping or self._done.is_set():  # type: ignore[attr-defined]
            raise self.error or ClientClosed("the client is closed")
        return core

    @staticmethod
    def _settle(settled: list[tuple[Any, Any, BaseException | None]]) -> None:
        """Settle futures (concurrent or asyncio: the same methods) with what the core said."""
        for pending, value, exc in settled:
            future = pending.future
            if future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning for wait=True
            else:
                future.set_result(value)

    @staticmethod
    def _retry_event(budget: RetryBudget, error: ClientError, delay: float) -> dict[str, Any]:
        log.info("wsapp client: %s; retrying in %.1f s", error, delay)
        return {"type": "error", "source": "client", "code": "connect_failed",
                "reason": str(error), "attempt": budget.tries, "delay": delay}

    @staticmethod
    def _fatal_event(error: ClientError) -> dict[str, Any]:
        """The last event of a client that an error ended (e.g. GaveUp)."""
        return {"type": "error", "source": "client", "code": "ended", "reason": str(error),
                "fatal": True}

    @staticmethod
    def _disconnect_event(info: CloseInfo, verdict: object) -> dict[str, Any]:
        return {"type": "disconnect", "code": info.code, "reason": info.reason, "by": info.by,
                "reconnecting": verdict is True}

    def _after_close(self, info: CloseInfo, stopping: bool) -> ClientError | None | bool:
        """What a closed connection means: True to reconnect, None to end normally, or
        the error that ends the client."""
        if stopping:
            return None
        core = self._require_core()
        if info.code in PERMANENT_CLOSE_CODES:
            return ClientClosed(f"{info.describe()}: not reconnecting")
        if not self.reconnect:
            return ClientClosed(f"{info.describe()}; reconnect is off")
        if info.by == "server" and info.code == 1000 and not core.chat:
            return None  # the endpoint ended the session on purpose
        return True
