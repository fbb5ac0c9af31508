"""WebSocket URLs: accept what users type, send what servers expect.

``http://`` and ``https://`` become ``ws://`` and ``wss://`` (the same origin, RFC 6455
section 3), a URL without a scheme gets ``ws://``, characters that may not appear in a
request target (a space in a room name) are percent-encoded (RFC 3986 section 2.1), and
query parameters are set with proper encoding. Anything else is an :class:`InvalidURL`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .errors import InvalidURL

__all__ = [
    "CLIENT_ID_RE", "display_url", "is_chat_url", "normalize_url", "query_param", "with_query",
]

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
#: What a path may keep as is: RFC 3986 pchar and "/", plus "%" of existing escapes.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_HAS_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: ``?client=`` values wsapp accepts (docs/protocol.md, "Client id").
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def normalize_url(url: str) -> str:
    """`url` as a ``ws://`` or ``wss://`` URL with an encoded path; raises InvalidURL.

    >>> normalize_url("http://localhost:8000/chat/my room")
    'ws://localhost:8000/chat/my%20room'
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidURL("no URL given: expected ws://HOST[:PORT]/PATH")
    text = url.strip()
    if not _HAS_SCHEME.match(text):
        text = "ws://" + text.lstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port  # validates the port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise InvalidURL(
            f"unsupported scheme {parts.scheme!r} in {url!r}: use ws://, wss://, http:// or https://"
        )
    if not parts.hostname:
        raise InvalidURL(f"no host in {url!r}: expected ws://HOST[:PORT]/PATH")
    if any(ch.isspace() for ch in parts.netloc):
        raise InvalidURL(f"invalid host in {url!r}")
    if port == 0:
        raise InvalidURL(f"invalid port 0 in {url!r}")
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def with_query(url: str, **params: str | None) -> str:
    """`url` with query parameters set (a value of None removes the parameter)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for key, value in params.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def query_param(url: str, key: str) -> str | None:
    """The value of query parameter `key` in `url` (None when absent or empty)."""
    for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if k == key:
            return v or None
    return None


def is_chat_url(url: str) -> bool:
    """True for wsapp chat rooms (``/chat/<room>``)."""
    return urlsplit(url).path.startswith("/chat/")


def display_url(url: str) -> str:
    """`url` for messages and logs: without its query (it may hold a token)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))
