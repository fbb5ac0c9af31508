"""The pure Python versions of wsapp's C functions: same arguments, results and errors.

`scan_data_frames`, `encode_messages`, `Payload` and `Utf8` mirror `_framing.c`, `send_all` mirrors
`_fanout.c`. `wsapp.speedups.select` uses these when the C modules are not built or are
switched off (WSAPP_SPEEDUPS=0), and the tests run each against its C twin.
"""

from __future__ import annotations

import _socket
import errno
import struct
from array import array
from collections.abc import Iterable, Sequence

from wsapp.speedups.mask import apply_mask

__all__ = [
    "scan_data_frames", "encode_message", "encode_messages", "send_all", "Payload", "Utf8",
    "payload_ahead",
]

Buffer = bytes | bytearray | memoryview


def scan_data_frames(data: Buffer, limit: int, events: list) -> int:
    """Append the leading complete, small, unfragmented, masked data frames of `data`.

    A frame qualifies when it is FIN with no RSV bits, text or binary, masked, with a 7-
    or 16-bit length (RFC 6455 5.2), wholly inside `data` and at most `limit` bytes of
    payload. Each is unmasked (5.3) and appended to `events`: text as str (strict UTF-8,
    8.1), binary as bytes. Returns the bytes consumed. Stops without raising at the first
    frame that does not qualify or is not valid UTF-8: the general parser takes the rest
    and reports any error.
    """
    if not isinstance(events, list):
        raise TypeError("events must be a list")
    if type(data) is not bytes:
        data = bytes(data)  # one copy, so that every slice below is bytes
    n = len(data)
    pos = 0
    unmask = apply_mask
    append = events.append
    while n - pos >= 6:  # the smallest masked frame: 2 header bytes and a 4-byte key
        b0 = data[pos]
        if b0 != 0x81 and b0 != 0x82:
            break
        b1 = data[pos + 1]
        length = b1 & 0x7F
        if b1 < 0x80 or length == 127:  # not masked, or a 64-bit length
            break
        if length == 126:
            if n - pos < 8:
                break
            length = (data[pos + 2] << 8) | data[pos + 3]
            start = pos + 8
        else:
            start = pos + 6
        end = start + length
        if end > n or length > limit:
            break
        payload = unmask(data[start:end], data[start - 4 : start])
        if b0 == 0x81:
            try:
                append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                break
        else:
            append(payload)
        pos = end
    return pos


_PACK_H16 = struct.Struct("!BBH").pack
_PACK_H64 = struct.Struct("!BBQ").pack
_SMALL_HEADERS = {first: [bytes((first, n)) for n in range(126)] for first in (0x81, 0x82)}


def encode_message(message: str | Buffer) -> bytes:
    """One unfragmented, unmasked server frame (RFC 6455 5.2): text for str (its UTF-8,
    lone surrogates refused), binary for any other bytes-like object."""
    if isinstance(message, str):
        payload = message.encode("utf-8")
        first = 0x81
    else:
        if type(message) is bytes:
            payload = message
        else:
            view = memoryview(message)  # TypeError for what is not bytes-like
            if not view.c_contiguous:
                raise BufferError("memoryview: underlying buffer is not C-contiguous")
            payload = view.tobytes()
        first = 0x82
    length = len(payload)
    if length < 126:
        return _SMALL_HEADERS[first][length] + payload
    if length < 65536:
        return _PACK_H16(first, 126, length) + payload
    return _PACK_H64(first, 127, length) + payload


def encode_messages(messages: Sequence[str | Buffer]) -> list[bytes]:
    """`encode_message` for each message."""
    return [encode_message(message) for message in messages]


_SEND_FLAGS = _socket.MSG_DONTWAIT | _socket.MSG_NOSIGNAL
# A transient socket object around a descriptor that is not ours: SOCK_NONBLOCK makes it
# non-blocking on the Python side without an fcntl() on the shared file description (and
# without gevent: `_socket` is never monkey-patched). Family and type only label the
# object; send() does not look at them.
_WRAP = (_socket.AF_INET, _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK, 0)


