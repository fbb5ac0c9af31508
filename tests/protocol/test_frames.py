"""The frame layer without sockets: every RFC 6455 rule our parser enforces."""

from __future__ import annotations

import os
import struct

import pytest

from wsapp.protocol import frames
from wsapp.protocol.close import is_valid_close_code
from wsapp.protocol.frames import (
    Close,
    CloseCode,
    Opcode,
    Parser,
    Ping,
    Pong,
    ProtocolError,
    apply_mask,
    encode_close_payload,
    encode_frame,
    encode_header,
    parse_close_payload,
)
from wsapp.protocol.utf8 import is_valid_utf8_prefix
from wsapp.speedups import select as speedups

LIMIT = 1 << 20


def cframe(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """A client frame: always masked with a random key."""
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=os.urandom(4))


def feed(data: bytes, limit: int = LIMIT, chunk: int | None = None) -> list:
    parser = Parser(limit)
    if chunk is None:
        return parser.feed(data)
    events = []
    for i in range(0, len(data), chunk):
        events += parser.feed(data[i : i + chunk])
    return events


def error_code(data: bytes, limit: int = LIMIT) -> int:
    with pytest.raises(ProtocolError) as info:
        feed(data, limit)
    return info.value.code


# --- encoding and lengths -------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_header_uses_minimal_length_encoding(length):
    header = encode_header(Opcode.BINARY, length)
    expected = 2 if length < 126 else 4 if length < 65536 else 10
    assert len(header) == expected
    assert header[0] == 0x82


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
@pytest.mark.parametrize("chunk", [None, 1, 7, 4096])
def test_binary_round_trip_at_boundary_lengths(length, chunk):
    payload = os.urandom(length)
    assert feed(cframe(Opcode.BINARY, payload), chunk=chunk) == [payload]


@pytest.mark.parametrize("length", [frames.WHOLE_PAYLOAD - 1, frames.WHOLE_PAYLOAD, 300_001])
@pytest.mark.parametrize("chunk", [None, 1000, 4093, 65536, 65537])
def test_large_binary_frame_between_others_in_any_reads(length, chunk):
    """A large binary payload is unmasked into the message as it arrives (Payload): the
    frames around it, a ping in the same read and every read boundary are unaffected."""
    payload = os.urandom(length)
    stream = (
        cframe(Opcode.TEXT, b"before") + cframe(Opcode.BINARY, payload)
        + cframe(Opcode.PING, b"p") + cframe(Opcode.BINARY, payload[:70_000])
        + cframe(Opcode.TEXT, b"after")
    )
    assert feed(stream, chunk=chunk) == [
        "before", payload, Ping(b"p"), payload[:70_000], "after"
    ]


@pytest.mark.parametrize("chunk", [None, 999, 65536])
def test_large_text_frame_in_any_reads_is_one_str(chunk):
    text = ("κόσμε 𝄞 ascii " * 9000)[:80_000]  # multi-byte characters across every boundary
    stream = cframe(Opcode.TEXT, text.encode()) + cframe(Opcode.TEXT, b"next")
    assert feed(stream, chunk=chunk) == [text, "next"]


def test_invalid_utf8_in_a_large_text_frame_fails_1007_before_the_frame_ends():
    payload = b"a" * 70_000 + b"\xff" + b"b" * 200_000
    parser = Parser(LIMIT)
    data = cframe(Opcode.TEXT, payload)
    with pytest.raises(ProtocolError) as info:
        for i in range(0, 100_000, 4096):  # well before the end of the frame
            parser.feed(data[i : i + 4096])
    assert info.value.code == CloseCode.INVALID_DATA


def test_large_text_frame_cut_inside_a_character_at_its_end_fails_1007():
    assert error_code(cframe(Opcode.TEXT, b"a" * 70_000 + "é".encode()[:1])) == (
        CloseCode.INVALID_DATA
    )


def test_large_binary_frame_over_the_limit_fails_1009_before_its_payload():
    header = cframe(Opcode.BINARY, b"x" * 70_000)[:14]  # the header and key only
    assert error_code(header, limit=69_999) == CloseCode.MESSAGE_TOO_BIG


