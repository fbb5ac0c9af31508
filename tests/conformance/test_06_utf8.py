"""Family 6: UTF-8 in text messages (RFC 6455 8.1): valid text echoes, invalid text
fails the connection with 1007, and does so as soon as the invalid byte arrives."""

from __future__ import annotations

import time

import pytest

from tests.support.rawws import Op, encode_frame, encode_header, mask_bytes

from .conftest import TIMEOUT

VALID = {
    "ascii": b"Hello-world",
    "latin": "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!".encode(),
    "greek-kosme": "\u03ba\u1f79\u03c3\u03bc\u03b5".encode(),
    "3-byte-euro": "\u20ac".encode(),
    "4-byte-clef": "\U0001d11e".encode(),
    "max-U+10FFFF": "\U0010ffff".encode(),
    "U+FFFD": "\ufffd".encode(),
    "U+FFFF-noncharacter": "\uffff".encode(),
    "BOM": "\ufeffbom".encode(),
    "nul": b"a\x00b",
    "U+D7FF-last-before-surrogates": "\ud7ff".encode(),
    "U+E000-first-after-surrogates": "\ue000".encode(),
    "mixed": "a\u00e9\u20ac\U0001f600z".encode() * 20,
}

INVALID = {
    "ff": b"\xff",
    "fe": b"\xfe",
    "lone-continuation": b"\x80",
    "overlong-2-slash": b"\xc0\xaf",
    "overlong-2-nul": b"\xc0\x80",
    "overlong-c1": b"\xc1\xbf",
    "overlong-3": b"\xe0\x80\xaf",
    "overlong-4": b"\xf0\x80\x80\xaf",
    "surrogate-high": b"\xed\xa0\x80",
    "surrogate-low": b"\xed\xbf\xbf",
    "surrogate-pair-cesu": b"\xed\xa0\xbd\xed\xb8\x80",
    "above-U+10FFFF": b"\xf4\x90\x80\x80",
    "f5-lead": b"\xf5\x80\x80\x80",
    "5-byte": b"\xf8\x88\x80\x80\x80",
    "6-byte": b"\xfc\x84\x80\x80\x80\x80",
    "truncated-2-at-end": b"abc\xc3",
    "truncated-3-at-end": b"abc\xe2\x82",
    "truncated-4-at-end": b"abc\xf0\x9d\x84",
    "kosme-then-surrogate": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    "missing-continuation-mid": b"a\xe2\x82b",
}


@pytest.mark.parametrize("payload", list(VALID.values()), ids=list(VALID))
def test_valid_utf8_echoed(target, payload):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, payload)
        assert ws.recv_message() == (Op.TEXT, payload)
    target.assert_healthy()


@pytest.mark.parametrize(
    "payload",
    [VALID["greek-kosme"], VALID["4-byte-clef"] * 3, VALID["mixed"][:44]],
    ids=["greek-kosme", "3-clefs", "mixed-44-bytes"],
)
def test_valid_utf8_split_at_every_byte_across_two_fragments(target, payload):
    """Autobahn 6.2/6.4: fragment boundaries inside multi-byte characters are fine."""
    with target.connect() as ws:
        for cut in range(len(payload) + 1):
            ws.send_frame(Op.TEXT, payload[:cut], fin=False)
            ws.send_frame(Op.CONT, payload[cut:], fin=True)
            assert ws.recv_message() == (Op.TEXT, payload), f"cut at {cut}"
    target.assert_healthy()


@pytest.mark.parametrize("payload", list(INVALID.values()), ids=list(INVALID))
def test_invalid_utf8_single_frame_is_1007(target, payload):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, payload)
        ws.expect_close(1007)
    target.assert_healthy()


@pytest.mark.parametrize("payload", list(INVALID.values()), ids=list(INVALID))
def test_invalid_utf8_byte_by_byte_fragments_is_1007(target, payload):
    with target.connect() as ws:
        frames = [
            encode_frame(
                Op.TEXT if i == 0 else Op.CONT, payload[i : i + 1], fin=i == len(payload) - 1
            )
            for i in range(len(payload))
        ]
        for frame in frames:
            if not ws.try_send(frame):
                break
        ws.expect_close(1007)
    target.assert_healthy()


