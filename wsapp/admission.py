"""Who may open a WebSocket: pure functions over headers, settings and counts (issue 6).

Used before the upgrade by `WsappHandler` (origin, client address, connection limits;
the Host of every request, HTTP or WebSocket) and by the chat view (tokens,
per-connection message rate). Each refusal is a `Rejection`: the HTTP status and a
reason the handler or view sends as plain HTTP.

    400  Host missing (HTTP/1.1), malformed, or not allowed (WSAPP_ALLOWED_HOSTS)
    403  Origin not allowed (cross-site WebSocket hijacking), or missing when required
    401  chat token missing, invalid, expired, or not for this room
    401/403  HTTP API read without the right to join the room (`api_read_access`)
    429  too many connections from this client IP  (WSAPP_MAX_CONN_PER_IP)
    503  too many connections in this process     (WSAPP_MAX_CONNECTIONS)
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from wsapp import hosts
from wsapp.logsafe import escape
from wsapp.protocol.handshake import Rejection
from wsapp.ratelimit import TokenBucket
from wsapp.settings import Settings
from wsapp.tokens import ANY_ROOM, TokenError, verify_token

__all__ = [
    "ReadAccess",
    "Rejection",
    "api_read_access",
    "check_limits",
    "check_origin",
    "chat_token_name",
    "client_ip",
    "forwarded_value",
    "host_rejection",
    "message_limiter",
    "normalize_origin",
    "origin_rejection",
    "public_bind_warning",
    "request_host",
    "request_scheme",
]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}

BAD_REQUEST = "400 Bad Request"
FORBIDDEN = "403 Forbidden"
UNAUTHORIZED = "401 Unauthorized"
TOO_MANY = "429 Too Many Requests"
UNAVAILABLE = "503 Service Unavailable"


# --- addresses behind proxies -----------------------------------------------------------


def forwarded_value(header: str | None, hops: int) -> str | None:
    """The value `hops` entries from the right of an X-Forwarded-* list, as ProxyFix reads it.

    With N trusted proxies each appends the address it saw, so the client is the Nth
    entry from the right; anything further left was written by the client itself and
    cannot be trusted. None when the header is absent or shorter than `hops`."""
    if not header or hops <= 0:
        return None
    values = [v.strip() for v in header.split(",")]
    if len(values) < hops:
        return None
    return values[-hops] or None


def client_ip(environ: Mapping[str, str], peer_ip: str, trusted_proxies: int) -> str:
    """The address limits and logs use: X-Forwarded-For through N trusted proxies, else the peer."""
    if trusted_proxies > 0:
        forwarded = forwarded_value(environ.get("HTTP_X_FORWARDED_FOR"), trusted_proxies)
        if forwarded:
            return escape(forwarded, 64)  # the client's own text when a hop is missing
    return peer_ip


def request_host(environ: Mapping[str, str], trusted_proxies: int) -> str:
    """The Host the client asked for (X-Forwarded-Host through trusted proxies)."""
    if trusted_proxies > 0:
        forwarded = forwarded_value(environ.get("HTTP_X_FORWARDED_HOST"), trusted_proxies)
        if forwarded:
            return forwarded
    return environ.get("HTTP_HOST", "")


def request_scheme(environ: Mapping[str, str], trusted_proxies: int) -> str:
    """``http`` or ``https`` as the client used it: X-Forwarded-Proto through trusted
    proxies, else the server's own (``wsgi.url_scheme``). ``ws``/``wss`` count as
    ``http``/``https``; anything else is returned lower-cased and matches no Origin."""
    scheme = None
    if trusted_proxies > 0:
        scheme = forwarded_value(environ.get("HTTP_X_FORWARDED_PROTO"), trusted_proxies)
    scheme = (scheme or environ.get("wsgi.url_scheme") or "http").lower()
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


# --- host (DNS rebinding) ---------------------------------------------------------------


def host_rejection(
    environ: Mapping[str, str], settings: Settings, listener: object
) -> Rejection | None:
    """400 for a request whose Host is missing (HTTP/1.1, RFC 9112 3.2), malformed (RFC 9110
    7.2), or not allowed (`hosts.effective_patterns`: the loopback names, then
    `WSAPP_ALLOWED_HOSTS`, or any host on a listener others reach when it is empty;
    `listener` is the listening socket's address). With trusted proxies the Host checked
    against the list is X-Forwarded-Host (the proxy's own Host may name the upstream)."""
    raw = environ.get("HTTP_HOST")
    if not raw:
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.1":
            return Rejection(BAD_REQUEST, "missing Host header")
        return None  # HTTP/1.0 may omit it; a browser never does, so nothing to rebind
    forwarded = None
    if settings.trusted_proxies > 0:
        forwarded = forwarded_value(environ.get("HTTP_X_FORWARDED_HOST"), settings.trusted_proxies)
    verdict = _host_verdict
    if len(raw) + len(forwarded or "") > _CACHED_HOST_CHARS:  # the cache holds small keys only
        verdict = _host_verdict.__wrapped__
    why = verdict(raw, forwarded, settings.allowed_hosts, listener)
    return None if why is None else Rejection(BAD_REQUEST, why)


_CACHED_HOST_CHARS = 300


@lru_cache(maxsize=256)
def _host_verdict(
    raw: str, forwarded: str | None, allowed: tuple[str, ...], listener: object
) -> str | None:
    """Why a Host (and X-Forwarded-Host) is refused, or None. Cached: a server sees few
    distinct names, and a flood of new ones only evicts entries."""
    name, value = "Host", raw
    try:
        parsed = hosts.parse_host(raw)
        if forwarded:
            name, value = "X-Forwarded-Host", forwarded
            parsed = hosts.parse_host(forwarded)
    except hosts.HostError as exc:
        return f"malformed {name} header: {exc}"
    if hosts.allowed(*parsed, allowed, listener):
        return None
    return f"host '{escape(value)}' not allowed (WSAPP_ALLOWED_HOSTS)"


def _listener_text(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def public_bind_warning(settings: Settings, listener: object) -> str | None:
    """The start-up warning for a listener others can reach that serves any Host and
    checks Origins only against that Host (a DNS-rebinding page passes both); else None."""
    if settings.allowed_hosts or settings.allowed_origins or hosts.is_local_listener(listener):
        return None
    return (
        f"listening on {_listener_text(listener)} with neither WSAPP_ALLOWED_HOSTS nor "
        "WSAPP_ALLOWED_ORIGINS: every Host is served and a DNS-rebinding page passes the "
        "same-origin check; set WSAPP_ALLOWED_HOSTS to the names clients use"
    )


# --- origin -----------------------------------------------------------------------------


def _split_host_port(netloc: str) -> tuple[str, str]:
    netloc = netloc.strip().lower()
    if netloc.startswith("["):  # [v6]:port
        host, _, rest = netloc.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else ""
    host, sep, port = netloc.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return netloc, ""


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, default port dropped; None if not a URL origin."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc or "@" in parts.netloc:
        return None
    host, port = _split_host_port(parts.netloc)
    if not host or port == _DEFAULT_PORTS.get(scheme):
        port = ""
    return f"{scheme}://{host}{':' + port if port else ''}"


def _same_origin(origin: str, host_header: str, scheme: str) -> bool:
    """Origin is ``scheme://Host`` (default ports ignored on both sides): its scheme the
    request's (`request_scheme`), its host[:port] the Host header."""
    normalized = normalize_origin(origin)
    if normalized is None or not host_header:
        return False
    o_scheme, _, netloc = normalized.partition("://")
    if o_scheme != scheme or scheme not in ("http", "https"):
        return False
    o_host, o_port = _split_host_port(netloc)
    h_host, h_port = _split_host_port(host_header)
    default = _DEFAULT_PORTS.get(scheme)
    return o_host == h_host and (o_port or default) == (h_port or default)


def check_origin(
    origin: str | None,
    host: str,
    allowed: tuple[str, ...] = (),
    require_origin: bool = False,
    scheme: str = "http",
) -> str | None:
    """None if a handshake with this Origin may proceed, else why not.

    - no Origin header (non-browser clients): allowed unless `require_origin`;
    - `allowed` empty: same origin, i.e. the Origin is `scheme` (the request's, ``http`` or
      ``https``) ``://`` the request's Host (``https://`` to an http server, or
      ``foo://``, never matches);
    - `allowed` lists origins (``https://app.example.com``) or ``*`` (any origin).
    """
    if origin is None or not origin.strip():
        return "missing Origin header" if require_origin else None
    if "*" in allowed:
        return None
    if not allowed:
        if _same_origin(origin, host, scheme):
            return None
        return f"cross-origin request from '{escape(origin)}'"
    normalized = normalize_origin(origin)
    if normalized is not None and normalized in {normalize_origin(a) for a in allowed}:
        return None
    return f"origin '{escape(origin)}' not allowed"


def origin_rejection(environ: Mapping[str, str], settings: Settings) -> Rejection | None:
    why = check_origin(
        environ.get("HTTP_ORIGIN"),
        request_host(environ, settings.trusted_proxies),
        settings.allowed_origins,
        settings.require_origin,
        request_scheme(environ, settings.trusted_proxies),
    )
    return None if why is None else Rejection(FORBIDDEN, why)


# --- connection limits ------------------------------------------------------------------


def check_limits(ip_count: int, total: int, settings: Settings) -> Rejection | None:
    """Refuse one more connection when the client IP or the process is at its limit.

    `ip_count` and `total` are the connections already admitted (before this one)."""
    if total >= settings.max_connections:
        return Rejection(
            UNAVAILABLE, "server at connection capacity, try again later", (("Retry-After", "5"),)
        )
    if settings.max_conn_per_ip and ip_count >= settings.max_conn_per_ip:
        why = f"too many connections from this address (limit {settings.max_conn_per_ip})"
        return Rejection(TOO_MANY, why, (("Retry-After", "5"),))
    return None


# --- chat: tokens and message rate ------------------------------------------------------


def chat_token_name(
    settings: Settings, room: str, token: str | None, now: float | None = None
) -> str | Rejection | None:
    """Admission of a chat handshake by token, for the chat view to call before `accept()`.

    Returns the name bound to a valid token (it replaces ``?name=``), None when tokens are
    not in use for this request (no WSAPP_SECRET, or optional and absent), or a 401
    `Rejection` for a missing (when WSAPP_REQUIRE_TOKEN=1), invalid, expired or
    wrong-room token."""
    if not settings.secret:
        return None
    if not token:
        return Rejection(UNAUTHORIZED, "token required") if settings.require_token else None
    try:
        claims = verify_token(settings, token, now)
    except TokenError as exc:
        return Rejection(UNAUTHORIZED, exc.reason)
    if not claims.allows(room):
        return Rejection(UNAUTHORIZED, "token not valid for this room")
    return claims.name


@dataclass(frozen=True)
class ReadAccess:
    """The rooms an HTTP API caller may read: `rooms` None means every room."""

    rooms: frozenset[str] | None = None

    def allows(self, room: str) -> bool:
        return self.rooms is None or room in self.rooms


_TOKEN_REQUIRED = (
    "token required: send Authorization: Bearer <room token or WSAPP_API_TOKEN>, or ?token="
)


def api_read_access(
    settings: Settings, credential: str | None, now: float | None = None
) -> ReadAccess | Rejection:
    """Which rooms the HTTP API may show a caller presenting `credential` (issue 13).

    Reading a room over HTTP needs the same right as joining it: with WSAPP_REQUIRE_TOKEN=1
    a chat token admits the rooms it lists (``*``: all), the API token (WSAPP_API_TOKEN)
    admits every room, and no credential or an invalid one is a 401. Without required
    tokens anyone may join any room, so every room is readable and credentials are
    ignored."""
    if not settings.require_token:
        return ReadAccess()
    if not credential:
        return Rejection(UNAUTHORIZED, _TOKEN_REQUIRED)
    api_token = settings.api_token
    if api_token and hmac.compare_digest(credential.encode("utf-8"), api_token.encode("utf-8")):
        return ReadAccess()
    try:
        claims = verify_token(settings, credential, now)
    except TokenError as exc:
        return Rejection(UNAUTHORIZED, exc.reason)
    return ReadAccess(None if ANY_ROOM in claims.rooms else frozenset(claims.rooms))


def message_limiter(settings: Settings) -> TokenBucket | None:
    """A per-connection bucket for chat messages (WSAPP_RATE_LIMIT/WSAPP_RATE_BURST); None if 0."""
    if settings.rate_limit <= 0:
        return None
    return TokenBucket(settings.rate_limit, settings.rate_burst)


RATE_LIMIT_CLOSE_CODE = 1008
RATE_LIMIT_CLOSE_REASON = "rate limit exceeded"