def test_encode_replies_gathers_one_large_binary_message_without_copying_it():
    big = os.urandom(frames.GATHER_PAYLOAD)
    replies = frames.encode_replies([big])
    assert isinstance(replies, frames.Frames) and replies.messages == 1
    assert replies[1] is big and b"".join(replies) == frames.encode_message(big)
    assert frames.encode_parts(big)[1] is big
    small = [b"x" * 10, "y"]
    assert frames.encode_replies(small) == [frames.encode_message(m) for m in small]
    assert frames.encode_replies([big, b"z"]) == [frames.encode_message(big), b"\x82\x01z"]
    text = "tè" * 40_000  # over GATHER_PAYLOAD characters, not ASCII
    header, payload = frames.encode_parts(text)
    assert header + bytes(payload) == frames.encode_message(text)
    replies = frames.encode_replies([text])
    assert replies.messages == 1 and b"".join(replies) == frames.encode_message(text)


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_text_round_trip_at_boundary_lengths(length):
    text = "a" * length
    assert feed(cframe(Opcode.TEXT, text.encode())) == [text]


def test_server_frames_are_unmasked_and_client_frames_masked():
    assert encode_frame(Opcode.TEXT, b"hi") == b"\x81\x02hi"
    masked = encode_frame(Opcode.TEXT, b"hi", mask=b"\x01\x02\x03\x04")
    assert masked[1] & 0x80 and masked[2:6] == b"\x01\x02\x03\x04"
    assert masked[6:] == bytes([ord("h") ^ 1, ord("i") ^ 2])


def test_mask_is_its_own_inverse_for_every_offset():
    data = os.urandom(1001)
    mask = os.urandom(4)
    assert apply_mask(apply_mask(data, mask), mask) == data
    from wsapp.speedups.mask import py_mask

    assert py_mask(data, mask) == apply_mask(data, mask)


def test_stream_masker_keeps_offset_between_pieces():
    data = os.urandom(103)
    mask = os.urandom(4)
    masker = frames._StreamMasker(mask)
    pieces = [data[:1], data[1:6], data[6:50], data[50:]]
    assert b"".join(masker.process(p) for p in pieces) == apply_mask(data, mask)


def test_two_frames_in_one_read_and_one_frame_over_many_reads():
    data = cframe(Opcode.TEXT, b"one") + cframe(Opcode.BINARY, b"two")
    assert feed(data) == ["one", b"two"]
    assert feed(data, chunk=1) == ["one", b"two"]


# --- masking, RSV, opcodes --------------------------------------------------------------


def test_unmasked_client_frame_fails_1002():
    assert error_code(encode_frame(Opcode.TEXT, b"hi")) == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.CLOSE])
def test_rsv_bits_without_extension_fail_1002(rsv, opcode):
    assert error_code(cframe(opcode, b"", rsv=rsv)) == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_fail_1002(opcode):
    assert error_code(cframe(opcode, b"x")) == CloseCode.PROTOCOL_ERROR


def test_violation_is_reported_from_the_first_two_bytes():
    """No waiting for the rest of the header (or payload) once the frame is known bad."""
    parser = Parser(LIMIT)
    with pytest.raises(ProtocolError):
        parser.feed(b"\x83\x85")


# --- control frames -----------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 125])
def test_ping_and_pong_payloads_up_to_125(length):
    payload = os.urandom(length)
    assert feed(cframe(Opcode.PING, payload)) == [Ping(payload)]
    assert feed(cframe(Opcode.PONG, payload)) == [Pong(payload)]


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frame_over_125_bytes_fails_1002(opcode):
    assert error_code(cframe(opcode, b"\x03\xe8" + b"x" * 124)) == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_fragmented_control_frame_fails_1002(opcode):
    assert error_code(cframe(opcode, b"", fin=False)) == CloseCode.PROTOCOL_ERROR


# --- fragmentation ------------------------------------------------------------------------


def test_fragmented_text_is_reassembled_with_control_frames_between():
    data = (
        cframe(Opcode.TEXT, b"frag", fin=False)
        + cframe(Opcode.PING, b"p")
        + cframe(Opcode.CONTINUATION, b"men", fin=False)
        + cframe(Opcode.CONTINUATION, b"ted")
    )
    assert feed(data) == [Ping(b"p"), "fragmented"]


