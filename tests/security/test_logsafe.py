"""`wsapp.logsafe` without sockets: escaping, truncation, redaction, the access-log view."""

from __future__ import annotations

import pytest

from wsapp import logsafe
from wsapp.logsafe import REDACTED, escape, redact_query, redact_target, redact_text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("/chat/lobby", "/chat/lobby"),
        ("a\nb\rc\x00d\x1b[31m\x7f", "a\\x0ab\\x0dc\\x00d\\x1b[31m\\x7f"),
        ('say "hi" \\ bye', "say \\x22hi\\x22 \\x5c bye"),
        ("caf\xe9 \x9b \u202e \U0001f600", "caf\\xe9 \\x9b \\u202e \\U0001f600"),
        (b"\xff\x00ok", "\\xff\\x00ok"),
        (None, "-"),
        (1006, "1006"),
        ("", ""),
    ],
)
def test_escape_gives_printable_ascii(value, shown):
    assert escape(value) == shown
    assert all(" " <= c < "\x7f" for c in escape(value))


def test_escape_truncates_with_a_marker():
    assert escape("x" * 10, 10) == "x" * 10
    assert escape("x" * 11, 10) == "x" * 10 + "...[11 chars]"
    assert escape("\n" * 500, 3) == "\\x0a" * 3 + "...[500 chars]"


def test_escape_can_leave_a_repr_alone():
    text = repr("a\nb \"q\" \u202e")  # a repr: backslashes already mean escapes
    assert escape(text, quotes=False) == text.replace("\u202e", "\\u202e")
    assert escape("\x1b", quotes=False) == "\\x1b"


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("name=ann&since=1-0", "name=ann&since=1-0"),
        ("name=ann&token=eyJy.abc", f"name=ann&token={REDACTED}"),
        ("TOKEN=a;api_key=b&x-api-key=c&auth_token=d", f"TOKEN={REDACTED};api_key={REDACTED}&"
         f"x-api-key={REDACTED}&auth_token={REDACTED}"),
        ("%74oken=a&password=b&token=", f"%74oken={REDACTED}&password={REDACTED}&token="),
        ("tokenish=1&tok=2", "tokenish=1&tok=2"),
        ("", ""),
    ],
)
def test_redact_query(query, shown):
    assert redact_query(query) == shown


def test_redact_target_and_request_lines():
    assert redact_target("/chat/x?token=abc&name=n") == f"/chat/x?token={REDACTED}&name=n"
    line = redact_target("GET /chat/x?token=abc HTTP/1.1")
    assert line == f"GET /chat/x?token={REDACTED} HTTP/1.1"
    assert redact_target("/plain/path") == "/plain/path"


def test_redact_text_finds_secrets_in_free_text():
    text = "Invalid http version: 'GET /c?name=a&token=SECRET HTTP/1.2' key=K2 x=1"
    assert redact_text(text) == (
        f"Invalid http version: 'GET /c?name=a&token={REDACTED} HTTP/1.2' key={REDACTED} x=1"
    )


def test_safe_environ():
    env = {
        "PATH_INFO": "/a\nb",
        "QUERY_STRING": "token=t0k",
        "RAW_URI": "/a%0ab?token=t0k",
        "HTTP_AUTHORIZATION": "Bearer t0k",
        "HTTP_COOKIE": "s=t0k",
        "HTTP_USER_AGENT": 'evil "\x1b',
        "wsgi.input": object(),
    }
    safe = logsafe.safe_environ(env)
    assert safe["PATH_INFO"] == "/a\\x0ab"
    assert safe["QUERY_STRING"] == f"token={REDACTED}"
    assert safe["RAW_URI"] == f"/a%0ab?token={REDACTED}"
    assert safe["HTTP_AUTHORIZATION"] == safe["HTTP_COOKIE"] == REDACTED
    assert safe["HTTP_USER_AGENT"] == "evil \\x22\\x1b"
    assert safe["wsgi.input"] is env["wsgi.input"]
    assert "t0k" not in repr({k: v for k, v in safe.items() if isinstance(v, str)})


def test_access_log_view_swaps_and_restores():
    class Handler:
        pass

    class Headers:
        def items(self):
            return [("Authorization", "Bearer t0k"), ("X-Evil", "a\nb")]

    h = Handler()
    h.requestline = "GET /x?token=t0k HTTP/1.1"
    h.environ = {"QUERY_STRING": "token=t0k"}
    h.headers = headers = Headers()
    with logsafe.access_log_view(h):
        assert h.requestline == f"GET /x?token={REDACTED} HTTP/1.1"
        assert h.environ["QUERY_STRING"] == f"token={REDACTED}"
        assert h.headers.items() == [("Authorization", REDACTED), ("X-Evil", "a\\x0ab")]
    assert h.requestline.endswith("t0k HTTP/1.1") and h.headers is headers
    bare = Handler()  # refused before a request line was parsed: nothing to swap
    with logsafe.access_log_view(bare):
        pass
    assert vars(bare) == {}
