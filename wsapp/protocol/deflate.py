"""permessage-deflate negotiation (RFC 7692) as pure functions: header in, agreement out.

`negotiate(header, settings)` reads a client's `Sec-WebSocket-Extensions` value (every
offer in it: several offers, the four parameters with and without values, quoted values,
duplicates, unknown parameters), accepts the first permessage-deflate offer it can honour
and returns an `Agreement` (the parameters both sides use and the response header value),
or None: the extension is declined and the handshake goes on without it (RFC 7692 5, 7).

The server's choices, from `DeflateSettings` (WSAPP_DEFLATE_* or a route's own):

- `server_no_context_takeover` is answered when offered, and also when the server keeps no
  compression context (RFC 7692 7.1.1.1 lets a server say it unasked): rooms compress each
  broadcast once for every member, which only works without context;
- `client_no_context_takeover` is answered when offered, and also unasked when the server
  keeps no inflate context between a client's messages (7.1.1.2: a server may always add
  it): the inflater then lives only while a message arrives;
- `server_max_window_bits` is the smaller of the offer's value and ours, announced even when
  not offered if ours is under 15 (7.1.2.1); an offer that asks for 8 is declined, since
  zlib cannot compress with a 256-byte window;
- `client_max_window_bits` is answered only when offered (7.1.2.2), with the smaller of
  the offer's value (15 when it has none) and ours.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

EXTENSION = "permessage-deflate"

#: RFC 7230 3.2.6 token characters (RFC 6455 9.1 uses the same grammar).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: RFC 7692 7.1.2: a window-bits value is 1*DIGIT without leading zeros, 8 to 15.
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}
_PARAMETERS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)


@dataclass(frozen=True)
class DeflateSettings:
    """What the server is willing to negotiate; one per process (from WSAPP_DEFLATE_*),
    or a route's own (`dataclasses.replace` or `with_changes`).

    A `WebSocket` carries one in `deflate_settings` until it is accepted: set it to None
    (or `enabled=False`) to decline permessage-deflate on that route."""

    #: Negotiate permessage-deflate at all.
    enabled: bool = True
    #: Messages whose payload is shorter than this many bytes are sent uncompressed.
    threshold: int = 128
    #: zlib compression level, 0 (store) to 9.
    level: int = 1
    #: zlib memLevel of the server's compressor, 1 to 9 (its hash and buffer sizes).
    mem_level: int = 5
    #: Largest LZ77 window the server compresses with: 2**bits bytes, 9 to 15.
    server_max_window_bits: int = 12
    #: Window asked of clients that offer `client_max_window_bits`, 9 to 15.
    client_max_window_bits: int = 12
    #: The server keeps its compressor's context from message to message where the client
    #: allows it (False: it always answers server_no_context_takeover).
    server_context_takeover: bool = True
    #: Clients may keep their context (False: the answer always carries
    #: client_no_context_takeover, and no inflater outlives a message).
    client_context_takeover: bool = False

    def __post_init__(self) -> None:
        checks = (
            (self.threshold >= 0, "threshold must be >= 0"),
            (0 <= self.level <= 9, "level must be 0 to 9"),
            (1 <= self.mem_level <= 9, "mem_level must be 1 to 9"),
            (9 <= self.server_max_window_bits <= 15, "server_max_window_bits must be 9 to 15"),
            (9 <= self.client_max_window_bits <= 15, "client_max_window_bits must be 9 to 15"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DeflateSettings: {message}")

    def with_changes(self, **changes: object) -> DeflateSettings:
        """A copy with `changes` (validated); equal settings give the same shared object."""
        return _interned(replace(self, **changes))  # type: ignore[arg-type]

    def for_rooms(self) -> DeflateSettings:
        """These settings without server context takeover: what a room broadcast needs so
        that one compressed frame serves every member (`wsapp.chat.hub`)."""
        return self.with_changes(server_context_takeover=False)


@functools.lru_cache(maxsize=64)
def _interned(settings: DeflateSettings) -> DeflateSettings:
    return settings


@dataclass(frozen=True)
class Agreement:
    """The permessage-deflate parameters of one connection, as the server answered them."""

    #: The server compresses every message on its own (no LZ77 window kept between them).
    server_no_context_takeover: bool
    #: The client compresses every message on its own: our inflater is per message.
    client_no_context_takeover: bool
    #: The window the server compresses with.
    server_max_window_bits: int
    #: The largest window the client may use: the window our inflater needs.
    client_max_window_bits: int
    #: The `Sec-WebSocket-Extensions` value of the 101 response.
    response: str
    #: Level, memLevel and threshold for the server's compressor.
    settings: DeflateSettings


Params = tuple[tuple[str, str | None], ...]


def parse_extensions(header: str) -> list[tuple[str, Params] | None]:
    """Every element of a `Sec-WebSocket-Extensions` value, in order (RFC 6455 9.1):
    `(name, ((param, value or None), ...))`, names lower-cased, quoted values unquoted;
    None for an element that does not parse (it is skipped, not fatal)."""
    return [_parse_element(element) for element in _split(header, ",") if element.strip()]


def negotiate(header: str | None, settings: DeflateSettings | None) -> Agreement | None:
    """The agreement for the first acceptable permessage-deflate offer in `header`, or None
    (declined: the handshake succeeds without the extension)."""
    if not header or settings is None or not settings.enabled:
        return None
    if len(header) <= _CACHED_HEADER:
        return _negotiate_cached(header, settings)
    return _negotiate(header, settings)


#: Offers up to this long are remembered (every browser sends the same short one, so
#: connections share one Agreement); longer ones are parsed each time.
_CACHED_HEADER = 512


@functools.lru_cache(maxsize=256)
def _negotiate_cached(header: str, settings: DeflateSettings) -> Agreement | None:
    return _negotiate(header, settings)


def _negotiate(header: str, settings: DeflateSettings) -> Agreement | None:
    for element in parse_extensions(header):
        if element is None or element[0] != EXTENSION:
            continue
        agreement = accept_offer(element[1], settings)
        if agreement is not None:
            return agreement
    return None


def accept_offer(params: Params, settings: DeflateSettings) -> Agreement | None:
    """The server's answer to one permessage-deflate offer, or None to decline it
    (RFC 7692 7: unknown or duplicate parameter, invalid value, unsupported configuration)."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAMETERS or name in seen:
            return None
        seen[name] = value
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if flag in seen and seen[flag] is not None:
            return None  # these two have no value (7.1.1)
    server_bits = settings.server_max_window_bits
    if "server_max_window_bits" in seen:
        offered = _WINDOW_BITS.get(seen["server_max_window_bits"] or "")
        if offered is None:
            return None  # a value is required (7.1.2.1)
        if offered == 8:
            return None  # zlib cannot compress with a 256-byte window
        server_bits = min(server_bits, offered)
    client_bits = 15  # what a client that cannot be limited may use
    answer_client_bits = "client_max_window_bits" in seen
    if answer_client_bits:
        raw = seen["client_max_window_bits"]
        offered = 15 if raw is None else _WINDOW_BITS.get(raw)
        if offered is None:
            return None
        client_bits = min(offered, settings.client_max_window_bits)
    server_nct = "server_no_context_takeover" in seen or not settings.server_context_takeover
    client_nct = "client_no_context_takeover" in seen or not settings.client_context_takeover
    parts = [EXTENSION]
    if server_nct:
        parts.append("server_no_context_takeover")
    if client_nct:
        parts.append("client_no_context_takeover")
    if server_bits < 15 or "server_max_window_bits" in seen:
        parts.append(f"server_max_window_bits={server_bits}")
    if answer_client_bits:
        parts.append(f"client_max_window_bits={client_bits}")
    return Agreement(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        # zlib inflates a window of 8 bits with 9 (a larger window is always safe).
        client_max_window_bits=max(9, client_bits),
        response="; ".join(parts),
        settings=settings,
    )


