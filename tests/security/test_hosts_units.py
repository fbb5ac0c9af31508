"""Host syntax, allowed-hosts patterns and the listener defaults (`wsapp.hosts`), no sockets."""

from __future__ import annotations

import pytest

from wsapp import admission, hosts
from wsapp.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("example.com", ("example.com", None)),
        ("Example.COM:8080", ("example.com", 8080)),
        ("example.com:", ("example.com", None)),  # empty port: valid syntax (RFC 3986 3.2.3)
        ("localhost.", ("localhost", None)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]", ("[::1]", None)),
        ("[0:0:0:0:0:0:0:1]:8000", ("[::1]", 8000)),
        ("[::FFFF:127.0.0.1]", ("[::ffff:7f00:1]", None)),
        ("[v1.fe80::a+en1]", ("[v1.fe80::a+en1]", None)),  # IPvFuture
        ("svc_name-1:80", ("svc_name-1", 80)),  # underscores: RFC 3986 unreserved
        ("a%20b", ("a%20b", None)),  # pct-encoded is reg-name syntax
    ],
)
def test_parse_host(value, parsed):
    assert hosts.parse_host(value) == parsed


@pytest.mark.parametrize(
    "value",
    ["", "a b", "a\tb", "[::1", "[::1]:x", "[::1]8000", "[g::1]", "[fe80::1%eth0]", "::1",
     "h:65536", "h:123456", "h:-1", "h:+1", "h:１", "user@h", "h/", "h?", "h#", "caf\xe9", ":80",
     "h:80:80", "a%2"],
)
def test_parse_host_refuses(value):
    with pytest.raises(hosts.HostError):
        hosts.parse_host(value)


def test_patterns():
    patterns = hosts.parse_patterns(("chat.example.com", ".example.org", "[::1]:8443", "x:1"))
    assert patterns[0].matches("chat.example.com", None)
    assert patterns[0].matches("chat.example.com", 1)
    org = patterns[1]
    assert org.matches("example.org", None) and org.matches("a.b.example.org", 5)
    assert not org.matches("badexample.org", None) and not org.matches("example.org.evil", None)
    assert patterns[2].matches("[::1]", 8443) and not patterns[2].matches("[::1]", None)
    assert patterns[3].matches("x", 1) and not patterns[3].matches("x", 2)
    assert hosts.HostPattern.parse("*").matches("anything", 1)
    with pytest.raises(hosts.HostError, match="'bad host'"):
        hosts.parse_patterns(("ok", "bad host"))


@pytest.mark.parametrize(
    ("listener", "local"),
    [
        (("127.0.0.1", 8000), True),
        (("127.0.0.2", 8000), True),
        (("::1", 8000, 0, 0), True),
        (("::ffff:127.0.0.1", 8000, 0, 0), True),
        ("/run/wsapp.sock", True),
        (("0.0.0.0", 8000), False),
        (("::", 8000, 0, 0), False),
        (("192.0.2.1", 8000), False),
        (("localhost", 8000), False),  # a name (never a bound socket's address): not trusted
    ],
)
def test_local_listener(listener, local):
    assert hosts.is_local_listener(listener) is local


def test_default_patterns_follow_the_listener():
    lo = ("127.0.0.2", 9000)
    for host in ("localhost", "127.0.0.1", "[::1]", "127.0.0.2"):
        assert hosts.allowed(host, None, (), lo) and hosts.allowed(host, 9000, (), lo)
    assert not hosts.allowed("evil.example", 9000, (), lo)
    assert not hosts.allowed("127.0.0.3", 9000, (), lo)
    public = ("0.0.0.0", 9000)
    assert hosts.allowed("evil.example", 9000, (), public)
    assert not hosts.allowed("evil.example", 80, (), "/run/wsapp.sock")
    assert hosts.allowed("localhost", 80, (), "/run/wsapp.sock")
    # A configured list adds to the loopback names, on any listener.
    listed = ("chat.example.com",)
    for listener in (lo, public, "/run/wsapp.sock"):
        assert hosts.allowed("chat.example.com", 443, listed, listener)
        assert hosts.allowed("localhost", 9000, listed, listener)
        assert hosts.allowed("[::1]", None, listed, listener)
        assert not hosts.allowed("evil.example", 9000, listed, listener)
    assert not hosts.allowed("127.0.0.2", 9000, listed, public)


def test_allowed_hosts_setting_is_validated():
    got = Settings.from_env({"WSAPP_ALLOWED_HOSTS": " a.example , .b.example,[::1]:1, *"})
    assert got.allowed_hosts == ("a.example", ".b.example", "[::1]:1", "*")
    for bad in ("a b", "a.example, [::1", "h:99999", "user@h"):
        with pytest.raises(SettingsError, match="WSAPP_ALLOWED_HOSTS"):
            Settings.from_env({"WSAPP_ALLOWED_HOSTS": bad})


def test_host_rejection():
    s = Settings()
    lo = ("127.0.0.1", 8000)
    ok = {"HTTP_HOST": "localhost:8000", "SERVER_PROTOCOL": "HTTP/1.1"}
    assert admission.host_rejection(ok, s, lo) is None
    assert admission.host_rejection({"SERVER_PROTOCOL": "HTTP/1.1"}, s, lo).code == 400
    assert admission.host_rejection({"SERVER_PROTOCOL": "HTTP/1.0"}, s, lo) is None
    bad = admission.host_rejection({**ok, "HTTP_HOST": "a b c"}, s, lo)
    assert bad.code == 400 and "malformed Host" in bad.reason
    evil = admission.host_rejection({**ok, "HTTP_HOST": "evil.example"}, s, lo)
    assert evil.code == 400 and "'evil.example' not allowed" in evil.reason
    proxied = Settings(trusted_proxies=1, allowed_hosts=("chat.example.com",))
    via = {**ok, "HTTP_HOST": "backend", "HTTP_X_FORWARDED_HOST": "chat.example.com"}
    assert admission.host_rejection(via, proxied, lo) is None
    assert admission.host_rejection(via, s, lo).code == 400  # no trusted proxy: Host counts
    bad_fwd = admission.host_rejection({**via, "HTTP_X_FORWARDED_HOST": "a b"}, proxied, lo)
    assert "malformed X-Forwarded-Host" in bad_fwd.reason


def test_public_bind_warning():
    public = ("0.0.0.0", 8000)
    warning = admission.public_bind_warning(Settings(), public)
    assert warning and "0.0.0.0:8000" in warning and "WSAPP_ALLOWED_HOSTS" in warning
    assert "[::]:8000" in admission.public_bind_warning(Settings(), ("::", 8000, 0, 0))
    assert admission.public_bind_warning(Settings(allowed_hosts=("a.example",)), public) is None
    origins = Settings(allowed_origins=("https://a.example",))
    assert admission.public_bind_warning(origins, public) is None
    assert admission.public_bind_warning(Settings(), ("127.0.0.1", 8000)) is None
    assert admission.public_bind_warning(Settings(), "/run/wsapp.sock") is None
