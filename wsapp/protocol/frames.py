"""RFC 6455 framing as pure functions over bytes: no sockets, no greenlets.

`Parser` is a sans-I/O incremental parser for frames sent by a client. It validates
every rule gevent-websocket skips (mask bit, RSV bits, opcodes, control-frame limits,
fragmentation order, message size, UTF-8) and does so as bytes arrive, so a violation
is reported on the very read that carries it, never after buffering a whole message.

It is longer than 400 lines because the parser's general path (fragments, control frames,
RFC 7692 compressed frames) is one state machine over one buffer; UTF-8 validation, close
payloads and close codes live in utf8.py, close.py and errors.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

# The compiled loops and their pure Python twins are chosen in one place.
from wsapp.protocol.close import (
    MAX_CONTROL_PAYLOAD,
    encode_close_payload,
    parse_close_payload,
)
from wsapp.protocol.errors import CloseCode, ProtocolError
from wsapp.protocol.utf8 import Utf8Decoder
from wsapp.speedups import select as speedups

apply_mask = speedups.apply_mask


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset((Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY))
CONTROL_OPCODES = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))
KNOWN_OPCODES = frozenset(int(op) for op in (*DATA_OPCODES, *CONTROL_OPCODES))


_PACK_H = struct.Struct("!BB").pack
_PACK_H16 = struct.Struct("!BBH").pack
_PACK_H64 = struct.Struct("!BBQ").pack


def encode_header(
    opcode: int, length: int, fin: bool = True, rsv: int = 0, masked: bool = False
) -> bytes:
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return _PACK_H(first, mask_bit | length)
    if length < 65536:
        return _PACK_H16(first, mask_bit | 126, length)
    return _PACK_H64(first, mask_bit | 127, length)


def encode_frame(
    opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bytes | None = None
) -> bytes:
    """One complete frame; unmasked (server to client) unless a 4-byte `mask` is given."""
    header = encode_header(opcode, len(payload), fin, rsv, masked=mask is not None)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


_SMALL_HEADERS = {first: [bytes((first, n)) for n in range(126)] for first in (0x81, 0x82)}


def encode_message(message: str | bytes) -> bytes:
    """One unfragmented server frame for a message: text for `str`, binary for `bytes`."""
    if type(message) is str:
        payload = message.encode("utf-8")
        first = 0x81
    else:
        payload = bytes(message)
        first = 0x82
    length = len(payload)
    if length < 126:
        return _SMALL_HEADERS[first][length] + payload
    if length < 65536:
        return _PACK_H16(first, 126, length) + payload
    return _PACK_H64(first, 127, length) + payload


def encode_messages(messages: list[str | bytes]) -> list[bytes]:
    """`encode_message` for each message (one C call when the speedups are built)."""
    return speedups.encode_messages(messages)


#: A message at least this large goes out as two buffers, its header and the payload
#: itself (one gathering sendmsg), instead of being copied into a frame.
GATHER_PAYLOAD = 65536


class Frames(list):
    """Buffers to send that make `messages` frames: a large payload is a buffer of its
    own behind its header, so there are more buffers than messages."""

    __slots__ = ("messages",)

    def __init__(self, messages: int, buffers: list[Any]) -> None:
        super().__init__(buffers)
        self.messages = messages


def encode_parts(message: str | bytes) -> tuple[Any, ...]:
    """The buffers of one unfragmented server frame: `(frame,)`, or `(header, payload)`
    for a message of GATHER_PAYLOAD bytes or more: binary as the bytes object itself, text
    as `speedups.Utf8` (the str's own UTF-8 bytes), neither copied into a frame."""
    kind = type(message)
    if kind is bytes and len(message) >= GATHER_PAYLOAD:
        return encode_header(Opcode.BINARY, len(message)), message
    if kind is str and len(message) >= GATHER_PAYLOAD:
        payload = speedups.Utf8(message)
        return encode_header(Opcode.TEXT, len(payload)), payload
    return (encode_message(message),)


def encode_replies(messages: list[str | bytes]) -> list[Any]:
    """`encode_messages` for a reader's replies (`WebSocket.serve`): a batch of one large
    message (how large ones arrive) is sent as `encode_parts`, in a `Frames`."""
    if len(messages) == 1 and len(messages[0]) >= GATHER_PAYLOAD:
        return Frames(1, list(encode_parts(messages[0])))
    return speedups.encode_messages(messages)


def encode_close(code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
    return encode_frame(Opcode.CLOSE, encode_close_payload(code, reason))


# --- masking ----------------------------------------------------------------------------


class _StreamMasker:
    """Unmasks a payload that arrives in pieces, keeping the mask offset between pieces."""

    __slots__ = ("_mask", "_offset")

    def __init__(self, mask: bytes) -> None:
        self._mask = mask
        self._offset = 0

    def process(self, data: bytes) -> bytes:
        offset = self._offset
        mask = self._mask if offset == 0 else self._mask[offset:] + self._mask[:offset]
        self._offset = (offset + len(data)) & 3
        return apply_mask(data, mask)


# --- parsing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    code: int | None
    reason: str


#: A complete data message is plain `str` (text) or `bytes` (binary); control frames are objects.
Event = str | bytes | Ping | Pong | Close


#: A message piece shorter than this (a tiny fragment) is buffered with others, and
#: SMALL_PIECES of them are joined into one part: one object per fragment would cost
#: about 50 bytes of object header per fragment, whatever its payload.
SMALL_PIECE = 512
SMALL_PIECES = 512

#: An unfragmented, uncompressed data frame with at least this much payload is unmasked
#: straight into the message as it arrives (`speedups.Payload`): its length is known from
#: the header, so the message is one allocation and one copy, with no parts to join (text
#: is validated piece by piece as it comes, then decoded once).
WHOLE_PAYLOAD = 65536
#: Default process-wide budget (WSAPP_PREALLOC_BYTES) for what such frames allocate ahead
#: of their bytes: a peer that sends headers alone holds at most this; past it, large
#: frames are assembled as their bytes arrive (memory follows the data).
PREALLOC_BYTES = 64 * 1024 * 1024
_NO_MASK = b"\0\0\0\0"


class Parser:
    """Incremental parser for client-to-server frames.

    `feed(data)` returns the events completed by `data` and raises `ProtocolError` the
    moment the stream becomes invalid. After a `Close` event, further bytes are ignored.
    """

    __slots__ = (
        "max_message_bytes", "max_fragments", "require_mask", "_buf", "closed", "error", "_opcode",
        "_fin", "_remaining", "_masker", "_control", "_msg_opcode", "_msg_size", "_msg_frames",
        "_msg_parts", "_msg_small", "_utf8", "controls", "inflater", "_msg_compressed", "_msg_wire",
        "_whole", "prealloc_bytes",
    )

    def __init__(
        self,
        max_message_bytes: int,
        require_mask: bool = True,
        max_fragments: int = 1 << 20,
        prealloc_bytes: int = PREALLOC_BYTES,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        #: Process-wide bytes large frames may allocate ahead of their data (see WHOLE_PAYLOAD).
        self.prealloc_bytes = prealloc_bytes
        #: Frames one message may span (RFC 6455 5.4 sets no limit; each costs parsing time).
        self.max_fragments = max_fragments
        self.require_mask = require_mask
        self._buf = bytearray()
        self.closed = False
        #: A violation found after events that were already returned; raised by the next feed.
        self.error: ProtocolError | None = None
        #: Control frames (ping, pong, close) parsed so far: unchanged by a feed means it
        #: returned data messages only, which a reader can queue without looking at each.
        self.controls = 0
        # Current frame (None while waiting for a header).
        self._opcode: int | None = None
        self._fin = False
        self._remaining = 0
        self._masker: _StreamMasker | None = None
        self._control: list[bytes] = []
        # Current data message (fragmented across frames, or one frame arriving in pieces).
        self._msg_opcode: int | None = None
        self._msg_size = 0
        self._msg_frames = 0
        # Pieces of the message so far. Small pieces (tiny fragments) wait in `_msg_small`
        # and are joined into one part every SMALL_PIECES, so a message sent as 1-byte
        # fragments costs about its own size in memory, not one object per fragment.
        self._msg_parts: list = []
        self._msg_small: list = []
        self._utf8: Utf8Decoder | None = None
        #: permessage-deflate's decompressor once negotiated (`compression.Inflater`): RSV1
        #: then marks a compressed message (RFC 7692 6), inflated within the size limit;
        #: whole compressed frames go through its `scan_frames`.
        self.inflater: Any = None
        self._msg_compressed = False
        self._msg_wire = 0  # wire bytes of a compressed message (its size counts inflated)
        self._whole: Any = None  # speedups.Payload of a large single-frame message

    @property
    def in_message(self) -> bool:
        return self._msg_opcode is not None

    def pending(self) -> bool:
        """Bytes of an incomplete frame are buffered, or a frame's payload is still due."""
        return bool(self._buf) or self._opcode is not None

    def payload_due(self) -> int:
        """Payload bytes of the current frame not received yet (0 between frames)."""
        return self._remaining if self._opcode is not None else 0

    def feed(self, data: bytes) -> list[Event]:
        """Events completed by `data`, in order.

        A violation raises ProtocolError, but only after the events that came before it in
        the stream have been handed out: they are returned first and the error is raised
        by the next call (`error` shows it is pending), so a message sent just before a bad
        frame is still answered, as RFC 6455 implies and Autobahn checks.
        """
        if self.error is not None:
            raise self.error
        if self.closed:
            return []
        events: list[Event] = []
        try:
            self._feed(data, events)
        except ProtocolError as exc:
            self.error = exc
            self.closed = True
            if not events:
                raise
        return events

    def _feed(self, data: bytes, events: list[Event]) -> None:
        if self._whole is not None and not self._buf:
            # The middle of a large payload: straight into the message, no buffer.
            take = min(self._remaining, len(data))
            self._write_whole(data, 0, take, events)
            if take == len(data):
                return
            data = data[take:]
        if not self._buf and self._opcode is None and self._msg_opcode is None:
            pos = speedups.scan_data_frames(data, self.max_message_bytes, events)
            while self.inflater is not None and pos < len(data) and data[pos] & 0x40:
                # Whole compressed messages (browsers compress everything they send).
                taken = self.inflater.scan_frames(data, pos, self.max_message_bytes, events)
                if taken == pos:
                    break
                more = speedups.scan_data_frames(data[taken:], self.max_message_bytes, events)
                pos = taken + more
            if pos == len(data):
                return
            data = data[pos:]
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        try:
            while pos < n and not self.closed:
                if self._opcode is None:
                    header = self._parse_header(buf, pos, n)
                    if header is None:
                        break
                    pos = header
                    if self._remaining == 0:
                        self._finish_frame(b"", events)
                        continue
                take = min(self._remaining, n - pos)
                if take == 0:
                    break
                if self._whole is not None:
                    self._write_whole(buf, pos, take, events)
                    pos += take
                    continue
                chunk = bytes(buf[pos : pos + take])
                pos += take
                self._remaining -= take
                self._payload(chunk, events)
        finally:
            del buf[:pos]

    def _write_whole(self, data: Any, start: int, take: int, events: list[Event]) -> None:
        """`take` bytes of a large single-frame payload, unmasked into the message; text is
        validated as it arrives (8.1: fail at the first invalid byte, not at the end)."""
        whole = self._whole
        filled = whole.filled
        whole.write(data, start, take)
        self._remaining -= take
        if self._utf8 is not None and not whole.ascii:
            # All ASCII so far is valid and leaves the decoder at a character boundary:
            # it checks from the first piece with another byte on.
            self._utf8.decode(whole.written(filled), self._remaining == 0)
        if self._remaining == 0:
            self._finish_frame(b"", events)

    # Header --------------------------------------------------------------------------------

    def _parse_header(self, buf: bytearray, pos: int, n: int) -> int | None:
        """Validate and consume one frame header at `pos`; None if it is not complete yet."""
        if n - pos < 2:
            return None
        b0 = buf[pos]
        b1 = buf[pos + 1]
        fin = bool(b0 & 0x80)
        opcode = b0 & 0x0F
        # Rules that the first two bytes already decide: fail before waiting for more.
        rsv = b0 & 0x70
        if rsv:
            self._check_rsv(rsv, opcode)
        if opcode not in KNOWN_OPCODES:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        masked = bool(b1 & 0x80)
        if self.require_mask and not masked:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "client frame is not masked")
        length = b1 & 0x7F
        is_control = opcode >= 0x8
        if is_control:
            if not fin:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR, "control frame payload over 125 bytes"
                )
        elif opcode == Opcode.CONTINUATION:
            if self._msg_opcode is None:
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR, "continuation frame without a message to continue"
                )
        elif self._msg_opcode is not None:
            raise ProtocolError(
                CloseCode.PROTOCOL_ERROR, "new data frame inside a fragmented message"
            )
        offset = pos + 2
        if length == 126:
            if n - offset < 2:
                return None
            length = (buf[offset] << 8) | buf[offset + 1]
            offset += 2
        elif length == 127:
            if n - offset < 8:
                return None
            length = int.from_bytes(buf[offset : offset + 8], "big")
            offset += 8
        if not is_control:
            # Refuse before reading a single payload byte.
            compressed = self._msg_compressed if opcode == Opcode.CONTINUATION else bool(rsv)
            if compressed:
                already = self._msg_wire if opcode == Opcode.CONTINUATION else 0
                limit = self.inflater.wire_limit(self.max_message_bytes)
            else:
                already = self._msg_size if opcode == Opcode.CONTINUATION else 0
                limit = self.max_message_bytes
            if already + length > limit:
                raise ProtocolError(
                    CloseCode.MESSAGE_TOO_BIG,
                    f"message over the {self.max_message_bytes}-byte limit",
                )
            if opcode == Opcode.CONTINUATION and self._msg_frames >= self.max_fragments:
                raise ProtocolError(
                    CloseCode.MESSAGE_TOO_BIG,
                    f"message in more than {self.max_fragments} fragments",
                )
        mask = None
        if masked:
            if n - offset < 4:
                return None
            mask = bytes(buf[offset : offset + 4])
            offset += 4
        self._opcode = opcode
        self._fin = fin
        self._remaining = length
        self._masker = _StreamMasker(mask) if mask is not None else None
        if not is_control:
            if opcode != Opcode.CONTINUATION:
                self._msg_opcode = opcode
                self._msg_size = 0
                self._msg_frames = 0
                self._msg_parts = []
                self._msg_small = []
                self._utf8 = Utf8Decoder() if opcode == Opcode.TEXT else None
                self._msg_compressed = bool(rsv)
                self._msg_wire = 0
                if (
                    fin and not rsv and length >= WHOLE_PAYLOAD
                    and speedups.payload_ahead() + length <= self.prealloc_bytes
                ):
                    self._whole = speedups.Payload(
                        length, mask or _NO_MASK, opcode == Opcode.TEXT
                    )
                    self._masker = None
            self._msg_frames += 1
        return offset

    def _check_rsv(self, rsv: int, opcode: int) -> None:
        """RSV bits are only allowed as RSV1 on the first frame of a data message once
        permessage-deflate is negotiated (RFC 6455 5.2, RFC 7692 6)."""
        error = CloseCode.PROTOCOL_ERROR
        if self.inflater is None:
            raise ProtocolError(error, "RSV bits set without a negotiated extension")
        if rsv != 0x40:
            raise ProtocolError(error, "RSV2 or RSV3 set: no extension defines them")
        if opcode >= 0x8:
            raise ProtocolError(error, "RSV1 set on a control frame")
        if opcode == Opcode.CONTINUATION:
            raise ProtocolError(error, "RSV1 set on a continuation frame")

    # Payload -------------------------------------------------------------------------------

    def _payload(self, chunk: bytes, events: list[Event]) -> None:
        if self._masker is not None:
            chunk = self._masker.process(chunk)
        if self._opcode is not None and self._opcode >= 0x8:
            self._control.append(chunk)
            if self._remaining == 0:
                self._finish_frame(b"".join(self._control), events)
            return
        if self._msg_compressed:
            self._msg_wire += len(chunk)
            chunk = self.inflater.inflate(chunk, self.max_message_bytes - self._msg_size)
            last = False  # the end of the message comes out of `finish` (_finish_frame)
        else:
            last = self._remaining == 0 and self._fin
        self._msg_size += len(chunk)
        piece = self._utf8.decode(chunk, final=last) if self._utf8 is not None else chunk
        if len(piece) >= SMALL_PIECE:
            if self._msg_small:
                self._join_small()
            self._msg_parts.append(piece)
        elif piece:
            small = self._msg_small
            small.append(piece)
            if len(small) >= SMALL_PIECES:
                self._join_small()
        if self._remaining == 0:
            self._finish_frame(b"", events)

    def _join_small(self) -> None:
        small = self._msg_small
        self._msg_parts.append(("" if self._utf8 is not None else b"").join(small))
        small.clear()

    def _finish_frame(self, control_payload: bytes, events: list[Event]) -> None:
        opcode = self._opcode
        fin = self._fin
        self._opcode = None
        self._masker = None
        self._control = []
        if opcode is not None and opcode >= 0x8:
            self.controls += 1
        if opcode == Opcode.PING:
            events.append(Ping(control_payload))
        elif opcode == Opcode.PONG:
            events.append(Pong(control_payload))
        elif opcode == Opcode.CLOSE:
            code, reason = parse_close_payload(control_payload)
            self.closed = True
            events.append(Close(code, reason))
        elif fin:
            if self._whole is not None:
                try:
                    message = self._whole.take()  # text: validated as it came
                except UnicodeDecodeError:
                    raise ProtocolError(
                        CloseCode.INVALID_DATA, "invalid UTF-8 in text message"
                    ) from None
                self._utf8 = None
                events.append(message)
                self._whole = None
                self._msg_opcode = None
                self._msg_frames = 0
                return
            if self._msg_compressed:
                self._inflate_end()
            if self._msg_small:
                self._join_small()
            if self._utf8 is not None:
                # End of the message: bytes still pending in the decoder (a character cut
                # short, e.g. before an empty final fragment) are invalid now.
                self._msg_parts.append(self._utf8.decode(b"", final=True))
                data: str | bytes = "".join(self._msg_parts)
            else:
                data = b"".join(self._msg_parts)
            self._msg_opcode = None
            self._msg_parts = []
            self._utf8 = None
            self._msg_size = 0
            self._msg_frames = 0
            self._msg_compressed = False
            events.append(data)

    def _inflate_end(self) -> None:
        """The last frame of a compressed message is in: what the inflater still holds."""
        rest = self.inflater.finish(self.max_message_bytes - self._msg_size)
        if rest:
            self._msg_size += len(rest)
            piece = self._utf8.decode(rest, final=False) if self._utf8 is not None else rest
            if self._msg_small:
                self._join_small()
            self._msg_parts.append(piece)
