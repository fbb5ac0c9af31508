"""permessage-deflate's payload transformation (RFC 7692 7.2): bounded inflate, and deflate
per connection or once for many connections. zlib only; no sockets here.

- `Inflater` decompresses a connection's messages. The output is bounded *while* inflating
  (`decompress(data, max_length)`): a message never produces more than the room left under
  the message size limit, so a small frame that would inflate to gigabytes is refused
  (1009) after at most the limit. Data that does not inflate fails with 1007. Without
  client context takeover its zlib state lives only while a message arrives.
- `Deflater` compresses one connection's messages with context takeover (each message may
  refer to the ones before). Its zlib state is allocated on first use and let go by
  `release_idle` (the housekeeping loop) once the connection has sent nothing compressed
  for a while: a fresh compressor simply refers to nothing earlier, which the peer's
  inflater accepts (context takeover is a permission, not a duty: RFC 7692 7.1.1.1).
- `SharedDeflater` compresses without context takeover, one message after another, for any
  number of connections: `Z_FULL_FLUSH` ends each message and resets the compressor, so no
  message refers to another. One per (level, window, memLevel) in the process; a room
  broadcast is compressed once by it and the same bytes go to every member.
"""

from __future__ import annotations

import functools
import time
import zlib
from typing import TYPE_CHECKING, Protocol

from wsapp.protocol.frames import CloseCode, Opcode, ProtocolError, apply_mask, encode_frame

if TYPE_CHECKING:
    from wsapp.protocol.deflate import DeflateSettings

#: The empty stored block a sync (or full) flush ends with; removed by the sender and put
#: back by the receiver (RFC 7692 7.2.1, 7.2.2).
TAIL = b"\x00\x00\xff\xff"
#: RSV1 in `frames.encode_frame`'s rsv argument (bits RSV1..RSV3 as 4, 2, 1).
RSV1 = 4
#: Bytes allowed behind a final deflate block: what a sender that ended with BFINAL still
#: appends (an empty stored block, less the 4 octets it removes; RFC 7692 7.2.1) and our tail.
_AFTER_FINAL = 8


def _compressobj(level: int, window_bits: int, mem_level: int):  # noqa: ANN202 - zlib's type
    # Negative wbits: a raw deflate stream, no zlib header or checksum (RFC 7692 7.2.1).
    return zlib.compressobj(level, zlib.DEFLATED, -window_bits, mem_level)


class Compressor(Protocol):
    def compress(self, payload: bytes) -> bytes: ...


def compressed_frame(opcode: int, data: bytes) -> bytes:
    """A server frame carrying a compressed message: RSV1 set on it (RFC 7692 6)."""
    return encode_frame(opcode, data, rsv=RSV1)


class Inflater:
    """The decompressor of one connection; see the module docstring."""

    __slots__ = ("window_bits", "keep_context", "_z")

    def __init__(self, window_bits: int, keep_context: bool) -> None:
        self.window_bits = window_bits
        #: The client may refer to earlier messages: the zlib state outlives each message.
        self.keep_context = keep_context
        self._z = None

    @property
    def active(self) -> bool:
        """zlib state is allocated (a message is arriving, or context is kept)."""
        return self._z is not None

    def inflate(self, data: bytes, room: int) -> bytes:
        """Decompress the next piece of a message; at most `room` bytes may come out."""
        z = self._z
        if z is None:
            z = self._z = zlib.decompressobj(-self.window_bits)
        try:
            # max_length 0 would mean "no limit": room + 1 >= 1 detects one byte too many.
            out = z.decompress(data, room + 1)
        except zlib.error as exc:
            self._z = None
            reason = f"compressed data does not inflate: {exc}"
            raise ProtocolError(CloseCode.INVALID_DATA, reason) from None
        if len(out) > room:
            self._z = None
            reason = "message over the size limit once inflated"
            raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, reason)
        if z.eof and len(z.unused_data) > _AFTER_FINAL:
            # Bytes behind a final block (BFINAL) would be dropped unseen: refuse them.
            self._z = None
            reason = "compressed data after the final deflate block"
            raise ProtocolError(CloseCode.INVALID_DATA, reason)
        return out

    def finish(self, room: int) -> bytes:
        """End the message: put back the flush tail (7.2.2) and return what it releases."""
        z = self._z
        if z is None:
            return b""
        out = b""
        if not z.eof:
            out = self.inflate(TAIL, room)
        if not self.keep_context or z.eof:
            # A final block (BFINAL) ends the stream: the next message starts a new one.
            self._z = None
        return out

    def inflate_message(self, data: bytes, room: int) -> bytes:
        """A whole message in one piece: `inflate` then `finish`, in one zlib call when the
        data is small (copying it to append the tail costs less than a second call)."""
        if len(data) >= 2048:
            out = self.inflate(data, room)
            return out + self.finish(room - len(out))
        out = self.inflate(data + TAIL, room)
        if not self.keep_context or (self._z is not None and self._z.eof):
            self._z = None
        return out

    def release(self) -> None:
        self._z = None

    @staticmethod
    def wire_limit(max_message_bytes: int) -> int:
        """Wire bytes a compressed message may take (its inflated size is bounded by
        `max_message_bytes` itself): deflate can make data a little larger, and a sender
        that flushes every fragment adds a few bytes to each."""
        return 2 * max_message_bytes + 1024

    def scan_frames(self, data: bytes, pos: int, limit: int, events: list) -> int:
        """The parser's shortcut (`frames.Parser`) for whole compressed messages: take the
        complete, unfragmented, masked RSV1 data frames at `pos` (7- or 16-bit length),
        unmask, inflate within `limit`, decode text strictly, append to `events`; the
        position after them. Anything else is left to the parser's general path."""
        n = len(data)
        wire_limit = self.wire_limit(limit)
        while n - pos >= 6:
            b0 = data[pos]
            if b0 != 0xC1 and b0 != 0xC2:  # FIN and RSV1, text or binary
                break
            b1 = data[pos + 1]
            length = b1 & 0x7F
            if b1 < 0x80 or length == 127:
                break
            if length == 126:
                if n - pos < 8:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 8
            else:
                start = pos + 6
            end = start + length
            if end > n or length > wire_limit:
                break
            out = self.inflate_message(apply_mask(data[start:end], data[start - 4 : start]), limit)
            if b0 == 0xC1:
                try:
                    events.append(out.decode("utf-8"))
                except UnicodeDecodeError:
                    reason = "invalid UTF-8 in text message"
                    raise ProtocolError(CloseCode.INVALID_DATA, reason) from None
            else:
                events.append(out)
            pos = end
        return pos


