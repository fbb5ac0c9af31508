"""Family 12 (after Autobahn's section 12): permessage-deflate data, RFC 7692 7.2.

JSON, text, binary and incompressible payloads from 16 bytes to 128 KiB, each kind sent as
one frame and fragmented (the compressed bytes cut into frames of 256 B to 32 KiB, as
Autobahn's auto-fragmentation does), hundreds of messages per case on one connection,
every echo checked by length and CRC-32. The client compresses every message with the
negotiated window and inflates the server's with the window the server announced
(`tests.support.deflate_client`), so a server that compresses with a larger window or
keeps context it said it would not fails here. The offer is the one every browser sends.

Then the failures: data that does not inflate (1007; RFC 7692 names no code: 1007 is
RFC 6455 7.4.1's "data inconsistent with the type of the message", as in wsproto, while
websockets sends 1002), RSV1 on a continuation or a control frame (1002: RFC 7692 6.1
allows it on the first frame of a data message only), RSV2 (1002), and a message that
inflates past WSAPP_MAX_MESSAGE_BYTES (1009, refused while inflating).
"""

from __future__ import annotations

import functools
import json
import os
import random
import zlib

import pytest

from tests.support.deflate_client import DeflateWS, echo_many
from tests.support.rawws import Op, encode_frame

