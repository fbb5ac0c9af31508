"""Socket pairs and implementation switches for the wsapp.speedups tests."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from wsapp.speedups import pure

try:
    from wsapp.speedups import _fanout
except ImportError:  # reported by test_select.test_the_c_modules_are_built
    _fanout = None

SendAll = Callable[..., list[tuple[int, int]]]


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(server side, client side) of one loopback TCP connection, both blocking."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    client.settimeout(None)
    return server, client


@pytest.fixture
def pairs() -> Iterator[Callable[..., list[tuple[socket.socket, socket.socket]]]]:
    """make(count, kind="tcp"|"unix") -> [(sending end, peer)], all closed afterwards."""
    made: list[socket.socket] = []

    def make(count: int, kind: str = "tcp") -> list[tuple[socket.socket, socket.socket]]:
        out = []
        for _ in range(count):
            pair = tcp_pair() if kind == "tcp" else socket.socketpair()
            made.extend(pair)
            out.append(pair)
        return out

    yield make
    for sock in made:
        with contextlib.suppress(OSError):
            sock.close()


@pytest.fixture(params=["c-io_uring", "c-send", "python"])
def send_all(request) -> Iterator[SendAll]:
    """Each send_all under test: C through io_uring, C with one send() each, pure Python."""
    if request.param == "python":
        yield pure.send_all
        return
    assert _fanout is not None, "C speedups not built: python -m wsapp.speedups.build"
    if request.param == "c-send":
        assert _fanout.set_ring(False) == "send"
    else:
        mode = _fanout.set_ring(True)
        if mode != "io_uring":
            pytest.skip(f"this kernel refuses io_uring: {mode}")
    try:
        yield _fanout.send_all
    finally:
        _fanout._ring_force_async(False)
        _fanout.set_ring(True)


def fill(sock: socket.socket, peer: socket.socket) -> int:
    """Fill `sock`'s send path until the kernel refuses a single byte; returns the bytes it
    took. Its send buffer is shrunk first and the peer's receive buffer fixed (no
    autotuning), so that this takes tens of KiB and the peer reads them back at once."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    filled = 0
    chunk = b"f" * 4096
    for _ in range(10_000):
        try:
            filled += sock.send(chunk, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
    else:
        raise AssertionError("the socket never filled up")
    for _ in range(100):  # down to single bytes, so that nothing at all fits now
        try:
            filled += sock.send(b"f", socket.MSG_DONTWAIT)
        except BlockingIOError:
            return filled
    raise AssertionError("the socket kept taking single bytes")


def read_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        assert chunk, f"closed after {len(data)} of {n} bytes"
        data += chunk
    return bytes(data)


def assert_nothing_more(sock: socket.socket, wait: float = 0.1) -> None:
    """Nothing else (not even an end of stream) arrives on `sock` within `wait` seconds."""
    time.sleep(wait)
    sock.setblocking(False)
    try:
        extra = sock.recv(1)
    except BlockingIOError:
        return
    finally:
        sock.setblocking(True)
    raise AssertionError(f"unexpected {extra!r} after the expected bytes")
