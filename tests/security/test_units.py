"""Pure parts of issue 6: token bucket, tokens, origin rules, forwarded addresses, limits."""

from __future__ import annotations

import pytest

from wsapp import admission
from wsapp.protocol.handshake import Rejection
from wsapp.ratelimit import TokenBucket
from wsapp.settings import Settings, SettingsError
from wsapp.tokens import TokenError, issue_token, verify_token

S = Settings(secret="s3cret")


def test_token_bucket_burst_then_rate():
    b = TokenBucket(rate=2, burst=3, now=0.0)
    assert [b.allow(now=0.0) for _ in range(4)] == [True, True, True, False]
    assert not b.allow(now=0.4)  # 0.8 token
    assert b.allow(now=0.5)  # 1 token
    assert b.wait_time(now=0.5) == pytest.approx(0.5)
    assert b.allow(now=100.0) and b.tokens == pytest.approx(2.0)  # capped at burst


def test_token_bucket_rejects_nonsense():
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_token_round_trip_and_expiry():
    token = issue_token(S, rooms=["a", "b"], name=" alice ", ttl=10, now=1000.0)
    claims = verify_token(S, token, now=1005.0)
    assert claims.rooms == ("a", "b") and claims.name == "alice"
    assert claims.allows("a") and not claims.allows("c")
    with pytest.raises(TokenError, match="expired"):
        verify_token(S, token, now=1010.0)
    with pytest.raises(TokenError, match="invalid"):
        verify_token(Settings(secret="other"), token, now=1005.0)
    with pytest.raises(TokenError):
        verify_token(S, token[:-2] + "xx", now=1005.0)


def test_token_needs_a_secret_and_sane_claims():
    with pytest.raises(SettingsError, match="WSAPP_SECRET"):
        issue_token(Settings(), rooms=["a"], name="n", ttl=1)
    with pytest.raises(ValueError):
        issue_token(S, rooms=[], name="n", ttl=1)
    with pytest.raises(ValueError):
        issue_token(S, rooms=["a"], name="x" * 33, ttl=1)
    assert verify_token(S, issue_token(S, rooms=["*"], name="ops", ttl=5)).allows("anything")


def test_chat_token_name():
    req = Settings(secret="s3cret", require_token=True)
    token = issue_token(req, rooms=["lobby"], name="alice", ttl=60)
    assert admission.chat_token_name(req, "lobby", token) == "alice"
    for room, tok in (("lobby", None), ("lobby", ""), ("other", token), ("lobby", "junk")):
        got = admission.chat_token_name(req, room, tok)
        assert isinstance(got, Rejection) and got.code == 401
    optional = Settings(secret="s3cret")
    assert admission.chat_token_name(optional, "lobby", None) is None
    assert admission.chat_token_name(optional, "lobby", "junk").code == 401
    assert admission.chat_token_name(Settings(), "lobby", "junk") is None  # tokens off


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "required", "scheme", "ok"),
    [
        (None, "h:1", (), False, "http", True),
        (None, "h:1", (), True, "http", False),
        ("", "h:1", (), True, "http", False),
        ("http://h:1", "h:1", (), False, "http", True),
        ("https://h", "h", (), False, "https", True),
        ("https://h:443", "H", (), False, "https", True),
        ("http://h", "h:80", (), False, "http", True),
        ("http://h:2", "h:1", (), False, "http", False),
        ("http://evil", "h", (), False, "http", False),
        ("null", "h", (), False, "http", False),
        ("http://[::1]:8000", "[::1]:8000", (), False, "http", True),
        ("http://user@h", "h", (), False, "http", False),
        # issue 13: the scheme is compared too (https page to an http server, or foo://)
        ("https://h", "h", (), False, "http", False),
        ("https://h:80", "h", (), False, "http", False),
        ("http://h", "h", (), False, "https", False),
        ("foo://h:1", "h:1", (), False, "http", False),
        ("foo://h:1", "h:1", (), False, "foo", False),
        ("https://app.example.com", "h", ("https://app.example.com",), False, "http", True),
        ("https://app.example.com:443", "h", ("https://app.example.com",), False, "http", True),
        ("http://app.example.com", "h", ("https://app.example.com",), False, "http", False),
        # a list replaces same-origin
        ("https://h", "h", ("https://app.example.com",), False, "https", False),
        ("null", "h", ("*",), False, "http", True),
        (None, "h", ("*",), True, "http", False),
    ],
)
def test_check_origin(origin, host, allowed, required, scheme, ok):
    assert (admission.check_origin(origin, host, allowed, required, scheme) is None) is ok


def test_request_scheme_trusts_forwarded_proto_only_through_proxies():
    env = {"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "evil, https"}
    assert admission.request_scheme(env, 0) == "http"
    assert admission.request_scheme(env, 1) == "https"
    assert admission.request_scheme({"wsgi.url_scheme": "https"}, 0) == "https"
    assert admission.request_scheme({"HTTP_X_FORWARDED_PROTO": "WSS"}, 1) == "https"
    assert admission.request_scheme({"HTTP_X_FORWARDED_PROTO": "foo"}, 1) == "foo"


def test_forwarded_values():
    assert admission.forwarded_value("1.1.1.1, 2.2.2.2", 1) == "2.2.2.2"
    assert admission.forwarded_value("1.1.1.1, 2.2.2.2", 2) == "1.1.1.1"
    assert admission.forwarded_value("2.2.2.2", 2) is None
    assert admission.forwarded_value(None, 1) is None
    env = {
        "HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.2.3.4",
        "HTTP_X_FORWARDED_HOST": "example.com",
        "HTTP_HOST": "backend:8000",
    }
    assert admission.client_ip(env, "127.0.0.1", 0) == "127.0.0.1"
    assert admission.client_ip(env, "127.0.0.1", 1) == "1.2.3.4"
    assert admission.request_host(env, 0) == "backend:8000"
    assert admission.request_host(env, 1) == "example.com"


def test_check_limits():
    s = Settings(max_conn_per_ip=2, max_connections=3)
    assert admission.check_limits(1, 2, s) is None
    assert admission.check_limits(2, 2, s).code == 429
    assert admission.check_limits(0, 3, s).code == 503
    assert admission.check_limits(10**6, 0, Settings(max_conn_per_ip=0)) is None


def test_message_limiter():
    assert admission.message_limiter(Settings(rate_limit=0)) is None
    assert isinstance(admission.message_limiter(Settings()), TokenBucket)