BROWSER_OFFER = "permessage-deflate; client_max_window_bits"
SIZES = [16, 64, 256, 1024, 4096, 16384, 65536, 131072]
FRAGMENTS = [None, 256, 1024, 4096, 32768]
#: Messages per size: 200 of each size up to 1 KiB, fewer big ones (256 KiB per size at
#: most): 886 messages per case.
COUNT = {size: max(2, min(200, (256 * 1024) // size)) for size in SIZES}

WORDS = str.split(
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "so no will can more other its into than some could them only time new about déjà vu "
    "naïve café ✓ 你好 🚀"
)


def _text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += rng.choice(WORDS).encode() + b" "
    # Cut at a character boundary: drop a partial UTF-8 sequence at the end.
    data = bytes(out[:size])
    return data.decode("utf-8", "ignore").encode("utf-8")


def _json(rng: random.Random, size: int) -> bytes:
    """A JSON array of chat events, as long as fits in `size` (one event at least)."""
    items: list[bytes] = []
    length = 2
    while True:
        item = json.dumps({
            "type": "message", "id": f"{rng.randrange(10**12)}-{rng.randrange(9)}", "room": "lobby",
            "name": rng.choice(["ann", "bob", "chloé", "dmitri"]),
            "text": _text(rng, rng.randrange(8, 120)).decode(), "ts": round(rng.random() * 1e9, 3),
        }, ensure_ascii=False, separators=(",", ":")).encode()
        if items and length + len(item) + 1 > size:
            return b"[" + b",".join(items) + b"]"
        items.append(item)
        length += len(item) + 1


def _binary(rng: random.Random, size: int) -> bytes:
    # Structured records: compressible, with every byte value present.
    out = bytearray()
    while len(out) < size:
        out += bytes([rng.randrange(256), 0, 0, rng.randrange(4)])
        out += rng.randrange(1 << 16).to_bytes(4, "big")
    return bytes(out[:size])


def _random(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


KINDS = {
    "json": (Op.TEXT, _json),
    "text": (Op.TEXT, _text),
    "binary": (Op.BINARY, _binary),
    "incompressible": (Op.BINARY, _random),
}


@functools.cache
def messages(kind: str) -> list[tuple[int, bytes]]:
    """The case's messages, the same in every serving mode (made once)."""
    opcode, make = KINDS[kind]
    rng = random.Random(zlib.crc32(kind.encode()))
    return [(opcode, make(rng, size)) for size in SIZES for _ in range(COUNT[size])]


def connect(target, offer: str | None = BROWSER_OFFER, **kwargs) -> DeflateWS:
    kwargs.setdefault("timeout", target_timeout(target))
    return DeflateWS.connect(target.url, offer, **kwargs)


def target_timeout(target) -> float:
    return max(5.0, float(os.environ.get("WSAPP_CONFORMANCE_TIMEOUT", "2.0")))


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda f: f"frag{f}" if f else "oneframe")
@pytest.mark.parametrize("kind", list(KINDS))
def test_deflate_echo(target, kind, fragment):
    batch = messages(kind)
    with connect(target, level=1) as ws:
        assert ws.negotiated is not None, f"permessage-deflate declined: {ws.ws.response.headers}"
        echo_many(ws, batch, fragment=fragment, timeout=60)
        if kind != "incompressible":
            # Echoes at or over the threshold came back compressed (RSV1).
            assert ws.compressed_received >= sum(1 for _, p in batch if len(p) >= 128)
        ws.ws.send_close(1000)
        ws.ws.expect_close(1000, timeout=5)


def test_uncompressed_messages_still_accepted(target):
    """RSV1 marks a compressed message; a client may send any message uncompressed."""
    batch = messages("text")[:300]
    with connect(target) as ws:
        ws.compress_sends = False
        echo_many(ws, batch, timeout=30)
        ws.compress_sends = True
        echo_many(ws, batch[:50], fragment=1024, timeout=30)


def test_per_fragment_flush_and_empty_message(target):
    """Each fragment compressed and sync-flushed on its own (as websockets sends them), an
    empty compressed message, and a message ended by a final (BFINAL) block."""
    with connect(target) as ws:
        payload = _text(random.Random(3), 20000)
        pieces = [payload[i:i + 3000] for i in range(0, len(payload), 3000)]
        z = zlib.compressobj(6, zlib.DEFLATED, -ws.client_bits)
        frames = []
        for index, piece in enumerate(pieces):
            data = z.compress(piece) + z.flush(zlib.Z_SYNC_FLUSH)
            if index == len(pieces) - 1:
                data = data[:-4]
            frames.append(encode_frame(Op.TEXT if index == 0 else Op.CONT, data,
                                       fin=index == len(pieces) - 1, rsv=4 if index == 0 else 0))
        ws.ws.send_raw(b"".join(frames))
        assert ws.recv_message() == (Op.TEXT, payload)
        ws.ws.send_frame(Op.BINARY, b"\x00", rsv=4)  # empty payload, compressed
        assert ws.recv_message() == (Op.BINARY, b"")
        final = zlib.compressobj(6, zlib.DEFLATED, -ws.client_bits)
        body = final.compress(b"final block " * 50) + final.flush(zlib.Z_FINISH)
        ws.ws.send_frame(Op.BINARY, body, rsv=4)
        assert ws.recv_message() == (Op.BINARY, b"final block " * 50)
        ws.send_message(Op.TEXT, b"after the final block " * 20)
        assert ws.recv_message() == (Op.TEXT, b"after the final block " * 20)


# --- failures ----------------------------------------------------------------------------


def test_corrupt_data_is_1007(target):
    with connect(target) as ws:
        ws.send_message(Op.TEXT, b"a good one first " * 20)
        ws.ws.send_frame(Op.TEXT, b"\xff\xff\xff\xff not deflate data", rsv=4)
        assert ws.recv_message() == (Op.TEXT, b"a good one first " * 20)
        ws.ws.expect_close(1007)
    target.assert_healthy()


def test_corrupt_data_in_a_later_fragment_is_1007(target):
    with connect(target) as ws:
        good = ws.compress(b"x" * 5000)
        ws.ws.send_frame(Op.BINARY, good, fin=False, rsv=4)
        ws.ws.send_frame(Op.CONT, b"\x07\xff\xffgarbage", fin=True)
        ws.ws.expect_close(1007)
    target.assert_healthy()


def test_rsv1_on_continuation_is_1002(target):
    with connect(target) as ws:
        data = ws.compress(b"fragmented " * 100)
        ws.ws.send_frame(Op.TEXT, data[:10], fin=False, rsv=4)
        ws.ws.send_frame(Op.CONT, data[10:], fin=True, rsv=4)
        ws.ws.expect_close(1002)
    target.assert_healthy()


def test_rsv1_on_uncompressed_message_continuation_is_1002(target):
    with connect(target) as ws:
        ws.ws.send_frame(Op.TEXT, b"plain ", fin=False)
        ws.ws.send_frame(Op.CONT, ws.compress(b"then compressed"), fin=True, rsv=4)
        ws.ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize("opcode", [Op.PING, Op.PONG, Op.CLOSE], ids=["ping", "pong", "close"])
def test_rsv1_on_control_frame_is_1002(target, opcode):
    with connect(target) as ws:
        payload = b"\x03\xe8" if opcode == Op.CLOSE else b"ping"
        ws.ws.send_frame(opcode, payload, rsv=4)
        ws.ws.expect_close(1002)
    target.assert_healthy()


@pytest.mark.parametrize("rsv", [2, 1, 6], ids=["rsv2", "rsv3", "rsv1+rsv2"])
def test_other_rsv_bits_are_1002_with_deflate(target, rsv):
    with connect(target) as ws:
        ws.ws.send_frame(Op.TEXT, ws.compress(b"hello"), rsv=rsv)
        ws.ws.expect_close(1002)
    target.assert_healthy()


def test_message_inflating_past_the_limit_is_1009(target):
    """2 MiB of zeros compress to about 2 KiB: refused 1009 while inflating (1 MiB limit)."""
    with connect(target) as ws:
        bomb = ws.compress(bytes(2 << 20))
        assert len(bomb) < 8192
        ws.ws.send_frame(Op.BINARY, bomb, rsv=4)
        ws.ws.expect_close(1009)
    target.assert_healthy()


def test_message_inflating_to_exactly_the_limit_is_accepted(target):
    if target.max_message_bytes is None:
        pytest.skip("limit of the external server unknown")
    with connect(target) as ws:
        payload = bytes(target.max_message_bytes)
        ws.send_message(Op.BINARY, payload, fragment=4096)
        assert ws.recv_message(timeout=10) == (Op.BINARY, payload)
        ws.send_message(Op.BINARY, payload + b"\x00", fragment=4096)
        ws.ws.expect_close(1009)
    target.assert_healthy()


def test_fragmented_message_inflating_past_the_limit_is_1009(target):
    with connect(target) as ws:
        data = ws.compress(bytes(3 << 20))
        frames = [data[i:i + 512] for i in range(0, len(data), 512)]
        out = [encode_frame(Op.TEXT if i == 0 else Op.CONT, f, fin=i == len(frames) - 1,
                            rsv=4 if i == 0 else 0) for i, f in enumerate(frames)]
        ws.ws.try_send(b"".join(out))
        ws.ws.expect_close(1009)
    target.assert_healthy()


def test_invalid_utf8_inside_compressed_text_is_1007(target):
    with connect(target) as ws:
        ws.ws.send_frame(Op.TEXT, ws.compress(b"valid, then \xed\xa0\x80 a surrogate"), rsv=4)
        ws.ws.expect_close(1007)
    target.assert_healthy()
