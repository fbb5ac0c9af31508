"""Servers and raw clients for the security tests (issue 6).

Every server is a real subprocess on loopback with short timeouts so the whole
directory runs in well under a minute. Servers are module- or session-scoped and
shared by the tests that do not change their state.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support import rawws
from tests.support.rawws import HandshakeFailed, Op, RawWS
from tests.support.servers import ServerProcess, running_server

TIMEOUT = 2.0


def connect(
    srv: ServerProcess,
    path: str = "/echo",
    headers: dict[str, str] | None = None,
    source: str | None = None,
    timeout: float = TIMEOUT,
) -> RawWS:
    """RawWS.connect, optionally from another loopback source address (127.0.0.x)."""
    if source is None:
        return RawWS.connect(srv.url(path), headers=headers, timeout=timeout)
    key = rawws.new_key()
    sock = socket.create_connection(
        (srv.host, srv.port), timeout=timeout, source_address=(source, 0)
    )
    try:
        sock.sendall(rawws.handshake_request(srv.host, srv.port, path, key=key, headers=headers))
        buf = bytearray()
        resp = rawws._parse_head(rawws._read_http_head(sock, buf, time.monotonic() + timeout))
        if resp.status != 101:
            resp.body = bytes(buf)
            raise HandshakeFailed(resp)
    except BaseException:
        sock.close()
        raise
    return RawWS(sock, resp, key, bytes(buf))


def handshake_status(
    srv: ServerProcess, path: str = "/echo", headers: dict[str, str] | None = None, **kw
) -> int:
    """Status of an upgrade attempt (101, or the refusal code); the socket is closed after."""
    try:
        ws = connect(srv, path, headers=headers, **kw)
    except HandshakeFailed as exc:
        return exc.response.status
    ws.close()
    return 101


def refusal(
    srv: ServerProcess,
    path: str = "/echo",
    headers: dict[str, str] | None = None,
    source: str | None = None,
    timeout: float = TIMEOUT,
) -> rawws.HTTPResponse:
    """The HTTP answer to an upgrade request that must be refused (body read in full)."""
    request = rawws.handshake_request(srv.host, srv.port, path, headers=headers)
    deadline = time.monotonic() + timeout
    with socket.create_connection(
        (srv.host, srv.port), timeout=timeout, source_address=(source, 0) if source else None
    ) as sock:
        sock.sendall(request)
        buf = bytearray()
        resp = rawws._parse_head(rawws._read_http_head(sock, buf, deadline))
        assert resp.status != 101, f"handshake to {path} with {headers} was accepted"
        want = int(resp.header("content-length") or 0)
        while len(buf) < want and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        resp.body = bytes(buf)
        return resp


def http_get(srv: ServerProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(srv.http_url(path), timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def connections(srv: ServerProcess) -> int:
    return json.loads(http_get(srv, "/healthz")[1])["connections"]


def wait_connections(srv: ServerProcess, want: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while (n := connections(srv)) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"server has {n} connections, expected {want}")
        time.sleep(0.05)


def chat_events(ws: RawWS, until: str, timeout: float = TIMEOUT) -> list[dict]:
    """Read chat events until one of type `until` arrives (inclusive)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        op, data = ws.recv_message(max(0.0, deadline - time.monotonic()))
        assert op == Op.TEXT
        event = json.loads(data)
        seen.append(event)
        if event.get("type") == until:
            return seen


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


@contextlib.contextmanager
def _server(mode: str = "serve", **env: str) -> Iterator[ServerProcess]:
    with running_server(mode, env={**env}) as srv:
        yield srv


@pytest.fixture(scope="session")
def hostile_server() -> Iterator[ServerProcess]:
    """Defaults, except a 1 s handshake timeout (slowloris tests)."""
    with _server(WSAPP_HANDSHAKE_TIMEOUT="1") as srv:
        yield srv


@pytest.fixture(scope="session")
def strict_server() -> Iterator[ServerProcess]:
    """An origin list, Origin required, tokens required, a small rate limit."""
    with _server(
        WSAPP_ALLOWED_ORIGINS="https://app.example.com, http://localhost:8080",
        WSAPP_REQUIRE_ORIGIN="1",
        WSAPP_SECRET="test-secret-not-for-production",
        WSAPP_REQUIRE_TOKEN="1",
        WSAPP_RATE_LIMIT="5",
        WSAPP_RATE_BURST="5",
    ) as srv:
        yield srv


@pytest.fixture(scope="session")
def gunicorn_workers() -> Iterator[ServerProcess]:
    """gunicorn with two worker processes (multiprocess metrics) and a 1 s handshake timeout."""
    from tests.support.redis_server import shared_redis

    env = {
        "WSAPP_HANDSHAKE_TIMEOUT": "1",
        "WSAPP_REDIS_URL": shared_redis().url,
        "WSAPP_WORKERS": "2",
    }
    with running_server("gunicorn", env=env) as srv:
        yield srv


STRICT_ORIGIN = {"Origin": "https://app.example.com"}


def token_for(
    srv: ServerProcess, rooms: list[str], name: str, ttl: float = 60, now: float | None = None
) -> str:
    from wsapp.settings import Settings
    from wsapp.tokens import issue_token

    settings = Settings.from_env({k: v for k, v in srv.env.items() if k.startswith("WSAPP_")})
    return issue_token(settings, rooms=rooms, name=name, ttl=ttl, now=now)


@pytest.fixture
def bystander(hostile_server) -> Iterator[RawWS]:
    """An echo client that must keep working while hostile clients do their worst."""
    ws = connect(hostile_server)
    ws.echo("before")
    yield ws
    ws.echo("after")
    ws.close()


__all__ = ["os", "Op"]
