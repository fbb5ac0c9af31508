"""The header block of an HTTP request, parsed without the `email` package (no I/O here).

pywsgi parses request headers with `http.client.parse_headers`, i.e. the `email` parser,
several times slower than this module on a handshake head (figures in docs/performance.md,
`python -m bench.open_costs`). It is also lax where a server should not be: a line
without a colon silently ends the headers (the rest is dropped), whitespace before the
colon is accepted, and an obs-fold continuation stays inside the value as CRLF + space.
`parse_header_lines` applies RFC 9112 instead: 400 for a malformed line
(`BadHeaderLine`), for a control character other than HTAB in a value (NUL, a bare CR,
ESC: RFC 9110 5.5) and for a second Host line (RFC 9112 3.2), obs-fold replaced by a space
(RFC 9112 5.2), values trimmed.
`RequestHeaders` offers exactly what pywsgi and our handler read from `handler.headers`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# RFC 9110 5.6.2: field-name = token
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 5.5: a field value is HTAB, SP, VCHAR and obs-text; any other CTL (NUL, CR, LF,
# ESC, DEL...) is invalid, and a server may reject the message: 400.
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class BadHeaderLine(ValueError):
    """A request header line that is not `name: value` (answered 400)."""


class RequestHeaders:
    """Parsed request headers with the interface pywsgi uses (`get`, `getheader`, `headers`,
    `typeheader`, `status`, `del`). Names keep their case; lookups ignore it."""

    __slots__ = ("_items", "status")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self.status = ""  # pywsgi's "something went wrong while parsing" field: never set here

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name` (case-insensitive), like `email.message.Message.get`."""
        wanted = name.lower()
        for key, value in self._items:
            if key.lower() == wanted:
                return value
        return default

    getheader = get

    def __delitem__(self, name: str) -> None:
        wanted = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != wanted]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    @property
    def headers(self) -> Iterator[str]:
        """One `Name: value\\r\\n` line per header: what pywsgi's `get_environ` iterates."""
        for key, value in self._items:
            yield f"{key}: {value}\r\n"

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")


def parse_header_lines(lines: list[bytes]) -> RequestHeaders:
    """Parse the raw header lines of a request (each ending in CRLF or LF; the blank line
    that ends the block may be included). Raises BadHeaderLine for a malformed line."""
    items: list[tuple[str, str]] = []
    seen_host = False
    for raw in lines:
        # One line ending only (CRLF, or a bare LF): a CR before it is a CTL in the value.
        line = raw[:-2] if raw[-2:] == b"\r\n" else raw[:-1] if raw[-1:] == b"\n" else raw
        if not line:
            break
        if _CTL.search(line) is not None:
            raise BadHeaderLine(f"control character in request header line {line[:80]!r}")
        if line[:1] in (b" ", b"\t"):  # obs-fold: continues the previous value (RFC 9112 5.2)
            if not items:
                raise BadHeaderLine("header block starts with a continuation line")
            name, value = items[-1]
            more = line.strip(b" \t").decode("latin-1")
            items[-1] = (name, f"{value} {more}" if value else more)
            continue
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            # no colon, an empty name, or whitespace before the colon (RFC 9112 5.1: 400)
            raise BadHeaderLine(f"malformed request header line {line[:80]!r}")
        if name.lower() == b"host":
            if seen_host:  # the environ would join them: "a,b" (RFC 9112 3.2: 400)
                raise BadHeaderLine("more than one Host header")
            seen_host = True
        items.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return RequestHeaders(items)
