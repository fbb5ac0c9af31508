"""Control characters in header values (issue 13, item 9): 400, over a raw socket to a
real server in both modes. RFC 9110 5.5: field content is HTAB, SP, VCHAR and obs-text;
NUL, CR and the other CTLs make the message invalid."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import ServerProcess, running_server

from .rawhttp import exchange


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def server(request) -> Iterator[ServerProcess]:
    with running_server(request.param) as srv:
        yield srv


def _request(srv: ServerProcess, path: str, extra: bytes) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n".encode()
            + extra + b"\r\nConnection: close\r\n\r\n")


def _upgrade(srv: ServerProcess, extra: bytes) -> bytes:
    return (f"GET /echo HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n").encode() + extra + b"\r\n\r\n"


@pytest.mark.parametrize(
    "field",
    [b"X-Nul: a\x00b", b"Origin: http://x\x00", b"X-Cr: a\rb", b"X-Cr-End: ab\r",
     b"X-Esc: \x1b[2J", b"X-Del: a\x7f", b"User-Agent: a\x01b"],
)
def test_control_character_in_a_value_is_400(server, field):
    assert exchange(server, _request(server, "/healthz", field)).status == 400
    assert exchange(server, _upgrade(server, field)).status == 400


def test_htab_and_obs_text_are_accepted(server):
    assert exchange(server, _request(server, "/healthz", b"X-Ok: a\tb \x80\xff")).status == 200
    assert exchange(server, _upgrade(server, b"X-Ok: a\tb \x80\xff")).status == 101
    # The server is unharmed by the refusals.
    assert exchange(server, _request(server, "/healthz", b"X-Ok: fine")).status == 200
