"""The session with permessage-deflate negotiated: bytes in, bytes out (RFC 7692 6, 7.2)."""

from __future__ import annotations

import zlib

import pytest

from wsapp.protocol import compression
from wsapp.protocol.deflate import DeflateSettings, negotiate
from wsapp.protocol.frames import Opcode, encode_frame
from wsapp.protocol.session import CloseCause, Session, State

MASK = b"\x0a\x0b\x0c\x0d"
BROWSER = "permessage-deflate; client_max_window_bits"


def client(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=MASK)


def squeeze(data: bytes, bits: int = 12) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -bits)
    return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def deflate_session(offer: str = BROWSER, settings: DeflateSettings | None = None,
                    limit: int = 1 << 20) -> Session:
    s = Session(limit)
    s.enable_deflate(negotiate(offer, settings or DeflateSettings()))
    return s


def close_code_of(frame: bytes) -> int:
    assert frame[0] == 0x88, frame
    return int.from_bytes(frame[2:4], "big")


def test_compressed_text_and_binary_come_out_inflated():
    s = deflate_session()
    s.receive_data(client(Opcode.TEXT, squeeze("héllo ✓".encode()), rsv=4)
                   + client(Opcode.BINARY, squeeze(b"\x00" * 1000), rsv=4)
                   + client(Opcode.TEXT, b"plain"))
    assert s.events_received() == ["héllo ✓", b"\x00" * 1000, "plain"]


def test_fragmented_compressed_message_split_anywhere():
    s = deflate_session()
    text = ("fragments of a compressed message, ünïcode included " * 200).encode()
    data = squeeze(text)
    stream = b"".join(
        client(Opcode.TEXT if i == 0 else Opcode.CONTINUATION, data[i:i + 100],
               fin=i + 100 >= len(data), rsv=4 if i == 0 else 0)
        for i in range(0, len(data), 100)
    )
    for i in range(0, len(stream), 33):  # bytes in odd pieces, across headers and characters
        s.receive_data(stream[i:i + 33])
    assert s.events_received() == [text.decode()]


def test_empty_final_fragment_ends_a_compressed_message():
    s = deflate_session()
    data = squeeze(b"abc" * 100)
    s.receive_data(client(Opcode.BINARY, data, fin=False, rsv=4) + client(Opcode.CONTINUATION, b""))
    assert s.events_received() == [b"abc" * 100]


@pytest.mark.parametrize("frames,reason", [
    ([client(Opcode.TEXT, b"x", fin=False), client(Opcode.CONTINUATION, b"y", rsv=4)],
     "continuation"),
    ([client(Opcode.TEXT, squeeze(b"x" * 50), fin=False, rsv=4),
      client(Opcode.CONTINUATION, b"y", rsv=4)], "continuation"),
    ([client(Opcode.PING, b"p", rsv=4)], "control"),
    ([client(Opcode.CLOSE, b"\x03\xe8", rsv=4)], "control"),
    ([client(Opcode.TEXT, squeeze(b"x"), rsv=2)], "RSV2"),
    ([client(Opcode.TEXT, squeeze(b"x"), rsv=6)], "RSV2"),
])
def test_rsv_rules_fail_with_1002(frames, reason):
    s = deflate_session()
    s.receive_data(b"".join(frames))
    out = s.data_to_send()
    assert close_code_of(out[-1]) == 1002 and reason in s.close_reason
    assert s.cause is CloseCause.PROTOCOL_ERROR and s.close_expected()


def test_rsv1_without_deflate_stays_1002():
    s = Session(1 << 20)
    s.receive_data(client(Opcode.TEXT, squeeze(b"x"), rsv=4))
    assert close_code_of(s.data_to_send()[-1]) == 1002


def test_corrupt_data_is_1007_and_earlier_messages_are_still_handed_out():
    s = deflate_session()
    s.receive_data(client(Opcode.TEXT, squeeze(b"first"), rsv=4)
                   + client(Opcode.TEXT, b"\xff\xfe\xfd not deflate", rsv=4))
    assert s.events_received() == ["first"]
    assert close_code_of(s.data_to_send()[-1]) == 1007
    assert s.cause is CloseCause.INVALID_DATA


def test_invalid_utf8_after_inflating_is_1007():
    s = deflate_session()
    s.receive_data(client(Opcode.TEXT, squeeze(b"ok \xc3\x28 not ok"), rsv=4))
    assert close_code_of(s.data_to_send()[-1]) == 1007


def test_bomb_is_1009_after_at_most_the_limit():
    """About 100 KiB that would inflate to 100 MiB: 1009, having produced at most 1 MiB."""
    s = deflate_session(limit=1 << 20)
    bomb = squeeze(bytes(100 << 20))
    frame = client(Opcode.BINARY, bomb, rsv=4)
    s.receive_data(frame[:4096])
    assert close_code_of(s.data_to_send()[-1]) == 1009
    assert s.cause is CloseCause.TOO_BIG and s.events_received() == []


