"""Property-based tests of the frame parser (issue 6): no input makes it misbehave.

- Any byte string, fed in any chunking, either yields events or raises ProtocolError,
  never another exception, and the same events whatever the chunking.
- Frames we encode with a mask parse back to exactly what was encoded.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsapp.protocol import frames
from wsapp.protocol.frames import Close, Opcode, Ping, Pong, ProtocolError

LIMIT = 4096
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_all(data: bytes, cuts: list[int]) -> tuple[list, ProtocolError | None]:
    parser = frames.Parser(LIMIT)
    events: list = []
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    try:
        for a, b in zip(bounds, bounds[1:], strict=False):
            events += parser.feed(data[a:b])
    except ProtocolError as exc:
        return events, exc
    # A violation found after events already handed out is raised by the next feed.
    return events, parser.error


@st.composite
def frame_soup(draw) -> bytes:
    """Mostly-plausible frames (so the parser gets deep), mixed with raw garbage."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            parts.append(draw(st.binary(max_size=40)))
            continue
        opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10, 3, 11]))
        payload = draw(st.one_of(st.binary(max_size=200), st.text(max_size=60).map(str.encode)))
        mask = draw(st.one_of(st.none(), st.binary(min_size=4, max_size=4)))
        fin = draw(st.booleans())
        rsv = draw(st.sampled_from([0, 0, 0, 1, 4]))
        parts.append(frames.encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask))
    return b"".join(parts)


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=600), frame_soup()),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_bytes_yield_events_or_protocol_error(data, cuts):
    events, error = feed_all(data, cuts)
    for event in events:
        assert isinstance(event, str | bytes | Ping | Pong | Close)  # str/bytes: a data message
    if error is not None:
        assert 1000 <= error.code <= 1014
    # Chunking never changes the outcome.
    whole_events, whole_error = feed_all(data, [])
    assert events == whole_events
    assert (error is None) == (whole_error is None)
    if error is not None:
        assert error.code == whole_error.code


@st.composite
def messages(draw):
    kind = draw(st.sampled_from(["text", "binary", "ping", "pong", "close"]))
    mask = draw(st.binary(min_size=4, max_size=4))
    if kind == "text":
        text = draw(st.text(max_size=300))
        return frames.encode_frame(Opcode.TEXT, text.encode(), mask=mask), text
    if kind == "binary":
        data = draw(st.binary(max_size=LIMIT))
        return frames.encode_frame(Opcode.BINARY, data, mask=mask), data
    if kind in ("ping", "pong"):
        data = draw(st.binary(max_size=125))
        op = Opcode.PING if kind == "ping" else Opcode.PONG
        want = Ping(data) if kind == "ping" else Pong(data)
        return frames.encode_frame(op, data, mask=mask), want
    code = draw(st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 3000, 4999]))
    reason = draw(st.text(max_size=30).filter(lambda r: len(r.encode()) <= 123))
    payload = frames.encode_close_payload(code, reason)
    return frames.encode_frame(Opcode.CLOSE, payload, mask=mask), Close(code, reason)


@FUZZ
@given(items=st.lists(messages(), max_size=8), cuts=st.lists(st.integers(0, 100_000), max_size=20))
def test_masked_frames_parse_back_identically(items, cuts):
    wire = b"".join(frame for frame, _ in items)
    expected = []
    for _, event in items:
        expected.append(event)
        if isinstance(event, Close):
            break  # nothing after a close frame is parsed
    events, error = feed_all(wire, cuts)
    assert error is None
    assert events == expected


@FUZZ
@given(
    text=st.text(min_size=1, max_size=200),
    size=st.integers(1, 50),
    mask=st.binary(min_size=4, max_size=4),
)
def test_fragmented_text_reassembles(text, size, mask):
    data = text.encode()
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    wire = b"".join(
        frames.encode_frame(
            Opcode.TEXT if i == 0 else Opcode.CONTINUATION, p, fin=i == len(pieces) - 1, mask=mask
        )
        for i, p in enumerate(pieces)
    )
    events, error = feed_all(wire, [len(wire) // 2])
    assert error is None and events == [text]
