"""Opening-handshake rules as pure functions."""

from __future__ import annotations

import base64

import pytest

from wsapp.protocol.handshake import accept_key, check_handshake, upgrade_response, wants_websocket

KEY = base64.b64encode(b"0123456789abcdef").decode()


def environ(**overrides: str) -> dict[str, str]:
    env = {
        "REQUEST_METHOD": "GET",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "keep-alive, Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": KEY,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_rfc_example_accept_key():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_request_passes():
    assert check_handshake(environ(), "HTTP/1.1") is None


@pytest.mark.parametrize(
    "connection, upgrade, expected",
    [
        ("Upgrade", "websocket", True),
        ("keep-alive, upgrade", "WebSocket", True),
        ("keep-alive", "websocket", False),
        ("Upgrade", "h2c", False),
    ],
)
def test_wants_websocket_matches_werkzeug_rule(connection, upgrade, expected):
    assert wants_websocket(environ(HTTP_CONNECTION=connection, HTTP_UPGRADE=upgrade)) is expected


@pytest.mark.parametrize(
    "key", ["", "not base64!!", "c2hvcnQ=", base64.b64encode(b"x" * 17).decode(), "é"]
)
def test_bad_keys_are_400_never_500(key):
    rejection = check_handshake(environ(HTTP_SEC_WEBSOCKET_KEY=key), "HTTP/1.1")
    assert rejection is not None and rejection.code == 400


@pytest.mark.parametrize("version", ["", "8", "7", "14", "abc"])
def test_unsupported_version_is_400_advertising_13(version):
    rejection = check_handshake(environ(HTTP_SEC_WEBSOCKET_VERSION=version), "HTTP/1.1")
    assert rejection is not None and rejection.code == 400
    assert ("Sec-WebSocket-Version", "13") in rejection.headers


def test_http_10_upgrade_is_400_not_402():
    rejection = check_handshake(environ(), "HTTP/1.0")
    assert rejection is not None and rejection.code == 400


def test_post_upgrade_is_405():
    rejection = check_handshake(environ(REQUEST_METHOD="POST"), "HTTP/1.1")
    assert rejection is not None and rejection.code == 405


def test_upgrade_response_is_complete_http():
    response = upgrade_response("dGhlIHNhbXBsZSBub25jZQ==").decode()
    assert response.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert response.endswith("\r\n\r\n")
