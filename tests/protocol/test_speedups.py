"""The C loops (`wsapp/protocol/_speedups.c`) against the pure Python ones they replace.

`conftest.framing` already runs every frame-layer test both ways; these tests compare the
two directly on random and edge-case input, byte for byte and event for event.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsapp.protocol import frames
from wsapp.protocol.frames import ProtocolError

from .conftest import C_ENCODE, C_SCAN

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def test_speedups_are_built():
    """`make test` builds them (python -m wsapp.protocol.build_speedups --require)."""
    assert C_SCAN is not None and C_ENCODE is not None, "run: python -m wsapp.protocol.build_speedups"


def python_scan(data: bytes, limit: int) -> tuple[int, list]:
    events: list = []
    return frames.Parser(limit)._feed_fast(data, events), events


def c_scan(data: bytes, limit: int) -> tuple[int, list]:
    events: list = []
    return C_SCAN(data, limit, events), events


def masked(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    return frames.encode_frame(opcode, payload, fin=fin, mask=mask or os.urandom(4))


EDGE_CASES = [
    b"",
    masked(1, b"hello") + masked(2, b"\x00\xff" * 100),
    masked(1, b"x" * 125) + masked(1, b"y" * 126) + masked(2, b"z" * 65535),
    masked(2, b"big" * 30000),  # 64-bit length: left to the Python parser
    masked(1, "κόσμε 𝄞".encode()) + masked(1, b"\xce\xba\xe1") + masked(1, b"after"),  # invalid UTF-8 stops the scan
    masked(1, b"ok") + masked(9, b"ping") + masked(1, b"later"),  # control frame stops it
    masked(1, b"frag", fin=False) + masked(0, b"ment"),
    masked(1, b"whole") + masked(2, b"cut short")[:-3],
    masked(1, b"whole") + frames.encode_frame(1, b"unmasked"),
    masked(1, b"a" * 300) + masked(1, b"b" * 5000),  # over and under the C stack buffer
    masked(2, b"q" * 2000) + masked(1, b"limit"),
]


@pytest.mark.parametrize("data", EDGE_CASES)
@pytest.mark.parametrize("limit", [0, 100, 1 << 20])
def test_scan_matches_python_on_edge_cases(data, limit):
    assert c_scan(data, limit) == python_scan(data, limit)


@st.composite
def frame_stream(draw) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        opcode = draw(st.sampled_from([1, 1, 2, 2, 0, 8, 9]))
        payload = draw(st.one_of(st.binary(max_size=700), st.text(max_size=200).map(str.encode)))
        mask = draw(st.one_of(st.binary(min_size=4, max_size=4), st.none()))
        parts.append(frames.encode_frame(opcode, payload, fin=draw(st.booleans()) or opcode > 7, mask=mask))
    data = b"".join(parts)
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


@FUZZ
@given(data=frame_stream(), limit=st.sampled_from([0, 50, 600, 1 << 20]))
def test_scan_matches_python_on_random_streams(data, limit):
    assert c_scan(data, limit) == python_scan(data, limit)


@FUZZ
@given(data=frame_stream(), cut=st.integers(0, 5000))
def test_parser_gives_the_same_events_and_errors_with_and_without_c(data, cut, monkeypatch):
    def run() -> tuple[list, int | None]:
        parser = frames.Parser(1 << 20)
        events: list = []
        try:
            for chunk in (data[:cut], data[cut:]):
                events += parser.feed(chunk)
            error = parser.error
        except ProtocolError as exc:
            error = exc
        return events, (error.code if error is not None else None)

    monkeypatch.setattr(frames, "_c_scan_data_frames", C_SCAN)
    with_c = run()
    monkeypatch.setattr(frames, "_c_scan_data_frames", None)
    assert run() == with_c


MESSAGES = ["", "hi", "é𝄞", "x" * 125, "x" * 126, "y" * 65535, "z" * 65536, b"", b"\x00", b"b" * 126, b"c" * 70000,
            bytearray(b"array"), memoryview(b"view")]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}-{len(m)}")
def test_encode_matches_python(message):
    assert C_ENCODE([message]) == [frames.encode_message(message)]


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300))))
def test_encode_matches_python_on_random_batches(messages):
    assert C_ENCODE(messages) == [frames.encode_message(m) for m in messages]


def test_encode_refuses_what_python_refuses():
    with pytest.raises(UnicodeEncodeError):
        frames.encode_message("\ud800")
    with pytest.raises(UnicodeEncodeError):
        C_ENCODE(["ok", "\ud800"])
    with pytest.raises(TypeError):
        C_ENCODE([42])
