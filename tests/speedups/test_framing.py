"""`_framing.c` against `pure` on the same input, and both against websockets' framing.

`scan_data_frames` and `encode_messages` must give the same events, the same byte counts
and the same errors in C and in Python (hypothesis input and edge cases); websockets'
`Frame` is an independent oracle for what well-formed frames must give.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode

from wsapp.speedups import mask, pure

try:
    from wsapp.speedups import _framing
except ImportError:  # reported by test_select.test_the_c_modules_are_built
    _framing = None

FUZZ = settings(
    max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

needs_c = pytest.mark.skipif(_framing is None, reason="C speedups not built")


def frame(opcode: int, payload: bytes, fin: bool = True, key: bytes | None = None,
          rsv: int = 0) -> bytes:
    """Any client frame, also the ones websockets refuses to write (RSV bits, long or
    fragmented control frames): masked with `key`, unmasked if it is b"" or None."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    bit = 0x80 if key else 0
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, bit | 127, n)
    return header + key + mask.py_mask(payload, key) if key else header + payload


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return frame(opcode, payload, fin=fin, key=b"\x37\xfa\x21\x3d")  # RFC 6455 5.7's key


def py_scan(data, limit: int) -> tuple[int, list]:
    events: list = []
    return pure.scan_data_frames(data, limit, events), events


def c_scan(data, limit: int) -> tuple[int, list]:
    events: list = []
    return _framing.scan_data_frames(data, limit, events), events


EDGE_CASES = [
    b"",
    b"\x81",
    masked(1, b"hello") + masked(2, b"\x00\xff" * 100),
    masked(1, b"x" * 125) + masked(1, b"y" * 126) + masked(2, b"z" * 65535),
    masked(2, b"big" * 30000),  # 64-bit length: left to the general parser
    masked(1, "κόσμε 𝄞".encode()) + masked(1, b"\xce\xba\xe1") + masked(1, b"after"),
    masked(1, b"ok") + masked(9, b"ping") + masked(1, b"later"),  # a control frame stops it
    masked(1, b"frag", fin=False) + masked(0, b"ment"),
    masked(1, b"whole") + masked(2, b"cut short")[:-3],
    masked(1, b"whole") + frame(1, b"unmasked", key=b""),
    masked(1, b"whole") + frame(1, b"rsv1", key=b"abcd", rsv=4),
    masked(1, b"a" * 300) + masked(1, b"b" * 5000),  # under and over the C stack buffer
    masked(1, b"a" * 511) + masked(1, b"b" * 512) + masked(1, b"c" * 513),
    masked(2, b"q" * 2000) + masked(1, b"limit"),
    masked(1, b"") + masked(2, b""),
    masked(1, b"\xed\xa0\x80"),  # a surrogate: not UTF-8 (RFC 3629)
    masked(1, b"\xf4\x90\x80\x80"),  # above U+10FFFF
]


@pytest.mark.parametrize("data", EDGE_CASES, ids=[str(i) for i in range(len(EDGE_CASES))])
@pytest.mark.parametrize("limit", [0, 5, 100, 1 << 20])
@needs_c
def test_scan_c_matches_python_on_edge_cases(data, limit):
    assert c_scan(data, limit) == py_scan(data, limit)
    assert c_scan(bytearray(data), limit) == py_scan(bytearray(data), limit)
    assert c_scan(memoryview(data), limit) == py_scan(memoryview(data), limit)


@st.composite
def frame_stream(draw) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        opcode = draw(st.sampled_from([1, 1, 2, 2, 0, 8, 9]))
        payload = draw(st.one_of(st.binary(max_size=700), st.text(max_size=200).map(str.encode)))
        key = draw(st.one_of(st.binary(min_size=4, max_size=4), st.just(b"")))
        fin = draw(st.booleans()) or opcode > 7
        parts.append(frame(opcode, payload, fin=fin, key=key))
    data = b"".join(parts)
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


@FUZZ
@given(data=frame_stream(), limit=st.sampled_from([0, 50, 600, 1 << 20]))
@needs_c
def test_scan_c_matches_python_on_random_streams(data, limit):
    assert c_scan(data, limit) == py_scan(data, limit)


