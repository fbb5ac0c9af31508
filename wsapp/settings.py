"""Settings from WSAPP_* environment variables, validated once at start.

Every knob of the service lives here so that a bad value stops the process with a
message naming the variable, instead of failing later on a live connection.

It is longer than 400 lines because it holds one field per WSAPP_* variable with the
text of its README row (`settings_table()` generates that table from them).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from wsapp import fdlimits
from wsapp.hosts import HostError, parse_patterns
from wsapp.protocol.deflate import DeflateSettings

PREFIX = "WSAPP_"


class SettingsError(ValueError):
    """A WSAPP_* variable has a value we cannot use; the message names it."""


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _str(raw: str) -> str:
    return raw.strip()


def _origins(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip().rstrip("/") for item in raw.split(",") if item.strip())
    for item in items:
        if item != "*" and "://" not in item:
            raise ValueError(
                f"each origin must look like https://host[:port] or be '*', got {item!r}"
            )
    return items


def _hosts(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    try:
        parse_patterns(items)
    except HostError as exc:
        raise ValueError(f"must be a comma list of host[:port], .domain or '*': {exc}") from None
    return items


def _redis_url(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"must start with redis://, rediss:// or unix://, got {value!r}")
    return value


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return value


def _setting(default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """The whole configuration; `Settings.from_env()` is the only constructor used in production."""

    host: str = _setting("127.0.0.1", _str, "Address `python -m wsapp serve` listens on.")
    port: int = _setting(8000, _int(1, 65535), "Port `python -m wsapp serve` listens on.")
    bind: str = _setting(
        "",
        _str,
        "gunicorn and uWSGI (deploy/uwsgi.ini) bind address (`HOST:PORT`); gunicorn's `-b` "
        "wins.",
    )
    workers: int = _setting(
        1,
        _int(1, 256),
        "gunicorn and uWSGI worker processes; more than 1 needs WSAPP_REDIS_URL.",
    )
    max_message_bytes: int = _setting(
        MiB,
        _int(1, 1 << 31),
        "Largest frame or reassembled message accepted (inclusive); larger gets close 1009.",
    )
    max_chat_bytes: int = _setting(
        16 * 1024,
        _int(1, 1 << 24),
        "Largest chat message text in UTF-8 bytes; larger gets an `error` event.",
    )
    max_event_bytes: int = _setting(
        64 * 1024,
        _int(1, 1 << 24),
        "Largest data of a named event (its JSON in UTF-8 bytes) that server code "
        "(`emit`, `Publisher`) and `POST /api/rooms/<room>/events` may send; chat "
        "clients' events are held to WSAPP_MAX_CHAT_BYTES.",
    )
    history: int = _setting(
        100,
        _int(0, 100_000),
        "Messages kept per room and replayed to a new member.",
    )
    max_fragments: int = _setting(
        65536,
        _int(1, 1 << 24),
        "Frames one fragmented message may span; more gets close 1009.",
    )
    prealloc_bytes: int = _setting(
        64 * MiB,
        _int(0, 1 << 40),
        "Process-wide budget for memory allocated ahead of the data: a single-frame message of "
        "64 KiB or more gets its whole size when its header arrives and is unmasked in place; "
        "past the budget, large frames are assembled as their bytes arrive (0: always).",
    )
    send_queue_bytes: int = _setting(
        MiB,
        _int(1024, 1 << 31),
        "Bytes queued for one connection beyond what the kernel took; a slow reader over it is "
        "closed 1008 (the socket's own writes wait instead).",
    )
    send_buffer_bytes: int = _setting(
        256 * 1024,
        _int(0, 1 << 30),
        "Kernel send buffer per WebSocket (SO_SNDBUF; Linux doubles it for its bookkeeping); 0 "
        "leaves the kernel's autotuning.",
    )
    receive_queue_bytes: int = _setting(
        MiB,
        _int(1024, 1 << 31),
        "Bytes of received messages a view has not taken yet; over it the server stops reading "
        "that socket (TCP pushes back).",
    )
    history_bytes: int = _setting(
        64 * MiB,
        _int(1024, 1 << 40),
        "Process-wide budget in bytes for chat history (memory broker): per message its text "
        "and name in UTF-8 plus 512, per room 2048; over it, idle rooms are forgotten, least "
        "recently used first, then the oldest messages of rooms in use.",
    )
    room_ttl: float = _setting(
        86400.0,
        _float(0.0, 10 * 365 * 86400.0),
        "Seconds after which a room with no members and no new message, join or leave is "
        "forgotten with its history (both brokers; Redis: key expiry); 0 keeps rooms.",
    )
    api_token: str = _setting(
        "",
        _str,
        "Bearer token for `POST /api/rooms/<room>/messages`; empty disables the endpoint (403).",
    )
    redis_url: str = _setting(
        "",
        _redis_url,
        "Redis URL; set it to share rooms across processes and hosts. Empty: in-process memory "
        "broker.",
    )
    presence_ttl: float = _setting(
        30.0,
        _float(1.0, 3600.0),
        "Seconds before presence of a vanished process expires (Redis broker).",
    )
    redis_timeout: float = _setting(
        1.5,
        _float(0.05, 60.0),
        "Seconds Redis has to answer a command or the 0.5 s probe; past it the broker is "
        "down (/readyz 503) and a sender whose message got no answer is told "
        "`outcome_unknown` (a late message is never published).",
    )
    ref_ttl: float = _setting(
        300.0,
        _float(0.0, 86400.0),
        "Seconds a chat message's (connection, ref) is remembered: a retry with the same ref "
        "is acked with the first id instead of being published twice; 0 disables.",
    )
    trusted_proxies: int = _setting(
        0,
        _int(0, 10),
        "Number of reverse proxies whose X-Forwarded-* headers are trusted (0: none).",
    )
    allowed_origins: tuple[str, ...] = _setting(
        (),
        _origins,
        "Comma list of allowed Origins for WebSocket handshakes, or `*`; empty: same origin as the "
        "request (its scheme and Host).",
    )
    require_origin: bool = _setting(
        False,
        _bool,
        "Refuse WebSocket handshakes without an Origin header.",
    )
    allowed_hosts: tuple[str, ...] = _setting(
        (),
        _hosts,
        "Comma list of Host values served besides localhost, 127.0.0.1 and [::1] (`name`, "
        "`name:port`, `.domain` with subdomains, `[v6]`, `*` any); others get 400. Empty: "
        "only those on a loopback or Unix socket listener, any host otherwise (start-up "
        "warning if WSAPP_ALLOWED_ORIGINS is empty too).",
    )
    secret: str = _setting("", _str, "Secret for signing connection tokens.")
    require_token: bool = _setting(
        False,
        _bool,
        "Require a signed `?token=` on /chat/<room> (needs WSAPP_SECRET).",
    )
    rate_limit: float = _setting(
        20.0,
        _float(0.0, 1e6),
        "Messages per second per connection (token bucket); 0 disables.",
    )
    rate_burst: int = _setting(
        40,
        _int(1, 1_000_000),
        "Burst size of the per-connection rate limit.",
    )
    max_conn_per_ip: int = _setting(
        100,
        _int(0, 1_000_000),
        "Concurrent WebSockets per client IP (429 beyond), over all workers of one gunicorn "
        "master (not across masters or hosts: docs/deploy.md); 0 disables.",
    )
    max_connections: int = _setting(
        0,
        _int(0, 10_000_000),
        "Concurrent WebSockets per process (503 beyond); 0: the file limit (RLIMIT_NOFILE, "
        "soft raised to hard at start) minus headroom for other descriptors "
        "(docs/deploy.md: 192 at `ulimit -n 256`, 18,718 at 20,000).",
    )
    handshake_timeout: float = _setting(
        10.0,
        _float(0.1, 600.0),
        "Seconds a client has to send its complete HTTP request.",
    )
    ping_interval: float = _setting(
        20.0,
        _float(0.0, 3600.0),
        "Seconds between server pings on an idle socket; 0 disables keepalive.",
    )
    ping_timeout: float = _setting(
        20.0,
        _float(0.1, 3600.0),
        "Seconds to wait for a pong before closing the connection 1011.",
    )
    close_timeout: float = _setting(
        2.0,
        _float(0.0, 60.0),
        "Seconds to wait for the peer's close reply before closing TCP.",
    )
    log_level: str = _setting("INFO", _log_level, "Log level: DEBUG, INFO, WARNING or ERROR.")
    speedups: bool = _setting(
        True,
        _bool,
        "Use the compiled C loops (framing, chat broadcast) when built (`make speedups`); 0 runs "
        "the same code paths in pure Python.",
    )
    io_uring: bool = _setting(
        True,
        _bool,
        "Chat broadcasts hand all their sends to the kernel in one io_uring call (Linux, C "
        "speedups); 0, or io_uring refused by the kernel (seccomp, `kernel.io_uring_disabled`), "
        "sends with one send() per member.",
    )
    deflate: bool = _setting(
        True,
        _bool,
        "Negotiate permessage-deflate (RFC 7692) with clients that offer it; 0 declines it.",
    )
    deflate_threshold: int = _setting(
        128,
        _int(0, 1 << 31),
        "Messages whose payload is shorter than this many bytes are sent uncompressed.",
    )
    deflate_level: int = _setting(
        1,
        _int(0, 9),
        "zlib compression level of messages sent, 0 (store) to 9 (smallest, slowest).",
    )
    deflate_mem_level: int = _setting(
        5,
        _int(1, 9),
        "zlib memLevel of the server's compressors, 1 to 9 (state of about 2**(N+9) bytes plus "
        "the window).",
    )
    deflate_server_window_bits: int = _setting(
        12,
        _int(9, 15),
        "Largest LZ77 window the server compresses with (`server_max_window_bits`, 2**N bytes; "
        "a client that offers less gets less).",
    )
    deflate_client_window_bits: int = _setting(
        12,
        _int(9, 15),
        "Window asked of clients that offer `client_max_window_bits` (every browser); the "
        "inflater's window, 2**N bytes, only while a message arrives unless context is kept.",
    )
    deflate_client_context: bool = _setting(
        False,
        _bool,
        "Let clients keep compression context between their messages; 0 answers "
        "`client_no_context_takeover`, so no inflater outlives a message.",
    )
    deflate_idle: float = _setting(
        5.0,
        _float(0.0, 86400.0),
        "Seconds after its last compressed message a connection's compressor (context "
        "takeover: /echo, user routes) is freed; the next message starts a fresh one.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every WSAPP_* variable; unknown WSAPP_* names are errors too."""
        environ = os.environ if environ is None else environ
        known = {PREFIX + f.name.upper() for f in fields(cls)}
        unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]} (known: see README, Configuration)")
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            if name in environ:
                try:
                    values[f.name] = f.metadata["parse"](environ[name])
                except ValueError as exc:
                    raise SettingsError(f"{name} {exc}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def __post_init__(self) -> None:
        if self.max_connections == 0:  # derived from the file limit (and raises it)
            derived = fdlimits.default_max_connections(redis=bool(self.redis_url))
            object.__setattr__(self, "max_connections", derived)

    def check(self) -> None:
        """Rules that involve more than one variable."""
        if self.require_token and not self.secret:
            raise SettingsError("WSAPP_REQUIRE_TOKEN=1 needs WSAPP_SECRET to be set")
        if self.workers > 1 and not self.redis_url:
            raise SettingsError(
                f"WSAPP_WORKERS={self.workers} needs WSAPP_REDIS_URL: with the in-process memory "
                "broker each worker would hold its own rooms and chat would silently split"
            )

    @functools.cached_property
    def deflate_settings(self) -> DeflateSettings | None:
        """What WebSockets negotiate by default (`WebSocket.deflate_settings`); None when off."""
        if not self.deflate:
            return None
        return DeflateSettings(
            threshold=self.deflate_threshold,
            level=self.deflate_level,
            mem_level=self.deflate_mem_level,
            server_max_window_bits=self.deflate_server_window_bits,
            client_max_window_bits=self.deflate_client_window_bits,
            client_context_takeover=self.deflate_client_context,
        ).with_changes()

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def settings_table() -> str:
    """The README's configuration table, generated from the dataclass so it cannot drift."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for f in fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(default)
        if isinstance(default, bool):
            default = int(default)
        rows.append(f"| `{PREFIX}{f.name.upper()}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(rows)
