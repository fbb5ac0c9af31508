"""Host and Origin an attacker controls (issue 13, item 5), against real servers.

After DNS rebinding an attacker's page talks to a server on 127.0.0.1 with its own name
in Host and Origin, so comparing the two proves nothing: a loopback server serves only
the loopback names unless WSAPP_ALLOWED_HOSTS says otherwise, for WebSocket handshakes
and plain HTTP alike. Host must be RFC 9110 syntax (400), and an Origin matches only with
the request's scheme.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import ServerProcess, running_server

from .conftest import handshake_status, http_get, metric_value
from .rawhttp import exchange, get, upgrade


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def loopback_server(request) -> Iterator[ServerProcess]:
    """Defaults (no WSAPP_ALLOWED_HOSTS) on 127.0.0.1, in both serving modes."""
    with running_server(request.param) as srv:
        yield srv


def origin_of(srv: ServerProcess, scheme: str = "http", host: str | None = None) -> str:
    return f"{scheme}://{host or srv.host}:{srv.port}"


# --- DNS rebinding ----------------------------------------------------------------------


def test_rebound_name_in_host_and_origin_is_refused(loopback_server):
    srv = loopback_server
    evil = f"evil.example:{srv.port}"
    resp = upgrade(srv, host=evil, headers={"Origin": f"http://{evil}"})
    assert resp.status == 400, resp
    assert b"not allowed" in resp.body
    chat = upgrade(srv, "/chat/lobby?name=x", host=evil, headers={"Origin": f"http://{evil}"})
    assert chat.status == 400
    srv.wait_for_log("handshake refused: GET /echo from 127.0.0.1:")
    srv.wait_for_log(f"400 host '{evil}' not allowed")


@pytest.mark.parametrize("path", ["/api/rooms", "/api/rooms/lobby/messages", "/healthz", "/"])
def test_rebound_name_is_refused_over_plain_http_too(loopback_server, path):
    srv = loopback_server
    resp = get(srv, path, host=f"evil.example:{srv.port}")
    assert resp.status == 400 and b"not allowed" in resp.body, resp
    assert get(srv, path).status == 200


def test_loopback_names_with_and_without_a_port_are_served(loopback_server):
    srv = loopback_server
    for host in (f"127.0.0.1:{srv.port}", f"localhost:{srv.port}", f"[::1]:{srv.port}",
                 "localhost", "127.0.0.1", f"LocalHost.:{srv.port}", f"[0:0::1]:{srv.port}",
                 "localhost:8080"):  # a local proxy in front listens on its own port
        resp = upgrade(srv, host=host, headers={"Origin": f"http://{host}"})
        assert resp.status == 101, (host, resp)
        assert get(srv, "/healthz", host=host).status == 200, host


def test_refusals_are_counted(loopback_server):
    srv = loopback_server
    get(srv, "/healthz", host="evil.example")
    text = http_get(srv, "/metrics")[1]
    assert metric_value(text, "wsapp_handshake_rejections_total", reason="host") >= 1


# --- Host syntax ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["a b c", "", "[::1", "[::1]x", "[zz::1]:1", "127.0.0.1:http", "127.0.0.1:99999",
     "user@127.0.0.1", "127.0.0.1/x", "::1", "[fe80::1%25eth0]"],
)
def test_malformed_host_is_400(loopback_server, host):
    srv = loopback_server
    assert upgrade(srv, host=host).status == 400
    assert get(srv, "/healthz", host=host).status == 400


def test_missing_host_is_400_on_http_1_1_and_for_handshakes(loopback_server):
    srv = loopback_server
    resp = upgrade(srv, host=None)
    assert resp.status == 400 and b"missing Host" in resp.body, resp
    assert get(srv, "/healthz", host=None).status == 400
    assert get(srv, "/healthz", host=None, version="HTTP/1.0").status == 200  # 1.0 may omit it


def test_two_host_lines_are_400(loopback_server):
    srv = loopback_server
    host = f"{srv.host}:{srv.port}"
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\n\r\n".encode()
    assert exchange(srv, request).status == 400


# --- Origin scheme ----------------------------------------------------------------------


def test_origin_scheme_must_be_the_request_scheme(loopback_server):
    srv = loopback_server
    assert handshake_status(srv, headers={"Origin": origin_of(srv)}) == 101
    for origin in (origin_of(srv, "https"), origin_of(srv, "foo"), origin_of(srv, "ws"),
                   origin_of(srv, "wss")):
        resp = upgrade(srv, headers={"Origin": origin})
        assert resp.status == 403, (origin, resp)
    # X-Forwarded-Proto is the client's word without a trusted proxy.
    spoofed = {"Origin": origin_of(srv, "https"), "X-Forwarded-Proto": "https"}
    assert upgrade(srv, headers=spoofed).status == 403


# --- WSAPP_ALLOWED_HOSTS ----------------------------------------------------------------


@pytest.fixture(scope="module")
def listed_server() -> Iterator[ServerProcess]:
    env = {"WSAPP_ALLOWED_HOSTS": "chat.example.com, .example.org, [fd00::1]:8443"}
    with running_server("serve", env=env) as srv:
        yield srv


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("chat.example.com", 101),
        ("CHAT.example.com:{port}", 101),
        ("example.org", 101),
        ("a.b.example.org:9000", 101),
        ("[fd00::1]:8443", 101),
        ("[fd00::1]:8444", 400),  # only :8443 is listed
        ("[fd00::1]", 400),
        ("localhost:{port}", 101),
        ("[::1]:{port}", 101),  # loopback names are always served (no page can send them)
        ("127.0.0.1:{port}", 101),
        ("evil.example", 400),
        ("chat.example.com.evil.example", 400),
        ("example.org.evil.example", 400),
        ("notexample.org", 400),
    ],
)
def test_listed_hosts_pass_and_others_are_400(listed_server, host, status):
    srv = listed_server
    host = host.format(port=srv.port)
    assert upgrade(srv, host=host, headers={"Origin": f"http://{host}"}).status == status
    assert get(srv, "/healthz", host=host).status == (200 if status == 101 else 400)


def test_a_bad_allowed_hosts_value_stops_the_server():
    env = {"WSAPP_ALLOWED_HOSTS": "good.example, bad host"}
    with pytest.raises(RuntimeError, match="WSAPP_ALLOWED_HOSTS"), running_server("serve", env=env):
        pass


# --- behind a trusted proxy -------------------------------------------------------------


@pytest.fixture(scope="module")
def proxied_server() -> Iterator[ServerProcess]:
    env = {"WSAPP_TRUSTED_PROXIES": "1", "WSAPP_ALLOWED_HOSTS": "chat.example.com"}
    with running_server("serve", env=env) as srv:
        yield srv


def test_forwarded_host_and_proto_through_a_trusted_proxy(proxied_server):
    srv = proxied_server
    via = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "chat.example.com",
           "X-Forwarded-Proto": "https"}
    # The proxy's own Host (here the backend address) is not what is checked.
    assert upgrade(srv, headers={**via, "Origin": "https://chat.example.com"}).status == 101
    assert upgrade(srv, headers={**via, "Origin": "http://chat.example.com"}).status == 403
    assert upgrade(srv, headers={**via, "X-Forwarded-Proto": "http",
                                 "Origin": "http://chat.example.com"}).status == 101
    assert upgrade(srv, headers={**via, "X-Forwarded-Host": "evil.example"}).status == 400
    assert upgrade(srv, headers={**via, "X-Forwarded-Host": "a b"}).status == 400
    assert get(srv, "/healthz", headers=via).status == 200
    assert get(srv, "/healthz", headers={**via, "X-Forwarded-Host": "evil.example"}).status == 400