def test_fragmented_binary_with_empty_fragments():
    data = (
        cframe(Opcode.BINARY, b"", fin=False)
        + cframe(Opcode.CONTINUATION, b"\x00", fin=False)
        + cframe(Opcode.CONTINUATION, b"")
    )
    assert feed(data) == [b"\x00"]


def test_multibyte_character_split_across_fragments():
    encoded = "κόσμε".encode()
    data = b"".join(
        cframe(
            Opcode.TEXT if i == 0 else Opcode.CONTINUATION,
            encoded[i : i + 1],
            fin=i == len(encoded) - 1,
        )
        for i in range(len(encoded))
    )
    assert feed(data) == ["κόσμε"]


def test_continuation_without_start_fails_1002():
    assert error_code(cframe(Opcode.CONTINUATION, b"x")) == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_new_data_frame_inside_fragmented_message_fails_1002(opcode):
    data = cframe(Opcode.TEXT, b"a", fin=False) + cframe(opcode, b"b")
    assert error_code(data) == CloseCode.PROTOCOL_ERROR


# --- UTF-8 --------------------------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # surrogate U+D800
    b"\xed\xbf\xbf",  # surrogate U+DFFF
    b"\xf4\x90\x80\x80",  # > U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # 5-byte form
    b"\x80",  # lone continuation byte
    b"\xce\xba\xe1",  # truncated at end of message
]


@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_fails_1007(bad):
    assert error_code(cframe(Opcode.TEXT, b"ok" + bad)) == CloseCode.INVALID_DATA


@pytest.mark.parametrize("bad", INVALID_UTF8[:-1])
def test_invalid_utf8_fails_fast_inside_one_frame(bad):
    """The rest of the frame has not arrived yet: the invalid byte alone decides."""
    frame = cframe(Opcode.TEXT, b"a" * 50 + bad + b"b" * 5000)
    header_len = 2 + 2 + 4
    parser = Parser(LIMIT)
    with pytest.raises(ProtocolError) as info:
        parser.feed(frame[: header_len + 50 + len(bad)])
    assert info.value.code == CloseCode.INVALID_DATA


def test_invalid_utf8_fails_fast_across_fragments():
    parser = Parser(LIMIT)
    with pytest.raises(ProtocolError) as info:
        parser.feed(cframe(Opcode.TEXT, "κό".encode() + b"\xed\xa0", fin=False))
    assert info.value.code == CloseCode.INVALID_DATA


def test_character_cut_short_before_an_empty_final_fragment_fails_1007():
    data = cframe(Opcode.TEXT, "κ".encode()[:1], fin=False) + cframe(Opcode.CONTINUATION, b"")
    assert error_code(data) == CloseCode.INVALID_DATA


def test_valid_multibyte_text_survives_byte_by_byte_delivery():
    text = "Hello-µ@ßöäüàá-UTF-8!! 𝄞 κόσμε"
    assert feed(cframe(Opcode.TEXT, text.encode()), chunk=1) == [text]


def test_utf8_prefix_check():
    assert is_valid_utf8_prefix(b"\xe2\x82")
    assert is_valid_utf8_prefix(b"\xf0\x9f\x98")
    assert not is_valid_utf8_prefix(b"\xed\xa0")
    assert not is_valid_utf8_prefix(b"\xf4\x90")
    assert not is_valid_utf8_prefix(b"\xc1")


# --- close frames -------------------------------------------------------------------------

VALID_CODES = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
    3000, 3999, 4000, 4999,
]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_codes(code):
    assert is_valid_close_code(code)
    assert feed(cframe(Opcode.CLOSE, struct.pack("!H", code) + b"bye")) == [Close(code, "bye")]


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_codes_fail_1002(code):
    assert not is_valid_close_code(code)
    assert error_code(cframe(Opcode.CLOSE, struct.pack("!H", code))) == CloseCode.PROTOCOL_ERROR


def test_close_without_payload_has_no_code():
    assert feed(cframe(Opcode.CLOSE)) == [Close(None, "")]