def send_all(fds: Iterable[int], frame: Buffer) -> list[tuple[int, int]]:
    """One non-blocking `send(fd, frame, MSG_DONTWAIT | MSG_NOSIGNAL)` per descriptor.

    Returns only the descriptors that did not take the whole frame, in order, as
    `(index in fds, bytes sent)` for a partial send, `(index, 0)` when the socket buffer
    is full (EAGAIN), or `(index, -errno)` for any other error. `fds` is an iterable of
    ints; a value that is not an int or does not fit a C int raises (TypeError,
    OverflowError) before anything is sent. `frame` is a C-contiguous bytes-like object.

    Each descriptor is wrapped in a throw-away `_socket.socket` for the one call and
    released with `detach()`, never closed: the caller owns every descriptor. That costs
    one extra system call per descriptor (CPython validates it with getsockname()), which
    is why `_fanout.send_all` exists.
    """
    ints = array("i", fds if isinstance(fds, list | tuple) else tuple(fds))
    view = memoryview(frame)
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    size = view.nbytes
    wrap = _socket.socket
    family, kind, proto = _WRAP
    left: list[tuple[int, int]] = []
    for index, fd in enumerate(ints):
        if fd < 0:
            left.append((index, -errno.EBADF))
            continue
        try:
            sock = wrap(family, kind, proto, fd)  # raises for a closed fd or a non-socket
        except OSError as exc:
            left.append((index, -(exc.errno or errno.EIO)))
            continue
        try:
            sent = sock.send(view, _SEND_FLAGS)
        except BlockingIOError:
            left.append((index, 0))
            continue
        except OSError as exc:
            left.append((index, -(exc.errno or errno.EIO)))
            continue
        finally:
            sock.detach()
        if sent != size:
            left.append((index, sent))
    return left


class Payload:
    """One large payload, unmasked piece by piece into one buffer (RFC 6455 5.3).

    `write(data, start, count)` unmasks `data[start:start + count]` at the current offset,
    the mask continuing where the last piece stopped; `take()` returns the payload once all
    `size` bytes are written (once): bytes, or for `text` the decoded str. `ascii` says
    whether every byte of text so far was ASCII (then valid UTF-8); after the first other
    byte the caller validates what comes with `written(start)`. The C twin fills the
    message's own object; here a bytearray is copied out at the end.
    """

    __slots__ = ("_buf", "_mask", "_filled", "_taken", "_text", "ascii")
    _ahead = 0  # bytes every live Payload allocated and has not received yet

    def __init__(self, size: int, mask: Buffer, text: bool = False) -> None:
        self._taken = True  # nothing reserved until the checks pass (see __del__)
        mask = bytes(mask)
        if size < 0 or len(mask) != 4:
            raise ValueError("Payload(size >= 0, 4-byte mask)")
        self._buf = bytearray(size)
        self._mask = mask
        self._filled = 0
        self._taken = False
        Payload._ahead += size
        self._text = bool(text)
        #: Text whose every byte so far is ASCII.
        self.ascii = self._text

    @property
    def filled(self) -> int:
        """Payload bytes written so far."""
        return self._filled

    def write(self, data: Buffer, start: int, count: int) -> None:
        filled = self._filled
        if (
            self._taken or start < 0 or count < 0 or start > len(data)
            or count > len(data) - start or count > len(self._buf) - filled
        ):
            raise ValueError("write() outside the data or past the payload")
        turn = filled & 3
        mask = self._mask[turn:] + self._mask[:turn]
        piece = apply_mask(bytes(data[start : start + count]), mask)
        self._buf[filled : filled + count] = piece
        if self.ascii and not piece.isascii():
            self.ascii = False
        self._filled = filled + count
        Payload._ahead -= count

    def written(self, start: int) -> memoryview:
        """A read-only view of the payload from `start` to what is written so far."""
        if self._taken or not 0 <= start <= self._filled:
            raise ValueError("written(start) outside what is written")
        return memoryview(self._buf).toreadonly()[start : self._filled]

    def __del__(self) -> None:
        if not self._taken:
            Payload._ahead -= len(self._buf) - self._filled

    def take(self) -> bytes | str:
        if self._taken or self._filled != len(self._buf):
            raise ValueError("take() before the payload is complete, or twice")
        self._taken = True
        buf, self._buf = self._buf, bytearray()
        return buf.decode("utf-8") if self._text else bytes(buf)


def payload_ahead() -> int:
    """Bytes all live `Payload`s allocated and have not received yet."""
    return Payload._ahead


def Utf8(text: str) -> bytes:  # noqa: N802 - the name of the C type it stands in for
    """The UTF-8 bytes of `text` to send (the C twin lends the str's own bytes, no copy)."""
    if type(text) is not str:
        raise TypeError("Utf8() needs a str")
    return text.encode("utf-8")
