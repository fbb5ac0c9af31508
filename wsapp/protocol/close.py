"""Close frame payloads (RFC 6455 5.5.1, 7.4): a 2-byte code plus a UTF-8 reason."""

from __future__ import annotations

import struct

from wsapp.protocol.errors import CloseCode, ProtocolError

MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2


def is_valid_close_code(code: int) -> bool:
    """Codes a peer may put in a close frame (RFC 6455 7.4 and the IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999




def encode_close_payload(code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
    """Close payload: 2-byte code plus UTF-8 reason, truncated to fit a control frame."""
    if code is None:
        return b""
    data = reason.encode("utf-8")
    if len(data) > MAX_CLOSE_REASON_BYTES:
        data = data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + data


def parse_close_payload(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a received close frame; raises ProtocolError for a bad one."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "close payload of 1 byte")
    (code,) = struct.unpack_from("!H", payload)
    if not is_valid_close_code(code):
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_DATA, "close reason is not valid UTF-8") from None
    return code, reason
