"""Opening-handshake rules (RFC 6455 4.2) as pure functions over the WSGI environ.

gevent-websocket answers a malformed key with a 500 and an HTTP/1.0 upgrade with the
invented status "402 Bad Request"; here every refusal is a proper 4xx with a reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from wsapp.protocol.deflate import Agreement, DeflateSettings, negotiate

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSION = "13"
# RFC 6455 4.1 and 11.3.4: a subprotocol name is a token (RFC 9110 5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class Rejection:
    """An HTTP answer that refuses an upgrade instead of switching protocols."""

    status: str
    reason: str
    headers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def code(self) -> int:
        return int(self.status.split(" ", 1)[0])


def _tokens(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",") if item.strip()}


def wants_websocket(environ: Mapping[str, str]) -> bool:
    """The same test Werkzeug uses to route to `websocket=True` rules, so the two agree."""
    return environ.get("HTTP_UPGRADE", "").lower() == "websocket" and "upgrade" in _tokens(
        environ.get("HTTP_CONNECTION", "")
    )


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def check_handshake(environ: Mapping[str, str], request_version: str) -> Rejection | None:
    """None if the upgrade request is valid, else the HTTP answer refusing it."""
    if environ.get("REQUEST_METHOD") != "GET":
        return Rejection(
            "405 Method Not Allowed", "WebSocket upgrade requires GET", (("Allow", "GET"),)
        )
    if request_version != "HTTP/1.1":
        return Rejection(
            "400 Bad Request", f"WebSocket upgrade requires HTTP/1.1, got {request_version}"
        )
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip()
    if version != SUPPORTED_VERSION:
        what = (
            f"unsupported Sec-WebSocket-Version {version!r}"
            if version
            else "missing Sec-WebSocket-Version"
        )
        return Rejection("400 Bad Request", what, (("Sec-WebSocket-Version", SUPPORTED_VERSION),))
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    if not key:
        return Rejection("400 Bad Request", "missing Sec-WebSocket-Key")
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return Rejection("400 Bad Request", "Sec-WebSocket-Key is not valid base64")
    if len(raw) != 16:
        return Rejection("400 Bad Request", "Sec-WebSocket-Key must encode 16 bytes")
    return None


def negotiate_extensions(
    environ: Mapping[str, str], deflate: DeflateSettings | None
) -> tuple[Agreement | None, tuple[tuple[str, str], ...]]:
    """Extensions for the 101: permessage-deflate (RFC 7692) when the client offers it and
    `deflate` allows it, as (agreement, response headers); (None, ()) declines it (the
    handshake goes on without extensions: RFC 6455 9.1)."""
    agreement = negotiate(environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS"), deflate)
    if agreement is None:
        return None, ()
    return agreement, (("Sec-WebSocket-Extensions", agreement.response),)


def response_extras(
    environ: Mapping[str, str], subprotocol: str | None, deflate: DeflateSettings | None
) -> tuple[Agreement | None, tuple[tuple[str, str], ...]]:
    """What the 101 carries beyond the RFC 6455 four, for every serving mode: the chosen
    subprotocol and the extensions agreed on; with the permessage-deflate agreement (None
    if declined) for the session."""
    agreement, extensions = negotiate_extensions(environ, deflate)
    return agreement, subprotocol_header(subprotocol) + extensions


def upgrade_response(key: str, extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The complete 101 response, written once by the handler when the view accepts."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
        *(f"{name}: {value}" for name, value in extra_headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- subprotocols (RFC 6455 1.9, 4.2.2) ---------------------------------------------------


def is_subprotocol_name(name: str) -> bool:
    """Whether `name` may be a subprotocol: a non-empty token (RFC 6455 4.1, 11.3.4)."""
    return isinstance(name, str) and _TOKEN.fullmatch(name) is not None


def offered_subprotocols(environ: Mapping[str, str]) -> list[str]:
    """The subprotocols the client offered, in its order: `Sec-WebSocket-Protocol` is a
    comma list and may be repeated (the WSGI server joins repeated headers with commas)."""
    raw = environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def select_subprotocol(offered: Iterable[str], supported: Iterable[str]) -> str | None:
    """The first of the server's `supported` subprotocols (its order of preference) that the
    client `offered`, compared exactly; None when none matches (RFC 6455 4.2.2: the response
    then carries no Sec-WebSocket-Protocol, and a client that needs one fails the connection)."""
    offers = set(offered)
    for name in supported:
        if name in offers:
            return name
    return None


def subprotocol_header(chosen: str | None) -> tuple[tuple[str, str], ...]:
    """The 101's `Sec-WebSocket-Protocol` header for `chosen` (none for None). ValueError
    for a name that is not a token, so nothing but a token is ever written into the head."""
    if chosen is None:
        return ()
    if not is_subprotocol_name(chosen):
        raise ValueError(f"subprotocol {chosen!r} is not a token (RFC 6455 4.1)")
    return (("Sec-WebSocket-Protocol", chosen),)