@FUZZ
@given(data=st.binary(max_size=300), limit=st.sampled_from([0, 50, 1 << 20]))
@needs_c
def test_scan_c_matches_python_on_raw_bytes(data, limit):
    assert c_scan(data, limit) == py_scan(data, limit)


@st.composite
def data_messages(draw) -> list[str | bytes]:
    return draw(st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=3000)), max_size=8))


@FUZZ
@given(messages=data_messages())
@pytest.mark.parametrize("impl", ["c", "python"])
def test_scan_yields_exactly_what_websockets_framed(impl, messages):
    """Independent oracle: complete masked frames written by websockets come back as the
    very messages, and the scan consumes them all."""
    if impl == "c" and _framing is None:
        pytest.skip("C speedups not built")
    scan = _framing.scan_data_frames if impl == "c" else pure.scan_data_frames
    wire = b"".join(
        Frame(WsOpcode.TEXT if isinstance(m, str) else WsOpcode.BINARY,
              m.encode() if isinstance(m, str) else m).serialize(mask=True)
        for m in messages
    )
    events: list = []
    assert scan(wire, 1 << 20, events) == len(wire)
    assert events == messages


@pytest.mark.parametrize("impl", ["c", "python"])
def test_scan_refuses_what_it_cannot_use(impl):
    if impl == "c" and _framing is None:
        pytest.skip("C speedups not built")
    scan = _framing.scan_data_frames if impl == "c" else pure.scan_data_frames
    with pytest.raises(TypeError):
        scan(masked(1, b"x"), 100, ())  # events must be a list
    events: list = []
    assert scan(masked(1, b"x"), 100, events) == 7 and events == ["x"]


MESSAGES = ["", "hi", "é𝄞", "x" * 125, "x" * 126, "y" * 65535, "z" * 65536, b"", b"\x00",
            b"b" * 126, b"c" * 70000, bytearray(b"array"), memoryview(b"view")]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}-{len(m)}")
def test_encode_matches_websockets(message):
    if isinstance(message, str):
        expected = Frame(WsOpcode.TEXT, message.encode()).serialize(mask=False)
    else:
        expected = Frame(WsOpcode.BINARY, bytes(message)).serialize(mask=False)
    assert pure.encode_messages([message]) == [expected]
    if _framing is not None:
        assert _framing.encode_messages([message]) == [expected]


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300))))
@needs_c
def test_encode_c_matches_python_on_random_batches(messages):
    assert _framing.encode_messages(messages) == pure.encode_messages(messages)
    assert _framing.encode_messages(tuple(messages)) == pure.encode_messages(messages)


class Text(str):
    pass


@needs_c
def test_encode_c_and_python_agree_on_odd_input():
    odd = [Text("a str subclass"), memoryview(b"abcdef")[1:4], bytearray(300)]
    assert _framing.encode_messages(odd) == pure.encode_messages(odd)
    for impl in (_framing.encode_messages, pure.encode_messages):
        with pytest.raises(UnicodeEncodeError):
            impl(["ok", "\ud800"])  # a lone surrogate has no UTF-8
        with pytest.raises(TypeError):
            impl([42])  # not bytes-like
        with pytest.raises(BufferError):
            impl([memoryview(b"abcdef")[::2]])  # not contiguous


@FUZZ
@given(data=st.binary(max_size=2000), key=st.binary(min_size=4, max_size=4))
def test_every_masker_gives_the_same_bytes(data, key):
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert mask.py_mask(data, key) == expected
    assert mask.apply_mask(data, key) == expected
    assert mask.masker_name == "websockets.speedups"


PAYLOADS = [pure.Payload] + ([_framing.Payload] if _framing is not None else [])


