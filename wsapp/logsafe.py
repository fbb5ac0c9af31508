r"""Peer-supplied text made fit for a log line (issue 13): one line per event, no terminal
escapes, no secrets. Pure functions; no I/O.

Every string a peer chose (a path, a header, a close reason, a forwarded address) goes
through `escape` before it is logged: a decoded ``%0a`` in a path would otherwise start a
forged log line, ESC or U+009B would drive the terminal of whoever tails the log, and
U+202E would reorder what they read. Query strings and request lines go through
`redact_query` / `redact_target` first: chat tokens travel as ``?token=``, and a refused
handshake's access-log line would otherwise carry a working credential.

For example the path ``/chat/a<LF>FAKE`` is logged as ``/chat/a\x0aFAKE``, an Origin
with ESC as ``...\x1b[31m``, U+202E as ``\u202e``, and ``?name=ann&token=eyJy`` as
``?name=ann&token=[redacted]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "REDACTED",
    "access_log_view",
    "escape",
    "is_secret_name",
    "redact_query",
    "redact_target",
    "redact_text",
    "safe_environ",
]

#: What a secret's value becomes in a log line.
REDACTED = "[redacted]"

#: Query parameters whose values are credentials (lower-cased, after percent-decoding);
#: names ending in one of `_SECRET_SUFFIXES` count too (``auth_token``, ``x-api-key``).
SECRET_NAMES = frozenset({
    "token", "access_token", "id_token", "refresh_token", "api_key", "apikey", "key",
    "secret", "password", "passwd", "pwd", "auth", "authorization", "signature", "sig",
    "jwt", "session", "sessionid", "code",
})
_SECRET_SUFFIXES = ("token", "_key", "-key", "secret", "password")

#: Request headers whose whole value is a credential.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})

DEFAULT_LIMIT = 200


class _EscapeTable:
    """`str.translate` table: printable ASCII stays (LookupError), except ``"`` and ``\\``
    when `quotes`; everything else becomes ``\\xNN`` (up to U+00FF), ``\\uNNNN`` or
    ``\\UNNNNNNNN``. The ``\\xNN`` form is nginx's ``escape=default`` for access logs."""

    __slots__ = ("quotes",)

    def __init__(self, quotes: bool) -> None:
        self.quotes = quotes

    def __getitem__(self, cp: int) -> str:
        if 0x20 <= cp < 0x7F and not (self.quotes and (cp == 0x22 or cp == 0x5C)):
            raise LookupError
        if cp <= 0xFF:
            return f"\\x{cp:02x}"
        if cp <= 0xFFFF:
            return f"\\u{cp:04x}"
        return f"\\U{cp:08x}"


_TABLE = _EscapeTable(quotes=True)
_TABLE_KEEP_QUOTES = _EscapeTable(quotes=False)


def escape(value: object, limit: int = DEFAULT_LIMIT, *, quotes: bool = True) -> str:
    """`value` as printable ASCII with no ``"`` or ``\\`` left unescaped, its first `limit`
    characters kept and a ``...[N chars]`` marker (N: the original length) after a cut.

    str as is; bytes as Latin-1 (so each byte >= 0x80 shows as ``\\xNN``); None as ``-``;
    anything else through `str`. ``quotes=False`` leaves ``"`` and ``\\`` alone, for text
    that is already a `repr` (escaping it again would only double its backslashes)."""
    if type(value) is str:
        text = value
        if len(text) <= limit and text.isascii() and text.isprintable() and (
            not quotes or ('"' not in text and "\\" not in text)
        ):
            return text  # the common case: nothing to do
    elif value is None:
        return "-"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("latin-1")
    else:
        text = str(value)
    cut = text[:limit].translate(_TABLE if quotes else _TABLE_KEEP_QUOTES)
    return cut if len(text) <= limit else f"{cut}...[{len(text)} chars]"


def is_secret_name(name: str) -> bool:
    """Whether a query parameter named `name` carries a credential (see `SECRET_NAMES`)."""
    try:
        lowered = unquote_plus(name).strip().lower()
    except ValueError:
        lowered = name.lower()
    return lowered in SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES)


def redact_query(query: str) -> str:
    """`query` (no ``?``) with the value of every secret parameter replaced by REDACTED;
    everything else, separators and order included, kept as it came."""
    if "=" not in query:
        return query
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        if eq and value and is_secret_name(name):
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


def redact_target(target: str) -> str:
    """A request target (``/path?query``) or a whole request line (``GET /p?q HTTP/1.1``)
    with its query's secrets redacted (`redact_query`)."""
    path, mark, rest = target.partition("?")
    if not mark:
        return target
    query, space, tail = rest.partition(" ")  # a request line: the version follows
    return f"{path}?{redact_query(query)}{space}{tail}"


_SECRET_IN_TEXT = re.compile(r"(?i)([?&;\s'\"]|^)([\w.%-]+)=([^&;\s'\"]+)")


def redact_text(text: str) -> str:
    """Free text (an error message quoting a request line) with ``name=value`` pairs of
    secret names redacted wherever they appear."""
    if "=" not in text:
        return text

    def hide(m: re.Match[str]) -> str:
        lead, name, value = m.groups()
        return f"{lead}{name}={REDACTED}" if is_secret_name(name) else m.group(0)

    return _SECRET_IN_TEXT.sub(hide, text)


#: Environ keys holding a request target or query: redacted, and given a longer limit.
_TARGET_KEYS = frozenset({"RAW_URI", "REQUEST_URI"})
_QUERY_KEYS = frozenset({"QUERY_STRING"})
_TARGET_LIMIT = 1000


def safe_environ(environ: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a WSGI environ as an access log may print it: every str escaped, query
    strings and targets redacted, credential headers (`SECRET_HEADERS`) replaced."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if isinstance(value, str):
            if key in _QUERY_KEYS:
                value = escape(redact_query(value), _TARGET_LIMIT)
            elif key in _TARGET_KEYS or key == "PATH_INFO":
                value = escape(redact_target(value), _TARGET_LIMIT)
            elif key.startswith("HTTP_") and key[5:].replace("_", "-").lower() in SECRET_HEADERS:
                value = REDACTED
            else:
                value = escape(value)
        out[key] = value
    return out


class _SafeHeaders:
    """What gunicorn's access log reads of the request headers (`items`), made safe."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = [
            (escape(k), REDACTED if k.lower() in SECRET_HEADERS else escape(v)) for k, v in items
        ]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


@contextmanager
def access_log_view(handler: Any):
    """While an access-log line is written: the handler's request line, environ and
    headers as the line may show them (escaped and redacted); restored afterwards.

    pywsgi's `format_request` prints ``handler.requestline``; gunicorn's access log
    (`PyWSGIHandler.log_request`) prints atoms taken from ``handler.environ`` and
    ``handler.headers``, so both serving modes log from the same three attributes."""
    saved = {
        name: handler.__dict__[name]
        for name in ("requestline", "environ", "headers")
        if name in handler.__dict__
    }
    try:
        if isinstance(saved.get("requestline"), str):
            handler.requestline = escape(redact_target(saved["requestline"]), _TARGET_LIMIT)
        if isinstance(saved.get("environ"), Mapping):
            handler.environ = safe_environ(saved["environ"])
        headers = saved.get("headers")
        if headers is not None and hasattr(headers, "items"):
            handler.headers = _SafeHeaders(headers.items())
        yield
    finally:
        handler.__dict__.update(saved)