# --- header grammar -------------------------------------------------------------------


def _split(text: str, sep: str) -> list[str]:
    """Split at `sep` outside quoted strings (a backslash escapes inside quotes)."""
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == sep:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _unquote(value: str) -> str | None:
    """A quoted-string's content (RFC 7230 3.2.6), or None if it is not one."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return None
    out: list[str] = []
    chars = iter(value[1:-1])
    for char in chars:
        if char == "\\":
            char = next(chars, None)  # type: ignore[arg-type]
            if char is None:
                return None
        elif char == '"':
            return None
        out.append(char)
    return "".join(out)


def _parse_element(element: str) -> tuple[str, Params] | None:
    name, *raw_params = (part.strip(" \t") for part in _split(element, ";"))
    if not _TOKEN.fullmatch(name):
        return None
    params: list[tuple[str, str | None]] = []
    for raw in raw_params:
        key, eq, value = raw.partition("=")
        key = key.rstrip(" \t")
        if not _TOKEN.fullmatch(key):
            return None
        if not eq:
            params.append((key.lower(), None))
            continue
        value = value.lstrip(" \t")
        if value.startswith('"'):
            unquoted = _unquote(value)
            # RFC 6455 9.1: once unquoted, the value must still be a token.
            if unquoted is None or not _TOKEN.fullmatch(unquoted):
                return None
            value = unquoted
        elif not _TOKEN.fullmatch(value):
            return None
        params.append((key.lower(), value))
    return name.lower(), tuple(params)