def test_invalid_utf8_in_binary_message_is_fine(target):
    with target.connect() as ws:
        blob = b"".join(INVALID.values())
        ws.send_frame(Op.BINARY, blob)
        assert ws.recv_message() == (Op.BINARY, blob)
    target.assert_healthy()


def _partial_frame(prefix: bytes, total: int) -> bytes:
    """Header (masked) announcing `total` bytes, followed by only `prefix` of the payload."""
    key = b"\x37\xfa\x21\x3d"
    return encode_header(Op.TEXT, total, fin=True, mask_key=key) + mask_bytes(key, prefix)


@pytest.mark.parametrize(
    "prefix",
    [b"\xff", b"valid start \xce\xba\xed\xa0\x80", b"a" * 1000 + b"\xc0\xaf", b"\xf4\x90\x80\x80"],
    ids=["ff-first", "surrogate-early", "overlong-after-1000", "above-max"],
)
def test_fail_fast_invalid_byte_at_start_of_big_frame(target, prefix):
    """Only the start of a 512 KiB frame is sent; the rest never comes. The invalid byte
    alone must get 1007 promptly (an incremental decoder fails fast)."""
    with target.connect() as ws:
        started = time.monotonic()
        ws.send_raw(_partial_frame(prefix, 512 * 1024))
        ws.expect_close(1007, timeout=TIMEOUT)
        assert time.monotonic() - started < TIMEOUT
    target.assert_healthy()


@pytest.mark.parametrize(
    "fragment",
    [
        b"\xff",
        b"Hello \xed\xa0\x80",
        b"\xc0\xaf",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
    ],
    ids=["ff", "surrogate", "overlong", "kosme-above-max"],
)
def test_fail_fast_invalid_first_fragment_without_fin(target, fragment):
    """A text fragment (FIN=0) that is already invalid: 1007 before the next fragment is sent."""
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, fragment, fin=False)
        ws.expect_close(1007)  # the continuation is never sent
    target.assert_healthy()


def test_fail_fast_invalid_second_fragment_without_fin(target):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, "\u03ba\u1f79".encode(), fin=False)
        ws.send_frame(Op.CONT, b"ok \xed\xa0\x80", fin=False)
        ws.expect_close(1007)
    target.assert_healthy()


def test_incomplete_sequence_at_fragment_end_is_not_an_error(target):
    """A fragment may end inside a character: no 1007 until the message ends."""
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"euro: \xe2\x82", fin=False)
        ws.send_frame(Op.PING, b"still alive?")
        assert ws.recv_pong() == b"still alive?"
        ws.send_frame(Op.CONT, b"\xac", fin=True)
        assert ws.recv_message() == (Op.TEXT, "euro: \u20ac".encode())
    target.assert_healthy()


@pytest.mark.parametrize(
    "tail", [b"\xe2\x82", b"\xf0\x9d", b"\xc3"], ids=["3-byte", "4-byte", "2-byte"]
)
def test_truncated_at_end_of_fragmented_message_is_1007(target, tail):
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"start ", fin=False)
        ws.send_frame(Op.CONT, b"end " + tail, fin=True)
        ws.expect_close(1007)
    target.assert_healthy()


@pytest.mark.parametrize(
    "tail", [b"\xe2\x82", b"\xf0\x9d", b"\xc3"], ids=["3-byte", "4-byte", "2-byte"]
)
def test_truncated_before_an_empty_final_fragment_is_1007(target, tail):
    """The message ends with an empty fragment after a character cut short."""
    with target.connect() as ws:
        ws.send_frame(Op.TEXT, b"end " + tail, fin=False)
        ws.send_frame(Op.CONT, b"", fin=True)
        ws.expect_close(1007)
    target.assert_healthy()