@FUZZ
@given(
    data=st.binary(max_size=3000), key=st.binary(min_size=4, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
)
@pytest.mark.parametrize("kind", PAYLOADS, ids=lambda k: k.__module__.rsplit(".", 1)[-1])
def test_payload_unmasks_pieces_in_place_like_one_unmask(kind, data, key, cuts):
    """Written in any pieces (the mask continuing across them, RFC 6455 5.3), the payload
    is the whole masked data unmasked at once; from inside a larger buffer too."""
    masked_data = mask.py_mask(data, key)
    payload = kind(len(data), key)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in zip(bounds, bounds[1:], strict=False):
        around = b"<" * 3 + masked_data[start:end] + b">"  # the piece inside another buffer
        payload.write(bytearray(around), 3, end - start)
        assert payload.filled == end
        view = payload.written(start)
        assert view.readonly and bytes(view) == data[start:end]
    out = payload.take()
    assert type(out) is bytes and out == data


@FUZZ
@given(text=st.text(max_size=400), cuts=st.lists(st.integers(0, 1600), max_size=6))
@pytest.mark.parametrize("kind", PAYLOADS, ids=lambda k: k.__module__.rsplit(".", 1)[-1])
def test_text_payload_is_the_str_and_says_while_it_is_ascii(kind, text, cuts):
    data = text.encode()
    key = b"\x01\x80\x7f\xff"
    payload = kind(len(data), key, True)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    masked_data = mask.py_mask(data, key)
    for start, end in zip(bounds, bounds[1:], strict=False):
        payload.write(masked_data[start:end], 0, end - start)
        assert payload.ascii == data[:end].isascii()
        assert bytes(payload.written(start)) == data[start:end]
    out = payload.take()
    assert type(out) is str and out == text


@pytest.mark.parametrize("kind", PAYLOADS, ids=lambda k: k.__module__.rsplit(".", 1)[-1])
def test_text_payload_take_refuses_invalid_utf8(kind):
    payload = kind(2, b"\0\0\0\0", True)
    payload.write(b"\xc3(", 0, 2)
    assert not payload.ascii
    with pytest.raises(UnicodeDecodeError):
        payload.take()


@pytest.mark.parametrize("kind", PAYLOADS, ids=lambda k: k.__module__.rsplit(".", 1)[-1])
def test_payload_refuses_writes_out_of_bounds_and_early_or_second_takes(kind):
    with pytest.raises(ValueError):
        kind(4, b"abc")  # a mask is 4 bytes
    with pytest.raises(ValueError):
        kind(-1, b"abcd")
    payload = kind(4, b"abcd")
    with pytest.raises(ValueError):
        payload.write(b"123456", 0, 5)  # past the payload
    with pytest.raises(ValueError):
        payload.write(b"12", 1, 2)  # past the data
    with pytest.raises(ValueError):
        payload.write(b"12", -1, 1)
    with pytest.raises(ValueError):
        payload.take()  # not complete
    with pytest.raises(ValueError):
        payload.written(1)  # past what is written
    payload.write(b"\0\0\0\0", 0, 4)
    assert payload.take() == b"abcd"
    with pytest.raises(ValueError):
        payload.take()
    with pytest.raises(ValueError):
        payload.write(b"", 0, 0)  # taken: nothing more goes in
    assert kind(0, b"abcd").take() == b""


@FUZZ
@given(text=st.text(max_size=300))
@pytest.mark.parametrize("impl", ["c", "python"])
def test_utf8_lends_the_same_bytes_as_encode(impl, text):
    if impl == "c" and _framing is None:
        pytest.skip("C speedups not built")
    utf8 = (_framing.Utf8 if impl == "c" else pure.Utf8)(text)
    assert len(utf8) == len(text.encode()) and bytes(memoryview(utf8)) == text.encode()
    assert memoryview(utf8).readonly


@pytest.mark.parametrize("impl", ["c", "python"])
def test_utf8_refuses_what_is_not_a_valid_str(impl):
    if impl == "c" and _framing is None:
        pytest.skip("C speedups not built")
    kind = _framing.Utf8 if impl == "c" else pure.Utf8
    with pytest.raises(UnicodeEncodeError):
        kind("lone \ud800 surrogate")
    with pytest.raises(TypeError):
        kind(b"bytes")