def test_one_byte_close_payload_fails_1002():
    assert error_code(cframe(Opcode.CLOSE, b"\x03")) == CloseCode.PROTOCOL_ERROR


def test_close_reason_must_be_utf8():
    assert error_code(cframe(Opcode.CLOSE, b"\x03\xe8\xff")) == CloseCode.INVALID_DATA


def test_close_reason_of_123_bytes_is_accepted():
    assert feed(cframe(Opcode.CLOSE, b"\x03\xe8" + b"r" * 123)) == [Close(1000, "r" * 123)]


def test_encode_close_payload_carries_code_and_truncates_reason():
    assert encode_close_payload(1001, "bye") == b"\x03\xe9bye"
    assert len(encode_close_payload(1000, "é" * 100)) <= 125
    assert parse_close_payload(encode_close_payload(4000, "x")) == (4000, "x")
    assert encode_close_payload(None) == b""


def test_bytes_after_close_are_ignored():
    parser = Parser(LIMIT)
    assert parser.feed(cframe(Opcode.CLOSE, b"\x03\xe8") + cframe(Opcode.TEXT, b"late")) == [
        Close(1000, "")
    ]
    assert parser.feed(b"\xff\xff\xff") == []


# --- size limit ---------------------------------------------------------------------------


def test_message_of_exactly_the_limit_is_accepted():
    assert feed(cframe(Opcode.BINARY, b"x" * 1000), limit=1000) == [b"x" * 1000]


def test_frame_over_limit_refused_1009_from_the_header_alone():
    header = encode_header(Opcode.BINARY, 1001, masked=True) + b"\x00\x00\x00\x00"
    assert error_code(header, limit=1000) == CloseCode.MESSAGE_TOO_BIG


def test_huge_announced_length_refused_1009_without_payload():
    for length in (2**63 - 1, 2**63, 2**64 - 1):
        assert (
            error_code(encode_header(Opcode.BINARY, length, masked=True))
            == CloseCode.MESSAGE_TOO_BIG
        )


def test_fragmented_message_over_limit_refused_1009():
    data = cframe(Opcode.BINARY, b"x" * 600, fin=False) + cframe(Opcode.CONTINUATION, b"y" * 401)
    assert error_code(data, limit=1000) == CloseCode.MESSAGE_TOO_BIG
    ok = cframe(Opcode.BINARY, b"x" * 600, fin=False) + cframe(Opcode.CONTINUATION, b"y" * 400)
    assert feed(ok, limit=1000) == [b"x" * 600 + b"y" * 400]


def test_control_frames_do_not_count_towards_the_message_limit():
    data = (
        cframe(Opcode.TEXT, b"a" * 10, fin=False)
        + cframe(Opcode.PING, b"p" * 100)
        + cframe(Opcode.CONTINUATION, b"b" * 10)
    )
    assert feed(data, limit=20) == [Ping(b"p" * 100), "a" * 10 + "b" * 10]


def test_headers_alone_hold_at_most_the_prealloc_budget_then_memory_follows_the_data():
    """A large frame is allocated whole at its header only while the process-wide budget
    allows; past it the same frames still parse, assembled as their bytes arrive."""
    budget = 300_000
    parsers = [Parser(LIMIT, prealloc_bytes=budget) for _ in range(5)]
    payload = os.urandom(100_000)
    frames_ = [cframe(Opcode.BINARY, payload) for _ in parsers]
    before = speedups.payload_ahead()
    for parser, data in zip(parsers, frames_, strict=True):
        assert parser.feed(data[:14]) == []  # the header and the key: nothing of the payload
    assert speedups.payload_ahead() - before == 3 * 100_000  # three fit, two wait for data
    for parser, data in zip(parsers, frames_, strict=True):
        assert parser.feed(data[14:]) == [payload]
    assert speedups.payload_ahead() == before
    lost = Parser(LIMIT, prealloc_bytes=budget)
    lost.feed(frames_[0][:20_000])
    assert speedups.payload_ahead() - before == 100_000 - (20_000 - 14)
    del lost  # a connection that dies mid-frame gives its reservation back
    assert speedups.payload_ahead() == before