def test_limit_counts_inflated_bytes_across_fragments():
    s = deflate_session(limit=10_000)
    z = zlib.compressobj(6, zlib.DEFLATED, -12)
    first = z.compress(b"a" * 6000) + z.flush(zlib.Z_SYNC_FLUSH)
    second = (z.compress(b"b" * 6000) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    s.receive_data(client(Opcode.BINARY, first, fin=False, rsv=4))
    assert s.data_to_send() == []
    s.receive_data(client(Opcode.CONTINUATION, second))
    assert close_code_of(s.data_to_send()[-1]) == 1009


def test_compressed_wire_size_has_its_own_bound():
    s = deflate_session(limit=1000)
    # RSV1 binary, masked, a 64-bit length of a million: over 2 x 1000 + 1024 wire bytes
    header = bytes([0xC2, 0xFF]) + (10**6).to_bytes(8, "big")
    s.receive_data(header + MASK)
    assert close_code_of(s.data_to_send()[-1]) == 1009


def test_sends_are_compressed_from_the_threshold_on():
    s = deflate_session(settings=DeflateSettings(threshold=100))
    inflater = zlib.decompressobj(-12)  # the client's: it sees every compressed message

    def inflate(frame: bytes) -> bytes:
        start = {126: 4, 127: 10}.get(frame[1], 2)  # server frames: unmasked
        return inflater.decompress(frame[start:] + compression.TAIL)

    small = s.encode_message("x" * 99)
    assert small[0] == 0x81 and small.endswith(b"x" * 99)
    text = " ".join(f"word{i * 7919 % 1000}" for i in range(100))
    big = s.encode_message(text)
    assert big[0] == 0xC1 and len(big) < len(text) and inflate(big) == text.encode()
    binary = s.encode_message(b"\x01" * 120)
    assert binary[0] == 0xC2 and inflate(binary) == b"\x01" * 120
    forced = s.encode_message("z" * 120, binary=True)
    assert forced[0] == 0xC2 and inflate(forced) == b"z" * 120
    # context takeover (the default outside rooms): the same message again is a reference
    again = s.encode_message(text)
    assert len(again) < len(big) // 5 and inflate(again) == text.encode()


def test_server_no_context_takeover_uses_the_shared_compressor():
    s = deflate_session(BROWSER, DeflateSettings().for_rooms())
    assert type(s.compressor) is compression.SharedDeflater
    one, two = s.encode_message("r" * 500), s.encode_message("r" * 500)
    assert one == two  # each message stands alone


def test_encode_messages_without_deflate_is_the_plain_batch():
    s = Session(1 << 20)
    assert s.encode_messages(["a", b"b"]) == [b"\x81\x01a", b"\x82\x01b"]
    d = deflate_session()
    assert d.encode_messages(["a", "q" * 300])[0] == b"\x81\x01a"


def test_closing_lets_the_zlib_state_go():
    s = deflate_session()
    s.encode_message("w" * 1000)
    assert s.compressor.active
    s.receive_data(client(Opcode.BINARY, squeeze(b"q" * 1000), fin=False, rsv=4))
    assert s.parser.inflater.active
    s.close()
    assert not s.compressor.active and s.parser.inflater.active  # the reply may still come
    s.receive_eof()
    assert s.state is State.CLOSED and not s.parser.inflater.active


def test_whole_compressed_frames_between_plain_ones_in_one_read():
    """The scan for whole compressed frames and the C scan for plain ones take turns."""
    s = deflate_session()
    stream = b"".join([
        client(Opcode.TEXT, b"plain 1"),
        client(Opcode.TEXT, squeeze("compressed ✓".encode()), rsv=4),
        client(Opcode.BINARY, squeeze(b"\x00\x01" * 3000), rsv=4),
        client(Opcode.BINARY, b"plain 2"),
        client(Opcode.TEXT, squeeze(b"z" * 70000), rsv=4),  # a 16-bit length
        client(Opcode.PING, b"p"),
        client(Opcode.TEXT, squeeze(b"after the ping"), rsv=4),
    ])
    s.receive_data(stream)
    assert s.events_received() == [
        "plain 1", "compressed ✓", b"\x00\x01" * 3000, b"plain 2", "z" * 70000, "after the ping",
    ]
    assert s.data_to_send() == [encode_frame(Opcode.PONG, b"p")]


def test_whole_frame_bomb_and_bad_utf8_fail_the_same_way():
    s = deflate_session(limit=1 << 20)
    s.receive_data(client(Opcode.TEXT, squeeze(b"fine"), rsv=4)
                   + client(Opcode.BINARY, squeeze(bytes(2 << 20)), rsv=4))
    assert s.events_received() == ["fine"]
    assert close_code_of(s.data_to_send()[-1]) == 1009
    t = deflate_session()
    t.receive_data(client(Opcode.TEXT, squeeze(b"\xff not utf-8"), rsv=4))
    assert close_code_of(t.data_to_send()[-1]) == 1007


def test_client_context_takeover_across_whole_and_fragmented_messages():
    s = deflate_session("permessage-deflate", DeflateSettings(client_context_takeover=True))
    assert not s.deflate.client_no_context_takeover
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    message = bytes(range(256)) * 8 + b"context is kept from one message to the next"

    def piece() -> bytes:
        return (z.compress(message) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]

    whole = piece()
    s.receive_data(client(Opcode.BINARY, whole, rsv=4))
    again = piece()
    assert len(again) < len(whole) // 4  # refers back into the first message
    s.receive_data(client(Opcode.BINARY, again[:3], fin=False, rsv=4)
                   + client(Opcode.CONTINUATION, again[3:]))
    s.receive_data(client(Opcode.BINARY, piece(), rsv=4))
    assert s.events_received() == [message] * 3
