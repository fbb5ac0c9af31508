"""Strict incremental UTF-8 validation for text messages (RFC 6455 8.1, RFC 3629).

A text message must be valid UTF-8 as a whole; an endpoint fails the connection with
1007 as soon as it sees a byte that cannot start or continue a valid sequence, even in
the middle of a fragmented message (Autobahn section 6 checks this fail-fast behaviour).
"""

from __future__ import annotations

import codecs

from wsapp.protocol.errors import CloseCode, ProtocolError

# Second-byte ranges for each lead byte that starts a multi-byte sequence (RFC 3629).
_SECOND_BYTE = {
    **{b: (0x80, 0xBF) for b in range(0xC2, 0xE0)},
    0xE0: (0xA0, 0xBF),
    **{b: (0x80, 0xBF) for b in range(0xE1, 0xED)},
    0xED: (0x80, 0x9F),
    0xEE: (0x80, 0xBF),
    0xEF: (0x80, 0xBF),
    0xF0: (0x90, 0xBF),
    0xF1: (0x80, 0xBF),
    0xF2: (0x80, 0xBF),
    0xF3: (0x80, 0xBF),
    0xF4: (0x80, 0x8F),
}


def is_valid_utf8_prefix(pending: bytes) -> bool:
    """Can these (at most 3) trailing bytes still become a valid UTF-8 character?"""
    if not pending:
        return True
    bounds = _SECOND_BYTE.get(pending[0])
    if bounds is None:
        return False
    if len(pending) >= 2 and not bounds[0] <= pending[1] <= bounds[1]:
        return False
    return all(0x80 <= b <= 0xBF for b in pending[2:])


class Utf8Decoder:
    """Incremental strict UTF-8 decoding that fails on the first byte that cannot be valid.

    CPython's incremental decoder (C speed) catches almost everything at once but keeps an
    invalid partial sequence such as ED A0 (a surrogate) pending; we check the pending tail.
    """

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def decode(self, data: bytes, final: bool) -> str:
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise ProtocolError(CloseCode.INVALID_DATA, "invalid UTF-8 in text message") from None
        if not final:
            pending = self._decoder.getstate()[0]
            if pending and not is_valid_utf8_prefix(pending):
                raise ProtocolError(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")
        return text
