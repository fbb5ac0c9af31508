"""Self-tests of the raw client's pure helpers (no server needed)."""

from __future__ import annotations

import pytest

from tests.support.rawws import (
    Op,
    ProtocolViolation,
    accept_key,
    close_payload,
    encode_frame,
    encode_header,
    handshake_request,
    mask_bytes,
    parse_close,
    split_fragments,
)


def test_accept_key_rfc_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 1000, 65537])
def test_mask_matches_per_byte_definition(n):
    key = b"\x01\x80\xfe\x37"
    data = bytes((i * 31) & 0xFF for i in range(n))
    want = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert mask_bytes(key, data) == want
    assert mask_bytes(key, want) == data


@pytest.mark.parametrize(
    "length,head",
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (2**63 - 1, b"\x81\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"),
    ],
)
def test_header_length_encodings(length, head):
    assert encode_header(Op.TEXT, length) == head


def test_header_bits_and_mask():
    assert encode_header(Op.PING, 0, fin=False, rsv=5, mask_key=b"abcd") == b"\x59\x80abcd"
    frame = encode_frame(Op.TEXT, b"Hello", mask=b"\x37\xfa\x21\x3d")
    assert frame == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # RFC 6455 5.7
    assert encode_frame(Op.TEXT, b"Hello", mask=False) == b"\x81\x05Hello"
    assert encode_frame(Op.BINARY, b"", length=10, mask=False) == b"\x82\x0a"


def test_close_payloads():
    assert close_payload(None) == b""
    assert close_payload(1000, "bye") == b"\x03\xe8bye"
    assert parse_close(b"") == (None, "")
    assert parse_close(b"\x03\xe9\xc3\xa9") == (1001, "\u00e9")
    with pytest.raises(ProtocolViolation):
        parse_close(b"\x03")
    with pytest.raises(ProtocolViolation):
        parse_close(b"\x03\xe8\xff")


def test_split_and_request():
    assert split_fragments(b"", 3) == [b""]
    assert split_fragments(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    req = handshake_request(
        "h", 1, "/echo", key="k", headers={"upgrade": "WebSocket"}, omit=("Connection",)
    )
    assert req.startswith(b"GET /echo HTTP/1.1\r\n")
    assert b"upgrade: WebSocket\r\n" in req and b"Upgrade: websocket" not in req
    assert b"Connection" not in req and req.endswith(b"\r\n\r\n")
