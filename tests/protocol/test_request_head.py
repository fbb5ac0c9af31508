"""Request header parsing (`wsapp.protocol.request_head`), without sockets."""

from __future__ import annotations

import pytest

from wsapp.protocol.request_head import BadHeaderLine, parse_header_lines


def lines(*raw: bytes) -> list[bytes]:
    return [*raw, b"\r\n"]


def test_handshake_headers_are_found_case_insensitively_with_values_trimmed():
    h = parse_header_lines(
        lines(
            b"Host: example.com\r\n", b"Upgrade:websocket\r\n", b"sec-websocket-key:  abc== \t\r\n"
        )
    )
    assert h.get("host") == "example.com"
    assert h.get("UPGRADE") == "websocket"
    assert h.getheader("Sec-WebSocket-Key") == "abc=="
    assert h.get("Origin") is None and h.get("Origin", "-") == "-"
    assert h.status == ""


def test_pywsgi_view_keeps_every_header_in_order_including_repeats():
    h = parse_header_lines(
        lines(b"Host: a\r\n", b"X-Tag: one\r\n", b"x-tag: two\r\n", b"Content-Type: text/plain\r\n")
    )
    assert list(h.headers) == [
        "Host: a\r\n",
        "X-Tag: one\r\n",
        "x-tag: two\r\n",
        "Content-Type: text/plain\r\n",
    ]
    assert h.get("x-tag") == "one"
    assert h.typeheader == "text/plain"
    del h["X-TAG"]
    assert h.get("x-tag") is None and "Host" in h and "X-Tag" not in h


def test_bare_lf_line_endings_and_an_empty_value_are_accepted():
    h = parse_header_lines([b"Host: a\n", b"X-Empty:\n", b"\n"])
    assert h.items() == [("Host", "a"), ("X-Empty", "")]


def test_obs_fold_is_replaced_by_one_space():
    """RFC 9112 5.2: a server may replace obs-fold with SP (the email parser kept CRLF + SP
    inside the value, which then reached the WSGI environ)."""
    h = parse_header_lines(
        lines(b"X-Long: first\r\n", b"   second\r\n", b"\tthird\r\n", b"Host: a\r\n")
    )
    assert h.get("x-long") == "first second third"
    assert h.get("host") == "a"


def test_latin1_bytes_in_values_are_kept_as_latin1_text():
    assert parse_header_lines(lines(b"X-Name: caf\xe9\r\n")).get("x-name") == "caf\xe9"


def test_lines_stop_at_the_blank_line():
    h = parse_header_lines([b"Host: a\r\n", b"\r\n", b"Not-A-Header: b\r\n"])
    assert h.items() == [("Host", "a")]


@pytest.mark.parametrize(
    "bad",
    [
        b"no colon here\r\n",  # the email parser silently dropped this and every later header
        b"Host : a\r\n",  # whitespace before the colon (RFC 9112 5.1 requires a 400)
        b": no name\r\n",
        b"Bad Name: x\r\n",
        b"Na\x00me: x\r\n",
        b"N\xe4me: x\r\n",
    ],
)
def test_malformed_lines_are_refused(bad: bytes):
    with pytest.raises(BadHeaderLine):
        parse_header_lines(lines(b"Host: a\r\n", bad, b"Upgrade: websocket\r\n"))


@pytest.mark.parametrize(
    "bad",
    [
        b"X-Nul: a\x00b\r\n",  # RFC 9110 5.5: NUL, CR, LF in a value: refuse (or replace)
        b"X-Cr: a\rb\r\n",
        b"X-Cr-End: ab\r\r\n",  # a bare CR before the line ending is in the value
        b"X-Esc: \x1b[31mred\r\n",
        b"X-Del: a\x7fb\r\n",
        b"X-Vt: a\x0bb\r\n",
        b" \x00folded\r\n",  # an obs-fold continuation of the line above, checked the same way
    ],
)
def test_control_characters_in_values_are_refused(bad: bytes):
    with pytest.raises(BadHeaderLine, match="control character"):
        parse_header_lines(lines(b"Host: a\r\n", bad, b"Upgrade: websocket\r\n"))


def test_htab_sp_vchar_and_obs_text_are_field_content():
    h = parse_header_lines(lines(b"X-Ok: a\tb c~!\x80\xff\r\n"))
    assert h.get("x-ok") == "a\tb c~!\x80\xff"


def test_a_second_host_line_is_refused():
    """RFC 9112 3.2: more than one Host line is a 400 (the environ would join them)."""
    with pytest.raises(BadHeaderLine, match="more than one Host"):
        parse_header_lines(lines(b"Host: a\r\n", b"host: b\r\n"))


def test_a_block_cannot_start_with_a_continuation_line():
    with pytest.raises(BadHeaderLine):
        parse_header_lines(lines(b" folded\r\n", b"Host: a\r\n"))