#: Deflaters that hold zlib state now, for `release_idle`.
_in_use: set[Deflater] = set()


class Deflater:
    """One connection's compressor with context takeover; see the module docstring."""

    __slots__ = ("level", "window_bits", "mem_level", "_z", "last_used")

    def __init__(self, level: int, window_bits: int, mem_level: int) -> None:
        self.level = level
        self.window_bits = window_bits
        self.mem_level = mem_level
        self._z = None
        self.last_used = 0.0

    @property
    def active(self) -> bool:
        return self._z is not None

    def compress(self, payload: bytes) -> bytes:
        """The compressed payload of one whole message (the flush tail removed)."""
        z = self._z
        if z is None:
            z = self._z = _compressobj(self.level, self.window_bits, self.mem_level)
            _in_use.add(self)
        self.last_used = time.monotonic()
        try:
            data = z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)
        except BaseException:
            self.release()  # half a message went into the window: start afresh
            raise
        return data[:-4]

    def release(self) -> None:
        """Let the zlib state go; the next message starts a fresh compressor."""
        self._z = None
        _in_use.discard(self)


def release_idle(now: float, idle: float) -> int:
    """Release the compressors not used for `idle` seconds; how many were released."""
    stale = [d for d in _in_use if now - d.last_used >= idle]
    for deflater in stale:
        deflater.release()
    return len(stale)


def deflaters_in_use() -> int:
    return len(_in_use)


class SharedDeflater:
    """Compression without context takeover for many connections; see the module docstring."""

    __slots__ = ("level", "window_bits", "mem_level", "_z")

    def __init__(self, level: int, window_bits: int, mem_level: int) -> None:
        self.level = level
        self.window_bits = window_bits
        self.mem_level = mem_level
        self._z = None

    def compress(self, payload: bytes) -> bytes:
        """One message compressed on its own: it refers to no other message."""
        z = self._z
        if z is None:
            z = self._z = _compressobj(self.level, self.window_bits, self.mem_level)
        try:
            data = z.compress(payload) + z.flush(zlib.Z_FULL_FLUSH)
        except BaseException:
            self._z = None
            raise
        return data[:-4]


@functools.lru_cache(maxsize=32)
def shared_deflater(level: int, window_bits: int, mem_level: int) -> SharedDeflater:
    """The process's one `SharedDeflater` for these parameters."""
    return SharedDeflater(level, window_bits, mem_level)


class BroadcastDeflate:
    """Room broadcasts compressed once (`wsapp.chat.hub`): text frames from a
    `SharedDeflater`, for payloads of at least `threshold` bytes."""

    __slots__ = ("deflater", "threshold")

    def __init__(self, deflater: SharedDeflater | None, threshold: int) -> None:
        self.deflater = deflater
        self.threshold = threshold

    def suits(self, conn: object) -> bool:
        """The connection's own sends use this very compressor (same window, no context),
        so frames it made are exactly what the connection would have sent."""
        deflater = self.deflater
        return deflater is not None and getattr(conn, "broadcast_compressor", None) is deflater

    def text_frame(self, payload: bytes) -> bytes | None:
        """The compressed text frame, or None under the threshold (send it uncompressed)."""
        deflater = self.deflater
        if deflater is None or len(payload) < self.threshold:
            return None
        return compressed_frame(Opcode.TEXT, deflater.compress(payload))


#: No broadcast compression: every member gets the uncompressed frame.
NO_DEFLATE = BroadcastDeflate(None, 0)


def broadcast_deflate(settings: DeflateSettings | None) -> BroadcastDeflate:
    """Room broadcasts for connections negotiated with `settings.for_rooms()`."""
    if settings is None or not settings.enabled:
        return NO_DEFLATE
    deflater = shared_deflater(settings.level, settings.server_max_window_bits, settings.mem_level)
    return BroadcastDeflate(deflater, settings.threshold)
