"""permessage-deflate's payload transformation (RFC 7692 7.2), no sockets: bounded inflate,
compressors with and without context takeover, their idle release."""

from __future__ import annotations

import zlib

import pytest

from wsapp.protocol import compression
from wsapp.protocol.compression import (
    BroadcastDeflate,
    Deflater,
    Inflater,
    SharedDeflater,
    broadcast_deflate,
    shared_deflater,
)
from wsapp.protocol.deflate import DeflateSettings
from wsapp.protocol.frames import CloseCode, ProtocolError


def client_compress(data: bytes, bits: int = 15, z=None) -> bytes:
    z = z or zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def client_inflate(data: bytes, bits: int, z=None) -> bytes:
    z = z or zlib.decompressobj(-bits)
    return z.decompress(data + compression.TAIL)


def test_inflate_in_pieces_then_finish():
    message = b"hello, compressed world " * 500
    data = client_compress(message)
    inflater = Inflater(15, keep_context=False)
    out = b"".join(inflater.inflate(data[i:i + 7], 1 << 20) for i in range(0, len(data), 7))
    assert out + inflater.finish(1 << 20) == message
    assert not inflater.active  # no context: nothing kept between messages


def test_inflate_output_is_bounded_while_inflating():
    """100 MiB of zeros in about 100 KiB: refused after at most the limit, not after 100 MiB."""
    bomb = client_compress(bytes(100 << 20))
    assert len(bomb) < 110 * 1024
    inflater = Inflater(15, keep_context=False)
    with pytest.raises(ProtocolError) as info:
        for i in range(0, len(bomb), 4096):
            inflater.inflate(bomb[i:i + 4096], 1 << 20)
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    assert i < 8192  # the first piece or two already inflates past 1 MiB
    assert not inflater.active


def test_room_is_inclusive():
    data = client_compress(b"x" * 1000)
    assert len(Inflater(15, False).inflate(data, 1000)) == 1000
    with pytest.raises(ProtocolError):
        Inflater(15, False).inflate(data, 999)
    with pytest.raises(ProtocolError):
        Inflater(15, False).inflate(data, 0)


def test_corrupt_data_is_1007():
    with pytest.raises(ProtocolError) as info:
        Inflater(15, False).inflate(b"\xff\xff\xff garbage", 1 << 20)
    assert info.value.code == CloseCode.INVALID_DATA


def test_a_window_larger_than_agreed_fails_to_inflate():
    """A client that compresses with a larger window than it was told refers too far back."""
    import random

    block = random.Random(1).randbytes(3000)
    data = client_compress(block * 3, bits=15)
    inflater = Inflater(9, False)
    # In pieces, as data arrives: a reference back past this call's own output must come
    # from the 512-byte window (zlib resolves one inside a single call's output anyway).
    with pytest.raises(ProtocolError) as info:
        for i in range(0, len(data), 256):
            inflater.inflate(data[i:i + 256], 1 << 20)
    assert info.value.code == CloseCode.INVALID_DATA


def test_context_takeover_keeps_the_inflater_between_messages():
    z = zlib.compressobj(6, zlib.DEFLATED, -12)
    inflater = Inflater(12, keep_context=True)
    message = b"a message that repeats itself " * 40
    for _ in range(3):
        data = client_compress(message, z=z)
        assert inflater.inflate(data, 1 << 20) + inflater.finish(1 << 20) == message
        assert inflater.active
    assert len(data) < 20  # the later ones only refer back


def test_a_final_block_ends_the_stream_and_the_next_message_starts_afresh():
    inflater = Inflater(15, keep_context=True)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = z.compress(b"last words") + z.flush(zlib.Z_FINISH)
    assert inflater.inflate(data, 100) + inflater.finish(100) == b"last words"
    assert not inflater.active
    assert inflater.inflate(client_compress(b"next"), 100) + inflater.finish(100) == b"next"


def test_data_after_a_final_block_is_refused():
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = z.compress(b"done") + z.flush(zlib.Z_FINISH) + b"more data hiding behind it"
    with pytest.raises(ProtocolError) as info:
        Inflater(15, False).inflate(data, 100)
    assert info.value.code == CloseCode.INVALID_DATA


def test_deflater_keeps_context_and_frees_it_when_idle():
    deflater = Deflater(1, 12, 5)
    inflater = zlib.decompressobj(-12)
    message = b"echo echo echo, a message worth compressing " * 10
    first = deflater.compress(message)
    second = deflater.compress(message)
    assert len(second) < len(first) // 4  # context takeover: a back reference
    assert client_inflate(first, 12, inflater) == message
    assert client_inflate(second, 12, inflater) == message
    assert deflater.active and deflater in compression._in_use
    now = deflater.last_used
    assert compression.release_idle(now + 1, idle=5) == 0 and deflater.active
    assert compression.release_idle(now + 5, idle=5) >= 1
    assert not deflater.active and deflater not in compression._in_use
    # A fresh compressor after the release refers to nothing earlier: the peer's inflater,
    # which kept its window, still decodes it.
    third = deflater.compress(message)
    assert len(third) > len(second)
    assert client_inflate(third, 12, inflater) == message
    deflater.release()


def test_shared_deflater_messages_stand_alone():
    shared = SharedDeflater(6, 12, 5)
    message = b"the same broadcast, sent twice " * 20
    first, second = shared.compress(message), shared.compress(message)
    assert first == second  # no context: the second does not refer to the first
    # Any client decodes each on its own, with a fresh inflater or one that kept context.
    assert client_inflate(first, 12) == message
    kept = zlib.decompressobj(-12)
    assert client_inflate(client_compress(b"other data"), 12, kept) == b"other data"
    assert client_inflate(second, 12, kept) == message


def test_shared_deflaters_are_one_per_parameters():
    assert shared_deflater(1, 12, 5) is shared_deflater(1, 12, 5)
    assert shared_deflater(1, 12, 5) is not shared_deflater(1, 11, 5)


def test_broadcast_deflate_threshold_and_suits():
    settings = DeflateSettings(threshold=100)
    broadcast = broadcast_deflate(settings)
    assert broadcast.text_frame(b"x" * 99) is None
    frame = broadcast.text_frame(b"x" * 100)
    assert frame[0] == 0xC1  # FIN, RSV1, text

    class Conn:
        broadcast_compressor = broadcast.deflater

    assert broadcast.suits(Conn()) and not broadcast.suits(object())
    assert broadcast_deflate(None).text_frame(b"x" * 1000) is None
    assert not BroadcastDeflate(None, 0).suits(Conn())
