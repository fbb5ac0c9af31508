"""The client side of permessage-deflate (RFC 7692) for the raw test client.

`DeflateWS` wraps a `RawWS`: it sends an offer, checks the server's answer against the
client's rules of RFC 7692 7 (one permessage-deflate, known parameters with valid values,
`client_max_window_bits` only if offered, `server_max_window_bits` no larger than offered,
`server_no_context_takeover` echoed when asked), then compresses what it sends and inflates
what it receives with exactly the negotiated windows and context rules. A server that
compresses with a larger window than it announced, or keeps context it promised not to,
makes the inflate here fail ("invalid distance too far back"): the cases catch that.

    ws = DeflateWS.connect(url, "permessage-deflate; client_max_window_bits")
    ws.send_message(Op.TEXT, b"hello" * 100, fragment=256)
    assert ws.recv_message() == (Op.TEXT, b"hello" * 100)
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

from tests.support.rawws import (
    Op,
    ProtocolViolation,
    RawWS,
    UnexpectedClose,
    WSError,
    encode_frame,
)

TAIL = b"\x00\x00\xff\xff"
RSV1 = 4


@dataclass(frozen=True)
class Negotiated:
    """permessage-deflate as the server answered it (None fields: not in the answer)."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    client_max_window_bits: int | None
    raw: str


def parse_params(element: str) -> tuple[str, dict[str, str | None]]:
    """One extension element -> (name, params); raises on a duplicate parameter."""
    name, *params = (p.strip() for p in element.split(";"))
    out: dict[str, str | None] = {}
    for param in params:
        key, eq, value = param.partition("=")
        key = key.strip()
        if key in out:
            raise ProtocolViolation(f"duplicate parameter {key} in {element!r}")
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        out[key] = value if eq else None
    return name.strip().lower(), out


def check_response(offer: str, answer: str | None) -> Negotiated | None:
    """The server's Sec-WebSocket-Extensions answer, checked against the offers we made
    (it may accept any one of them); None if it declined."""
    if answer is None:
        return None
    elements = [e for e in answer.split(",") if e.strip()]
    if len(elements) != 1:
        raise ProtocolViolation(f"server accepted {len(elements)} extensions: {answer!r}")
    name, params = parse_params(elements[0])
    if name != "permessage-deflate":
        raise ProtocolViolation(f"server accepted an extension we did not offer: {answer!r}")
    known = {"server_no_context_takeover", "client_no_context_takeover",
             "server_max_window_bits", "client_max_window_bits"}
    for key, value in params.items():
        if key not in known:
            raise ProtocolViolation(f"unknown parameter {key} in the answer {answer!r}")
        if key.endswith("context_takeover") and value is not None:
            raise ProtocolViolation(f"{key} with a value in {answer!r}")
        if key.endswith("window_bits") and value not in {str(b) for b in range(8, 16)}:
            raise ProtocolViolation(f"{key} without a valid value in {answer!r}")
    if not any(_answers(o, params) for o in _offers(offer)):
        raise ProtocolViolation(f"answer {answer!r} fits none of the offers {offer!r}")
    server_bits = params.get("server_max_window_bits")
    client_bits = params.get("client_max_window_bits")
    return Negotiated(
        "server_no_context_takeover" in params,
        "client_no_context_takeover" in params,
        int(server_bits) if server_bits is not None else None,
        int(client_bits) if client_bits is not None else None,
        answer,
    )


def _offers(offer: str) -> list[dict[str, str | None]]:
    """Our permessage-deflate offers that parse (a bad one may be among them on purpose)."""
    out = []
    for element in offer.split(","):
        try:
            name, params = parse_params(element)
        except ProtocolViolation:
            continue
        if name == "permessage-deflate" and _valid_offer(params):
            out.append(params)
    return out


def _valid_offer(params: dict[str, str | None]) -> bool:
    bits = {str(b) for b in range(8, 16)}
    for key, value in params.items():
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return False
        elif key == "server_max_window_bits":
            if value not in bits:
                return False
        elif key == "client_max_window_bits":
            if value is not None and value not in bits:
                return False
        else:
            return False
    return True


def _answers(offer: dict[str, str | None], answer: dict[str, str | None]) -> bool:
    """Whether `answer` is a valid server answer to `offer` (RFC 7692 7.1)."""
    if "server_no_context_takeover" in offer and "server_no_context_takeover" not in answer:
        return False
    if "server_max_window_bits" in offer:
        if "server_max_window_bits" not in answer:
            return False
        if int(answer["server_max_window_bits"] or 0) > int(offer["server_max_window_bits"] or 0):
            return False
    if "client_max_window_bits" in answer:
        if "client_max_window_bits" not in offer:
            return False  # 7.1.2.2: only when offered
        value = offer["client_max_window_bits"]
        if value is not None and int(answer["client_max_window_bits"] or 0) > int(value):
            return False
    return True


def _offered_client_bits(offer: str) -> int:
    for params in _offers(offer):
        if params.get("client_max_window_bits"):
            return int(params["client_max_window_bits"])  # type: ignore[arg-type]
    return 15


