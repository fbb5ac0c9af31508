"""Raw HTTP/1.x requests over a loopback socket, byte for byte (no client library fixes
up a missing or malformed Host), and the parsed answer."""

from __future__ import annotations

from tests.support import rawws
from tests.support.servers import ServerProcess

#: `host=SERVER`: the server's own ``127.0.0.1:PORT``; `host=None`: no Host line at all.
SERVER = "\0server"


def exchange(srv: ServerProcess, request: bytes) -> rawws.HTTPResponse:
    return rawws.http_exchange(srv.host, srv.port, request, timeout=3.0)


def _host(srv: ServerProcess, host: str) -> str:
    return f"{srv.host}:{srv.port}" if host == SERVER else host


def get(
    srv: ServerProcess,
    path: str,
    host: str | None = SERVER,
    version: str = "HTTP/1.1",
    headers: dict[str, str] | None = None,
) -> rawws.HTTPResponse:
    """A plain GET with the given Host and extra headers."""
    lines = [f"GET {path} {version}"]
    if host is not None:
        lines.append(f"Host: {_host(srv, host)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append("Connection: close")
    return exchange(srv, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def upgrade(
    srv: ServerProcess,
    path: str = "/echo",
    host: str | None = SERVER,
    headers: dict[str, str] | None = None,
) -> rawws.HTTPResponse:
    """A WebSocket handshake with the given Host and extra headers."""
    hdrs = dict(headers or {})
    if host is not None:
        hdrs["Host"] = _host(srv, host)
    omit = ("Host",) if host is None else ()
    return exchange(srv, rawws.handshake_request(srv.host, srv.port, path, headers=hdrs, omit=omit))
