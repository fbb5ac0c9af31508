"""Origin checks, tokens, connection limits and client addresses at the handshake (issue 6).

Every refusal is a plain HTTP answer (never an upgrade) with a log line saying why.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.support.servers import ROOT, running_server

from .conftest import (
    STRICT_ORIGIN,
    chat_events,
    connect,
    handshake_status,
    refusal,
    token_for,
    wait_connections,
)

# --- origin: default is same origin as Host ---------------------------------------------


def test_same_origin_and_originless_clients_are_accepted(hostile_server):
    srv = hostile_server
    assert handshake_status(srv, headers={"Origin": f"http://{srv.host}:{srv.port}"}) == 101
    assert (
        handshake_status(srv, headers={"Origin": f"HTTP://{srv.host.upper()}:{srv.port}/"}) == 101
    )
    assert handshake_status(srv) == 101  # no Origin: CLI clients, other servers


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://127.0.0.1:1",
        "null",
        "http://127.0.0.1.evil.example:{port}",
        "garbage",
    ],
)
def test_cross_origin_handshake_is_403_with_a_log_line(hostile_server, origin):
    srv = hostile_server
    origin = origin.format(port=srv.port)
    resp = refusal(srv, headers={"Origin": origin})
    assert resp.status == 403
    assert b"origin" in resp.body.lower()
    srv.wait_for_log(f"403 cross-origin request from {origin!r}")


def test_cross_origin_is_refused_on_chat_too(hostile_server):
    assert (
        refusal(hostile_server, "/chat/lobby", headers={"Origin": "https://evil.example"}).status
        == 403
    )


# --- origin list, Origin required, tokens (strict_server) -------------------------------


@pytest.mark.parametrize(
    "origin", ["https://app.example.com", "https://APP.example.com:443", "http://localhost:8080"]
)
def test_listed_origins_are_accepted(strict_server, origin):
    token = token_for(strict_server, ["lobby"], "alice")
    assert (
        handshake_status(strict_server, f"/chat/lobby?token={token}", headers={"Origin": origin})
        == 101
    )


@pytest.mark.parametrize(
    "origin", ["http://app.example.com", "https://app.example.com:8443", "https://evil.example"]
)
def test_unlisted_origins_are_403(strict_server, origin):
    assert refusal(strict_server, "/echo", headers={"Origin": origin}).status == 403


def test_missing_origin_is_403_when_required(strict_server):
    resp = refusal(strict_server, "/echo")
    assert resp.status == 403 and b"missing Origin" in resp.body
    strict_server.wait_for_log("403 missing Origin header")


def test_star_allows_any_origin():
    with running_server("serve", env={"WSAPP_ALLOWED_ORIGINS": "*"}) as srv:
        assert handshake_status(srv, headers={"Origin": "https://anything.example"}) == 101
        assert handshake_status(srv) == 101


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?name=alice",
        "?token=",
        "?token=not-a-token",
        "?token={other_room}",
        "?token={expired}",
        "?token={forged}",
    ],
)
def test_bad_or_missing_token_is_401(strict_server, query):
    from wsapp.settings import Settings
    from wsapp.tokens import issue_token

    forged = issue_token(Settings(secret="another-secret"), rooms=["lobby"], name="mallory", ttl=60)
    query = query.format(
        other_room=token_for(strict_server, ["other"], "alice"),
        expired=token_for(strict_server, ["lobby"], "alice", ttl=10, now=time.time() - 60),
        forged=forged,
    )
    resp = refusal(strict_server, f"/chat/lobby{query}", headers=STRICT_ORIGIN)
    assert resp.status == 401, resp


def test_valid_token_admits_with_the_token_name(strict_server):
    token = token_for(strict_server, ["lobby", "ops"], "alice")
    ws = connect(strict_server, f"/chat/ops?token={token}&name=mallory", headers=STRICT_ORIGIN)
    with ws:
        hello = chat_events(ws, "hello")[-1]
        assert hello["name"] == "alice" and hello["room"] == "ops"


def test_cli_token_command_prints_a_working_token(strict_server):
    env = {"PATH": "/usr/bin:/bin", **strict_server.env}
    out = subprocess.run(
        [sys.executable, "-m", "wsapp", "token", "--room", "lobby", "--name", "bob", "--ttl", "60"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=True,
    )
    token = out.stdout.strip()
    ws = connect(strict_server, f"/chat/lobby?token={token}", headers=STRICT_ORIGIN)
    with ws:
        assert chat_events(ws, "hello")[-1]["name"] == "bob"


def test_chat_rate_limit_closes_1008(strict_server):
    """WSAPP_RATE_LIMIT=5/s, burst 5: the sixth message in a burst closes the sender 1008."""
    token = token_for(strict_server, ["ratelimit"], "spammer")
    ws = connect(strict_server, f"/chat/ratelimit?token={token}", headers=STRICT_ORIGIN)
    with ws:
        chat_events(ws, "hello")
        for i in range(20):
            if not ws.try_send(
                __import__("tests.support.rawws", fromlist=["x"]).encode_frame(1, f"m{i}".encode())
            ):
                break
        code, reason = ws.expect_close(1008, timeout=3, allow_data=True)
        assert "rate limit" in reason


def test_chat_under_the_rate_limit_is_not_closed(strict_server):
    token = token_for(strict_server, ["calm"], "calm")
    ws = connect(strict_server, f"/chat/calm?token={token}", headers=STRICT_ORIGIN)
    with ws:
        chat_events(ws, "hello")
        for i in range(8):  # 8 messages at 4/s: under 5/s after the burst
            ws.send_text(json.dumps({"type": "message", "text": f"m{i}", "ref": str(i)}))
            chat_events(ws, "ack")
            time.sleep(0.25)


def test_echo_is_not_rate_limited(strict_server):
    ws = connect(strict_server, headers=STRICT_ORIGIN)
    with ws:
        for i in range(50):
            ws.send_text(f"e{i}")
        for i in range(50):
            assert ws.recv_message()[1] == f"e{i}".encode()


# --- connection limits -----------------------------------------------------------------


@pytest.fixture(scope="module")
def limits_server():
    with running_server(
        "serve",
        env={
            "WSAPP_MAX_CONN_PER_IP": "3",
            "WSAPP_MAX_CONNECTIONS": "5",
            "WSAPP_PING_INTERVAL": "0",
        },
    ) as srv:
        yield srv


def test_connections_per_ip_429_and_per_process_503(limits_server):
    srv = limits_server
    held = [connect(srv) for _ in range(3)]
    try:
        resp = refusal(srv)
        assert resp.status == 429 and resp.header("retry-after")
        srv.wait_for_log("429 too many connections from this address")
        # Another address still gets in, up to the process limit of 5.
        held += [connect(srv, source="127.0.0.2") for _ in range(2)]
        resp = refusal(srv, source="127.0.0.3")
        assert resp.status == 503 and resp.header("retry-after")
        srv.wait_for_log("503 server at connection capacity")
        for ws in held:
            ws.echo("held connections still work")
    finally:
        for ws in held:
            ws.close()
    wait_connections(srv, 0)
    # Slots are given back when connections end (exactly once: a fourth is still refused),
    # and refused handshakes never held one. Chat members (served outside their request,
    # like echo sockets) count the same.
    for path in ("/echo", "/chat/limits?name=a"):
        again = [connect(srv, path) for _ in range(3)]
        assert refusal(srv, path=path).status == 429
        for ws in again:
            ws.close()
        wait_connections(srv, 0)


def test_refused_view_handshakes_give_their_slot_back(limits_server):
    srv = limits_server
    for _ in range(10):  # a 400 from the chat view must not leak a per-IP slot
        assert handshake_status(srv, "/chat/bad%20room") == 400
    held = [connect(srv) for _ in range(3)]
    for ws in held:
        ws.close()


def test_forwarded_for_is_used_only_through_trusted_proxies():
    env = {"WSAPP_TRUSTED_PROXIES": "1", "WSAPP_MAX_CONN_PER_IP": "1", "WSAPP_PING_INTERVAL": "0"}
    with running_server("serve", env=env) as srv:
        a = connect(srv, headers={"X-Forwarded-For": "203.0.113.7"})
        b = connect(srv, headers={"X-Forwarded-For": "203.0.113.8"})  # another client: own quota
        try:
            # Same client again (a spoofed entry further left is ignored: one proxy hop).
            resp = refusal(srv, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
            assert resp.status == 429
            srv.wait_for_log("from 203.0.113.7 (via 127.0.0.1:")
            srv.wait_for_log("peer=203.0.113.8 (via 127.0.0.1:")
        finally:
            a.close()
            b.close()
    with running_server(
        "serve", env={"WSAPP_MAX_CONN_PER_IP": "1", "WSAPP_PING_INTERVAL": "0"}
    ) as srv:
        a = connect(srv, headers={"X-Forwarded-For": "203.0.113.7"})
        try:  # no trusted proxy: the header is the client's word, the socket peer counts
            assert refusal(srv, headers={"X-Forwarded-For": "203.0.113.8"}).status == 429
        finally:
            a.close()