class DeflateWS:
    """A raw connection speaking permessage-deflate as negotiated (see module docstring)."""

    def __init__(self, ws: RawWS, offer: str, level: int = 6, compress: bool = True) -> None:
        self.ws = ws
        self.offer = offer
        self.negotiated = check_response(offer, ws.response.header("sec-websocket-extensions"))
        self.compress_sends = compress and self.negotiated is not None
        n = self.negotiated
        # What we may compress with: the answer's client_max_window_bits, else our offer's.
        self.client_bits = max(9, (n.client_max_window_bits if n and n.client_max_window_bits
                                   else _offered_client_bits(offer)))
        self.client_context = not (n and n.client_no_context_takeover)
        self.server_bits = (n.server_max_window_bits or 15) if n else 15
        self.server_context = not (n and n.server_no_context_takeover)
        self.level = level
        self._compressor = None
        self._decompressor = None
        self.compressed_received = 0
        self.bytes_received = 0

    @classmethod
    def connect(cls, url: str, offer: str | None, level: int = 6, compress: bool = True,
                **kwargs) -> DeflateWS:
        headers = dict(kwargs.pop("headers", None) or {})
        if offer is not None:
            headers["Sec-WebSocket-Extensions"] = offer
        return cls(RawWS.connect(url, headers=headers, **kwargs), offer or "", level, compress)

    # ---- sending

    def compress(self, payload: bytes) -> bytes:
        """Our side of RFC 7692 7.2.1: compress, sync flush, drop the 4-byte tail."""
        if self._compressor is None or not self.client_context:
            self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, -self.client_bits)
        data = self._compressor.compress(payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        return data[:-4]

    def encode_message(self, opcode: int, payload: bytes, fragment: int | None = None,
                       compress: bool | None = None) -> bytes:
        """The frames of one message: compressed (RSV1 on the first frame only) and, with
        `fragment`, the compressed bytes cut into frames of that many bytes (as Autobahn's
        auto-fragmentation does)."""
        compress = self.compress_sends if compress is None else compress
        data = self.compress(payload) if compress else payload
        if not fragment or len(data) <= fragment:
            return encode_frame(opcode, data, rsv=RSV1 if compress else 0)
        pieces = [data[i:i + fragment] for i in range(0, len(data), fragment)]
        out = []
        for index, piece in enumerate(pieces):
            first = index == 0
            out.append(encode_frame(opcode if first else Op.CONT, piece,
                                    fin=index == len(pieces) - 1,
                                    rsv=RSV1 if compress and first else 0))
        return b"".join(out)

    def send_message(self, opcode: int, payload: bytes, fragment: int | None = None,
                     compress: bool | None = None) -> None:
        self.ws.send_raw(self.encode_message(opcode, payload, fragment, compress))

    # ---- receiving

    def inflate(self, data: bytes) -> bytes:
        """Our side of 7.2.2 with the server's window: a server that used a larger one, or
        context it promised not to keep, fails here."""
        if self._decompressor is None or not self.server_context:
            self._decompressor = zlib.decompressobj(-self.server_bits)
        try:
            return self._decompressor.decompress(data + TAIL)
        except zlib.error as exc:
            reason = f"server's compressed message does not inflate: {exc}"
            raise ProtocolViolation(reason) from None

    def recv_message(self, timeout: float | None = None) -> tuple[int, bytes]:
        """One data message, inflated if the server compressed it."""
        ws = self.ws
        timeout = ws.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        opcode: int | None = None
        compressed = False
        parts: list[bytes] = []
        while True:
            frame = ws.next_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == Op.CLOSE:
                raise UnexpectedClose(*(ws.close_received or (None, "")))
            if frame.rsv & 3:
                raise ProtocolViolation(f"server set RSV2/RSV3: {frame!r}")
            if frame.rsv and (self.negotiated is None or frame.opcode >= 8 or opcode is not None):
                raise ProtocolViolation(f"RSV1 where it is not allowed: {frame!r}")
            if frame.opcode >= 8:
                raise ProtocolViolation(f"unexpected control frame: {frame!r}")
            if opcode is None:
                if frame.opcode == Op.CONT:
                    raise ProtocolViolation("continuation without a start")
                opcode = frame.opcode
                compressed = bool(frame.rsv)
            elif frame.opcode != Op.CONT:
                raise ProtocolViolation(f"new message inside a fragmented one: {frame!r}")
            parts.append(frame.payload)
            self.bytes_received += len(frame.payload)
            if frame.fin:
                break
        data = b"".join(parts)
        if compressed:
            self.compressed_received += 1
            data = self.inflate(data)
        return opcode, data

    # ---- plumbing

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> DeflateWS:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def echo_many(ws: DeflateWS, messages: list[tuple[int, bytes]], fragment: int | None = None,
              window_bytes: int = 256 * 1024, window_count: int = 32,
              timeout: float = 10.0) -> None:
    """Send every message (at most `window_count` / `window_bytes` in flight, so neither
    side's buffers fill up) and check each echo, in order, by length and checksum."""
    pending: list[tuple[int, bytes]] = []
    in_flight = 0
    deadline = time.monotonic() + timeout
    index = 0

    def take_one() -> None:
        nonlocal in_flight
        want_op, want = pending.pop(0)
        in_flight -= len(want)
        got_op, got = ws.recv_message(max(0.1, deadline - time.monotonic()))
        sent, echoed = (want_op, len(want), zlib.crc32(want)), (got_op, len(got), zlib.crc32(got))
        if sent != echoed:
            raise WSError(f"echo {index - len(pending) - 1} differs: sent (opcode, length, crc) "
                          f"{sent}, got {echoed}")

    for opcode, payload in messages:
        while pending and (len(pending) >= window_count or in_flight + len(payload) > window_bytes):
            take_one()
        ws.send_message(opcode, payload, fragment)
        pending.append((opcode, payload))
        in_flight += len(payload)
        index += 1
    while pending:
        take_one()
