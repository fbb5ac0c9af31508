"""A small raw-socket WebSocket client for hostile (conformance) tests.

Pure stdlib sockets, no WebSocket library: it can send anything a broken or malicious
client could (reserved bits, bad opcodes, unmasked frames, lying length headers, a frame
split over many writes) and it reports exactly what the server did back, including "the
TCP connection was closed without a close frame".

    ws = RawWS.connect("ws://127.0.0.1:8000/echo")
    ws.send_frame(Op.TEXT, b"hello")
    assert ws.recv_message() == (Op.TEXT, b"hello")
    ws.send_close(1000)
    assert ws.expect_close(1000) == (1000, "")
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_TIMEOUT = 2.0
SEND_TIMEOUT = 60.0  # writes of big frames may legitimately block for a while


class Op:
    """Opcodes (RFC 6455 section 5.2)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


OP_NAMES = {0: "CONT", 1: "TEXT", 2: "BINARY", 8: "CLOSE", 9: "PING", 10: "PONG"}


class WSError(AssertionError):
    """Base class: every failure of this client is a test failure with a clear message."""


class HandshakeFailed(WSError):
    def __init__(self, response: HTTPResponse):
        super().__init__(
            f"handshake failed: {response.status} {response.reason} {response.headers}"
        )
        self.response = response


class ConnectionClosedNoFrame(WSError):
    """The server closed (or reset) TCP before sending a close frame."""


class ProtocolViolation(WSError):
    """The server sent something a conformant server must not send."""


class UnexpectedClose(WSError):
    """A close frame arrived where a data message was expected."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"unexpected close frame: code={code} reason={reason!r}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    def __iter__(self):  # allows `fin, rsv, opcode, payload = frame`
        return iter((self.fin, self.rsv, self.opcode, self.payload))

    def __repr__(self) -> str:
        name = OP_NAMES.get(self.opcode, hex(self.opcode))
        shown = self.payload[:40]
        more = "..." if len(self.payload) > 40 else ""
        return (
            f"Frame({name}, fin={self.fin}, rsv={self.rsv}, len={len(self.payload)}, "
            f"{shown!r}{more})"
        )


@dataclass
class HTTPResponse:
    status: int
    reason: str
    version: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


# --------------------------------------------------------------------------- pure helpers


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def mask_bytes(key: bytes, data: bytes) -> bytes:
    """XOR data with the 4-byte key, fast (whole-integer XOR, not a per-byte loop)."""
    if not data:
        return b""
    n = len(data)
    reps, rest = divmod(n, 4)
    full = key * reps + key[:rest]
    return (int.from_bytes(data, "little") ^ int.from_bytes(full, "little")).to_bytes(n, "little")


def encode_header(
    opcode: int,
    length: int,
    fin: bool = True,
    rsv: int = 0,
    mask_key: bytes | None = None,
) -> bytes:
    """Frame header announcing `length` bytes (no check that it matches anything)."""
    b0 = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask_key is not None else 0
    if length < 126:
        head = struct.pack("!BB", b0, mbit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", b0, mbit | 126, length)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, length)
    return head + (mask_key or b"")


def _resolve_mask(mask: bool | bytes | None) -> bytes | None:
    if mask is True:
        return os.urandom(4)
    if mask is False or mask is None:
        return None
    if len(mask) != 4:
        raise ValueError("an explicit mask key has 4 bytes")
    return bytes(mask)


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool = True,
    rsv: int = 0,
    mask: bool | bytes = True,
    length: int | None = None,
) -> bytes:
    """A complete frame. `mask`: True (random key), False (unmasked) or a 4-byte key.
    `length` overrides the announced payload length (to lie about it)."""
    key = _resolve_mask(mask)
    announced = len(payload) if length is None else length
    body = mask_bytes(key, payload) if key is not None else payload
    return encode_header(opcode, announced, fin, rsv, key) + body


def close_payload(code: int | None = None, reason: str | bytes = b"") -> bytes:
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def split_fragments(data: bytes, size: int) -> list[bytes]:
    """Split data into pieces of `size` bytes (one empty piece for empty data)."""
    if not data:
        return [b""]
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "http"):
        raise ValueError(f"only ws:// URLs are supported here: {url}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname or "127.0.0.1", parts.port or 80, path


# --------------------------------------------------------------------------- HTTP level


def _read_http_head(sock: socket.socket, buf: bytearray, deadline: float) -> bytes:
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise WSError(f"no complete HTTP response head; got {bytes(buf)[:300]!r}") from None
        if not chunk:
            if buf:
                break
            raise ConnectionClosedNoFrame("server closed TCP without any HTTP response")
        buf += chunk
        if len(buf) > 65536:
            raise ProtocolViolation("HTTP response head larger than 64 KiB")
    head, sep, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    return head


def _parse_head(head: bytes) -> HTTPResponse:
    lines = head.decode("iso-8859-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ProtocolViolation(f"not an HTTP status line: {status_line!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line or ":" not in line:
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return HTTPResponse(
        status=int(parts[1]),
        reason=parts[2] if len(parts) > 2 else "",
        version=parts[0],
        headers=headers,
    )


def handshake_request(
    host: str,
    port: int,
    path: str,
    key: str | None = None,
    version: str | None = "13",
    headers: dict[str, str] | None = None,
    http_version: str = "HTTP/1.1",
    method: str = "GET",
    omit: tuple[str, ...] = (),
) -> bytes:
    """The bytes of an upgrade request. `key=None` generates one; names in `omit`
    (case-insensitive) are left out; `headers` adds or overrides."""
    base: dict[str, str] = {
        "Host": f"{host}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key if key is not None else new_key(),
    }
    if version is not None:
        base["Sec-WebSocket-Version"] = version
    lowered = {k.lower(): k for k in base}
    for name, value in (headers or {}).items():
        base.pop(lowered.get(name.lower(), name), None)
        base[name] = value
    omitted = {o.lower() for o in omit}
    lines = [f"{method} {path} {http_version}"]
    lines += [f"{k}: {v}" for k, v in base.items() if k.lower() not in omitted]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_exchange(
    host: str, port: int, request: bytes, timeout: float = DEFAULT_TIMEOUT
) -> HTTPResponse:
    """Send raw request bytes, return the parsed response (body read until Content-Length,
    close, or timeout). For handshakes that are expected to be refused."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        buf = bytearray()
        resp = _parse_head(_read_http_head(sock, buf, deadline))
        if resp.status == 101:
            return resp
        length = resp.header("content-length")
        want = int(length) if length and length.isdigit() else None
        while (want is None or len(buf) < want) and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            buf += chunk
        resp.body = bytes(buf)
        return resp


