"""Opening handshake (RFC 6455 section 4): accepted and refused upgrades."""

from __future__ import annotations

import base64
import socket

import pytest

from tests.support.rawws import ConnectionClosedNoFrame, Op, accept_key, encode_frame, new_key


def test_rfc_sample_key_accept_value(target):
    # RFC 6455 section 1.3 worked example.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    resp = target.http(target.request(key="dGhlIHNhbXBsZSBub25jZQ=="))
    assert resp.status == 101
    assert resp.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert (resp.header("upgrade") or "").lower() == "websocket"
    assert "upgrade" in (resp.header("connection") or "").lower()


def test_successful_handshake_then_echo(target):
    with target.connect() as ws:  # connect() checks Sec-WebSocket-Accept for a random key
        assert ws.response.status == 101
        ws.echo("hello")
    target.assert_healthy()


@pytest.mark.parametrize(
    "headers",
    [
        {"Connection": "keep-alive, Upgrade"},  # what Firefox sends
        {"Upgrade": "WebSocket"},  # token is case-insensitive
        {"Connection": "upgrade"},
    ],
    ids=["connection-list", "upgrade-mixed-case", "connection-lowercase"],
)
def test_valid_handshake_variants_accepted(target, headers):
    with target.connect(headers=headers) as ws:
        ws.echo("variant")
    target.assert_healthy()


BAD_KEYS = {
    "not-base64": "!!!this is not base64!!!",
    "empty": "",
    "15-bytes": base64.b64encode(b"x" * 15).decode(),
    "17-bytes": base64.b64encode(b"x" * 17).decode(),
    "no-padding": "dGhlIHNhbXBsZSBub25jZQ",
    "bad-padding": "dGhlIHNhbXBsZSBub25jZQ=",
}


@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_key_is_400(target, key):
    resp = target.http(target.request(key=key))
    assert resp.status == 400, f"{resp.status} {resp.reason}"
    target.assert_healthy()


def test_missing_key_is_400(target):
    resp = target.http(target.request(omit=("Sec-WebSocket-Key",)))
    assert resp.status == 400, f"{resp.status} {resp.reason}"
    target.assert_healthy()


@pytest.mark.parametrize("version", ["8", "12", "14", "0", "abc"])
def test_unsupported_version_is_400_with_version_header(target, version):
    resp = target.http(target.request(version=version))
    assert resp.status == 400, f"{resp.status} {resp.reason}"
    assert "13" in [v.strip() for v in (resp.header("sec-websocket-version") or "").split(",")], (
        resp.headers
    )
    target.assert_healthy()


def test_missing_version_is_400(target):
    resp = target.http(target.request(version=None))
    assert resp.status == 400, f"{resp.status} {resp.reason}"
    target.assert_healthy()


def test_http10_upgrade_is_4xx_not_402(target):
    resp = target.http(target.request(http_version="HTTP/1.0"))
    assert 400 <= resp.status < 500 and resp.status != 402, f"{resp.status} {resp.reason}"
    target.assert_healthy()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"omit": ("Upgrade",)},
        {"headers": {"Upgrade": "h2c"}},
        {"omit": ("Connection",)},
    ],
    ids=["no-upgrade-header", "upgrade-h2c", "no-connection-header"],
)
def test_not_an_upgrade_is_plain_http_never_101_never_500(target, kwargs):
    """Without a valid Upgrade/Connection pair this is an ordinary GET: the server may
    serve a page or refuse it, but must not switch protocols or fail."""
    resp = target.http(target.request(**kwargs))
    assert resp.status != 101 and resp.status < 500, f"{resp.status} {resp.reason}"
    target.assert_healthy()


def test_post_upgrade_is_4xx(target):
    """The opening handshake is a GET (RFC 6455 4.1)."""
    resp = target.http(target.request(method="POST"))
    assert 400 <= resp.status < 500, f"{resp.status} {resp.reason}"
    target.assert_healthy()


def test_first_frame_in_same_packet_as_handshake(target):
    """A client may send its first frame right behind the request (no wait for 101)."""
    key = new_key()
    req = target.request(key=key) + encode_frame(Op.TEXT, b"eager")
    with socket.create_connection((target.host, target.port), timeout=2) as sock:
        sock.sendall(req)
        data = b""
        while b"eager" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 101"), data[:100]
        assert accept_key(key).encode() in data
        assert data.endswith(b"\x81\x05eager"), data[-40:]
    target.assert_healthy()


@pytest.mark.parametrize(
    "line",
    [b"this line has no colon", b"Upgrade : websocket", b": no-name", b"Bad Name: x"],
    ids=["no-colon", "space-before-colon", "empty-name", "space-in-name"],
)
def test_malformed_header_line_is_400(target, line):
    """RFC 9112 5.1: a header line that is not `name: value` gets a 400, never an upgrade
    (pywsgi's email parser silently dropped the line and every header after it).

    Under uWSGI its own HTTP parser reads the head: a line without a colon or with an
    empty name never reaches Python, and uWSGI closes the connection without an answer
    (wsapp.uwsgi_head; nginx in front answers 400 itself)."""
    request = target.request()
    head, _, _ = request.partition(b"\r\n")
    bad = request.replace(head + b"\r\n", head + b"\r\n" + line + b"\r\n", 1)
    if target.mode == "uwsgi" and (b":" not in line or line.startswith(b":")):
        with pytest.raises(ConnectionClosedNoFrame):
            target.http(bad)
        target.server.wait_for_log("invalid HTTP request")
        target.assert_healthy()
        return
    resp = target.http(bad)
    assert resp.status == 400, f"{resp.status} {resp.reason}"
    if target.server is not None:
        target.server.wait_for_log(
            "malformed request header" if target.mode == "uwsgi" else "Invalid request"
        )
    target.assert_healthy()


def test_folded_header_value_is_unfolded_and_accepted(target):
    """obs-fold (a line starting with a space continues the previous header) is replaced by
    a space (RFC 9112 5.2): `Connection: keep-alive,` + ` Upgrade` still upgrades."""
    request = target.request(headers={"Connection": "keep-alive,\r\n Upgrade"})
    resp = target.http(request)
    assert resp.status == 101, f"{resp.status} {resp.reason}"
    target.assert_healthy()