# --------------------------------------------------------------------------- the client


class RawWS:
    """One raw WebSocket client connection."""

    def __init__(
        self, sock: socket.socket, response: HTTPResponse, key: str, leftover: bytes = b""
    ):
        self.sock = sock
        self.response = response
        self.key = key
        self._buf = bytearray(leftover)
        self.close_sent = False
        self.close_received: tuple[int | None, str] | None = None
        self.tcp_closed = False
        self.auto_pong = True
        self.timeout = DEFAULT_TIMEOUT  # default wait for replies
        self.send_timeout = SEND_TIMEOUT
        self.server_pings: list[bytes] = []
        self.frames_before_close: list[Frame] = []  # filled by expect_close(allow_data=True)

    # ---- connecting

    @classmethod
    def connect(
        cls,
        url: str,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        version: str | None = "13",
        timeout: float = DEFAULT_TIMEOUT,
        check_accept: bool = True,
        early_data: bytes = b"",
    ) -> RawWS:
        """Open TCP, do the opening handshake, raise HandshakeFailed on anything but 101.

        `early_data` (frames) goes out in the same write as the request, before the 101."""
        host, port, path = parse_url(url)
        key = key if key is not None else new_key()
        deadline = time.monotonic() + timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(
                handshake_request(host, port, path, key=key, version=version, headers=headers)
                + early_data
            )
            buf = bytearray()
            resp = _parse_head(_read_http_head(sock, buf, deadline))
            if resp.status != 101:
                resp.body = bytes(buf)
                raise HandshakeFailed(resp)
            if check_accept and resp.header("sec-websocket-accept") != accept_key(key):
                raise ProtocolViolation(
                    f"bad Sec-WebSocket-Accept {resp.header('sec-websocket-accept')!r}, "
                    f"want {accept_key(key)!r}"
                )
        except BaseException:
            sock.close()
            raise
        ws = cls(sock, resp, key, bytes(buf))
        ws.timeout = timeout
        return ws

    # ---- sending

    def _sendall(self, data: bytes) -> None:
        self.sock.settimeout(self.send_timeout)
        self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self._sendall(data)

    def send_raw_chunked(self, data: bytes, chunk: int = 1, pause: float = 0.0) -> None:
        """Write data in pieces of `chunk` bytes with `pause` seconds between writes."""
        for i in range(0, len(data), chunk):
            self._sendall(data[i : i + chunk])
            if pause and i + chunk < len(data):
                time.sleep(pause)

    def send_frame(
        self,
        opcode: int,
        payload: bytes | str = b"",
        fin: bool = True,
        rsv: int = 0,
        mask: bool | bytes = True,
        length: int | None = None,
        chunk: int | None = None,
        pause: float = 0.0,
    ) -> bytes:
        """Encode and send one frame (optionally over several writes); returns its bytes."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        data = encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask, length=length)
        if chunk:
            self.send_raw_chunked(data, chunk, pause)
        else:
            self.send_raw(data)
        if opcode == Op.CLOSE:
            self.close_sent = True
        return data

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(Op.TEXT, text)

    def send_binary(self, data: bytes) -> None:
        self.send_frame(Op.BINARY, data)

    def send_fragmented(self, opcode: int, payload: bytes, size: int) -> None:
        """Send one message as fragments of `size` bytes (first `opcode`, then CONT)."""
        pieces = split_fragments(payload, size)
        out = []
        for i, piece in enumerate(pieces):
            out.append(encode_frame(opcode if i == 0 else Op.CONT, piece, fin=i == len(pieces) - 1))
        self.send_raw(b"".join(out))

    def send_close(self, code: int | None = 1000, reason: str | bytes = b"") -> None:
        self.send_frame(Op.CLOSE, close_payload(code, reason))

    def try_send(self, data: bytes) -> bool:
        """sendall that tolerates the server having closed/reset already."""
        try:
            self._sendall(data)
            return True
        except OSError:
            return False

    # ---- receiving

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {n - len(self._buf)} more bytes")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(min(max(65536, n - len(self._buf)), 1 << 22))
            except TimeoutError:
                raise TimeoutError(
                    f"timed out waiting for {n - len(self._buf)} more bytes"
                ) from None
            except ConnectionResetError:
                self.tcp_closed = True
                raise ConnectionClosedNoFrame(
                    f"TCP reset by server (no close frame; "
                    f"{len(self._buf)} bytes of a partial frame)"
                ) from None
            if not chunk:
                self.tcp_closed = True
                raise ConnectionClosedNoFrame(
                    f"TCP closed by server without a close frame "
                    f"({len(self._buf)} bytes of a partial frame)"
                )
            self._buf += chunk

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def recv_frame(self, timeout: float | None = None) -> Frame:
        """Read exactly one frame. Server frames must be unmasked (RFC 6455 5.1).
        Raises TimeoutError, or ConnectionClosedNoFrame when TCP ends first."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self._buf[0], self._buf[1]
        length = b1 & 0x7F
        head = 2
        if length == 126:
            self._fill(4, deadline)
            length = struct.unpack_from("!H", self._buf, 2)[0]
            head = 4
        elif length == 127:
            self._fill(10, deadline)
            length = struct.unpack_from("!Q", self._buf, 2)[0]
            head = 10
        if b1 & 0x80:
            raise ProtocolViolation("server sent a masked frame")
        self._fill(head + length, deadline)
        self._take(head)
        payload = self._take(length)
        frame = Frame(bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0x0F, payload)
        if frame.opcode == Op.CLOSE and self.close_received is None:
            self.close_received = parse_close(frame.payload)
        return frame

    def next_frame(self, timeout: float | None = None) -> Frame:
        """recv_frame, but answer and skip server keepalive pings."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == Op.PING and self.auto_pong:
                self.server_pings.append(frame.payload)
                if not self.close_sent:
                    self.try_send(encode_frame(Op.PONG, frame.payload))
                continue
            return frame

    def recv_message(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Read one complete data message (reassembling fragments) -> (opcode, payload).
        Pongs are not expected here: any control frame other than a server ping is an error."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        opcode: int | None = None
        parts: list[bytes] = []
        while True:
            frame = self.next_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == Op.CLOSE:
                code, reason = self.close_received or (None, "")
                raise UnexpectedClose(code, reason)
            if frame.rsv:
                raise ProtocolViolation(f"server set RSV bits: {frame!r}")
            if frame.opcode >= 0x8:
                raise ProtocolViolation(
                    f"unexpected control frame while reading a message: {frame!r}"
                )
            if opcode is None:
                if frame.opcode == Op.CONT:
                    raise ProtocolViolation("server sent a continuation without a start")
                opcode = frame.opcode
            elif frame.opcode != Op.CONT:
                raise ProtocolViolation(
                    f"server started a new message inside a fragmented one: {frame!r}"
                )
            parts.append(frame.payload)
            if frame.fin:
                return opcode, b"".join(parts)

    def recv_pong(self, timeout: float | None = None) -> bytes:
        frame = self.next_frame(timeout)
        if frame.opcode == Op.CLOSE:
            raise UnexpectedClose(*(self.close_received or (None, "")))
        if frame.opcode != Op.PONG or not frame.fin or frame.rsv:
            raise ProtocolViolation(f"expected a pong, got {frame!r}")
        return frame.payload

    def echo(self, payload: bytes | str, timeout: float | None = None) -> None:
        """Send a text (str) or binary (bytes) message and assert it comes back unchanged."""
        timeout = self.timeout if timeout is None else timeout
        if isinstance(payload, str):
            self.send_frame(Op.TEXT, payload)
            want = (Op.TEXT, payload.encode("utf-8"))
        else:
            self.send_frame(Op.BINARY, payload)
            want = (Op.BINARY, payload)
        got = self.recv_message(timeout)
        if got != want:
            raise WSError(
                f"echo mismatch: sent {want[0]}/{len(want[1])} bytes, "
                f"got {got[0]}/{len(got[1])} bytes"
            )

    # ---- closing

    def wait_tcp_closed(self, timeout: float = 1.0) -> None:
        """Assert the server closes TCP within `timeout` (any further bytes are an error)."""
        if self.tcp_closed:
            return
        deadline = time.monotonic() + timeout
        extra = bytearray(self._buf)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WSError(
                    f"server did not close TCP within {timeout}s after the close handshake"
                )
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.tcp_closed = True
                if extra:
                    raise ProtocolViolation(
                        f"server sent {len(extra)} bytes after its close frame: "
                        f"{bytes(extra[:60])!r}"
                    )
                return
            extra += chunk

    def expect_close(
        self,
        code: int | None = None,
        timeout: float | None = None,
        tcp_timeout: float = 1.0,
        allow_data: bool = False,
        reply: bool = True,
    ) -> tuple[int | None, str]:
        """Read frames until a close frame arrives; return (code, reason) where code is None
        for an empty close payload. With `code`, assert it. Data frames before the close
        fail the test unless `allow_data`. Unless we already sent a close (or `reply` is
        False) we answer with a close echoing the code, then require the server to close
        TCP within `tcp_timeout`. Raises ConnectionClosedNoFrame if TCP ends first."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        skipped: list[Frame] = []
        while True:
            try:
                frame = self.next_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise WSError(
                    f"no close frame within {timeout}s (expected {code}); frames before: {skipped}"
                ) from None
            except ConnectionClosedNoFrame as exc:
                raise ConnectionClosedNoFrame(
                    f"{exc} (expected close {code}); frames before: {skipped}"
                ) from None
            if frame.opcode == Op.CLOSE:
                break
            if not allow_data:
                raise ProtocolViolation(f"expected close {code}, got {frame!r} first")
            skipped.append(frame)
            self.frames_before_close.append(frame)
        got_code, reason = self.close_received or (None, "")
        if not frame.fin or frame.rsv:
            raise ProtocolViolation(f"malformed close frame from server: {frame!r}")
        if code is not None and got_code != code:
            raise WSError(f"expected close code {code}, got {got_code} (reason {reason!r})")
        if reply and not self.close_sent:
            self.try_send(
                encode_frame(
                    Op.CLOSE,
                    close_payload(got_code if got_code not in (None, 1005, 1006, 1015) else 1000),
                )
            )
            self.close_sent = True
        self.wait_tcp_closed(tcp_timeout)
        return got_code, reason

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawWS:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a server close payload; code None for an empty payload."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolViolation("server sent a 1-byte close payload")
    code = struct.unpack("!H", payload[:2])[0]
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(f"server close reason is not UTF-8: {payload[2:]!r}") from None
    return code, reason
