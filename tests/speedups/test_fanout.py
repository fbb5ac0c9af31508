"""`send_all(fds, frame)`: C through io_uring, C with send(), and pure Python, over real
sockets (loopback TCP and Unix socket pairs). Each test runs all three (conftest)."""

from __future__ import annotations

import ast
import errno
import os
import resource
import signal
import socket
import time
from array import array

import pytest

from wsapp.speedups import pure

from .conftest import _fanout, assert_nothing_more, fill, read_exactly

FRAME = b"\x81\x05hello"


def fds_of(pairs) -> list[int]:
    return [sock.fileno() for sock, _ in pairs]


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_ready_sockets_get_the_whole_frame_and_are_not_reported(send_all, pairs, kind):
    made = pairs(3, kind)
    assert send_all(fds_of(made), FRAME) == []
    for _, peer in made:
        assert read_exactly(peer, len(FRAME)) == FRAME
        assert_nothing_more(peer)


def test_a_full_socket_is_reported_with_what_it_took(send_all, pairs):
    """(i, 0), or a partial count whose bytes are exactly what the peer then receives."""
    (ready, ready_peer), (full, full_peer) = made = pairs(2)
    filled = fill(full, full_peer)
    result = send_all(fds_of(made), FRAME)
    assert len(result) == 1 and result[0][0] == 1, result
    sent = result[0][1]
    assert 0 <= sent < len(FRAME)
    assert read_exactly(ready_peer, len(FRAME)) == FRAME
    assert read_exactly(full_peer, filled + sent)[filled:] == FRAME[:sent]
    assert_nothing_more(full_peer)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_a_large_frame_is_partly_sent_and_the_count_is_exact(send_all, pairs, kind):
    (a, a_peer), (b, b_peer) = made = pairs(2, kind)
    for _, peer in made:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    frame = os.urandom(8 << 20)  # more than the kernel buffers for one socket
    result = send_all(fds_of(made), frame)
    assert [index for index, _ in result] == [0, 1]
    for (_, sent), peer in zip(result, (a_peer, b_peer), strict=True):
        assert 0 < sent < len(frame)
        assert read_exactly(peer, sent) == frame[:sent]
        assert_nothing_more(peer)


def test_a_closed_peer_gives_a_negative_errno(send_all, pairs):
    """A Unix pair fails at once with EPIPE; a TCP peer that reset the connection gives
    ECONNRESET (or EPIPE once the error was reported). MSG_NOSIGNAL: no SIGPIPE."""
    (ok, ok_peer), (unix, unix_peer) = pairs(2, "unix")
    (tcp, tcp_peer), = pairs(1, "tcp")
    unix_peer.close()
    tcp_peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    tcp_peer.close()  # SO_LINGER 0: a reset
    time.sleep(0.05)
    result = send_all([ok.fileno(), unix.fileno(), tcp.fileno()], FRAME)
    assert result[0] == (1, -errno.EPIPE)
    assert result[1][0] == 2 and result[1][1] in (-errno.ECONNRESET, -errno.EPIPE)
    assert len(result) == 2
    assert read_exactly(ok_peer, len(FRAME)) == FRAME
    os.fstat(unix.fileno())  # the descriptors are the caller's: still open
    os.fstat(tcp.fileno())


def test_descriptors_that_are_not_sockets(send_all, pairs):
    """A descriptor number nothing has open, a pipe, a negative number: -EBADF,
    -ENOTSOCK, -EBADF, and the good ones around them are still served."""
    (a, a_peer), (b, b_peer) = pairs(2)
    unused = resource.getrlimit(resource.RLIMIT_NOFILE)[0] + 10
    read_end, write_end = os.pipe()
    try:
        result = send_all([a.fileno(), unused, write_end, -1, b.fileno()], FRAME)
        assert result == [(1, -errno.EBADF), (2, -errno.ENOTSOCK), (3, -errno.EBADF)]
        os.fstat(write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    for peer in (a_peer, b_peer):
        assert read_exactly(peer, len(FRAME)) == FRAME


def test_every_kind_of_result_at_once(send_all, pairs):
    """One call mixing ready, full, dead and bad descriptors: each result at its index."""
    (ready, ready_peer), (full, full_peer), (dead, dead_peer) = made = pairs(3, "unix")
    fill(full, full_peer)
    dead_peer.close()
    fds = [*fds_of(made), -5, ready.fileno()]
    result = send_all(fds, FRAME)
    assert [i for i, _ in result] == [1, 2, 3]
    assert 0 <= result[0][1] < len(FRAME)
    assert result[1:] == [(2, -errno.EPIPE), (3, -errno.EBADF)]
    assert read_exactly(ready_peer, 2 * len(FRAME)) == FRAME * 2


def test_more_sockets_than_one_io_uring_batch_each_get_every_frame_once_in_order(send_all, pairs):
    """1,100 sockets (io_uring takes 1,024 sends per system call): two frames, each
    delivered once to every socket, in order."""
    made = pairs(1100, "unix")
    fds = array("i", fds_of(made))
    first, second = b"\x81\x03one", b"\x81\x03two"
    assert send_all(fds, first) == []
    assert send_all(list(fds), second) == []
    for _, peer in made:
        assert read_exactly(peer, len(first) + len(second)) == first + second
        assert_nothing_more(peer, 0)


def test_io_uring_sends_up_to_1024_per_batch(pairs):
    if _fanout is None:
        pytest.fail("C speedups not built: python -m wsapp.speedups.build")
    mode = _fanout.set_ring(True)
    if mode != "io_uring":
        pytest.skip(f"this kernel refuses io_uring: {mode}")
    made = pairs(1100, "unix")
    before = _fanout.ring_submits()
    assert _fanout.send_all(fds_of(made), FRAME) == []
    assert _fanout.ring_submits() - before == 2  # 1,024 + 76
    assert _fanout.send_all(fds_of(made[:1]), FRAME) == []  # one socket: plain send()
    assert _fanout.ring_submits() - before == 2
    assert _fanout.set_ring(False) == "send"
    assert _fanout.send_all(fds_of(made), FRAME) == []
    assert _fanout.ring_submits() - before == 2
    _fanout.set_ring(True)
    for index, (_, peer) in enumerate(made):
        copies = 3 if index == 0 else 2
        assert read_exactly(peer, copies * len(FRAME)) == FRAME * copies
        assert_nothing_more(peer, 0)


def test_forked_child_sends_through_a_ring_of_its_own(pairs):
    """A gunicorn worker is forked after the ring may exist: the child must make its own,
    never submit to its parent's, and the parent's keeps working."""
    if _fanout is None:
        pytest.fail("C speedups not built: python -m wsapp.speedups.build")
    mode = _fanout.set_ring(True)
    if mode != "io_uring":
        pytest.skip(f"this kernel refuses io_uring: {mode}")
    made = pairs(2, "unix")
    fds = fds_of(made)
    parent, child = b"\x81\x06parent", b"\x81\x05child"
    assert _fanout.send_all(fds, parent) == []
    assert _fanout.ring_owner() == os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: only the C call, then out without running any cleanup
        before = _fanout.ring_submits()
        ok = (
            _fanout.send_all(fds, child) == []
            and _fanout.ring_owner() == os.getpid()
            and _fanout.ring_submits() == before + 1
        )
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child did not use a ring of its own"
    assert _fanout.ring_owner() == os.getpid()
    assert _fanout.send_all(fds, parent) == []
    for _, peer in made:
        expected = parent + child + parent
        assert read_exactly(peer, len(expected)) == expected
        assert_nothing_more(peer)


def in_child(scenario, timeout: float = 5.0):
    """scenario() in a forked child; its (repr-able) result. A child that hangs (a send
    waited for inside C, where no signal handler runs) is killed and the test fails."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            out = repr(("ok", scenario()))
        except BaseException as exc:  # reported by the parent
            out = repr(("error", repr(exc)))
        os.write(write_end, out.encode())
        os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            pytest.fail(f"the child hung for {timeout} s")
        time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        status, value = ast.literal_eval(pipe.read().decode())
    assert status == "ok", value
    return value


@pytest.mark.parametrize("blocking", [False, True], ids=["nonblocking-fd", "blocking-fd"])
def test_a_send_the_kernel_parks_is_cancelled_and_reported_unsent(pairs, blocking):
    """On a kernel that parked a send instead of honouring MSG_DONTWAIT, send_all must
    neither wait for that socket nor leave the send in flight (a later frame would overtake
    it): it is cancelled, reported as (i, 0), nothing of it ever reaches the peer, and the
    process falls back to send(). Simulated by submitting without MSG_DONTWAIT, in a child
    process (its own ring) so that a regression cannot hang the test run."""
    if _fanout is None:
        pytest.fail("C speedups not built: python -m wsapp.speedups.build")
    mode = _fanout.set_ring(True)
    if mode != "io_uring":
        pytest.skip(f"this kernel refuses io_uring: {mode}")
    (ready, ready_peer), (full, full_peer) = made = pairs(2)
    full.setblocking(blocking)
    filled = fill(full, full_peer)
    fds = fds_of(made)

    def scenario():
        assert _fanout.set_ring(True) == "io_uring"
        _fanout._ring_force_async(True)
        started = time.monotonic()
        result = _fanout.send_all(fds, FRAME)
        elapsed = time.monotonic() - started
        _fanout._ring_force_async(False)
        given_up = _fanout.ring_owner() == 0
        again = _fanout.send_all(fds[:1], FRAME)  # by send() now
        return result, elapsed, given_up, again, _fanout.set_ring(True)

    result, elapsed, given_up, again, mode_after = in_child(scenario)
    assert elapsed < 1.0, "send_all waited for a full socket"
    assert result == [(1, 0)]
    assert given_up, "the ring should be given up after a parked send"
    assert again == []
    assert mode_after == "io_uring"  # asked again, it is set up again
    assert read_exactly(ready_peer, 2 * len(FRAME)) == FRAME * 2
    assert read_exactly(full_peer, filled) == b"f" * filled
    assert_nothing_more(full_peer, 0.3)  # the cancelled send put nothing on the wire
    assert _fanout.send_all(fds, FRAME) == []  # the parent's ring is untouched
    assert read_exactly(full_peer, len(FRAME)) == FRAME


def test_fds_may_be_any_iterable_of_ints_and_bad_ones_raise_before_sending(send_all, pairs):
    (a, a_peer), (b, b_peer) = pairs(2)
    fd_a, fd_b = a.fileno(), b.fileno()
    assert send_all(array("i", [fd_a, fd_b]), FRAME) == []
    assert send_all((fd_a, fd_b), memoryview(b"xx" + FRAME)[2:]) == []
    assert send_all(iter([fd_a, fd_b]), bytearray(FRAME)) == []
    assert send_all(array("q", [fd_a, fd_b]), FRAME) == []  # another int type: converted
    assert send_all([], FRAME) == []
    assert send_all([fd_a, fd_b], b"") == []  # an empty frame is sent whole
    with pytest.raises(TypeError):
        send_all([fd_a, "3"], FRAME)
    with pytest.raises(TypeError):
        send_all([fd_a, 3.0], FRAME)
    with pytest.raises(OverflowError):
        send_all([fd_a, 1 << 31], FRAME)
    with pytest.raises(TypeError):
        send_all(fd_a, FRAME)
    with pytest.raises(TypeError):
        send_all([fd_a], 42)
    with pytest.raises(TypeError):
        send_all([fd_a], "text is not bytes")
    for peer in (a_peer, b_peer):
        assert read_exactly(peer, 4 * len(FRAME)) == FRAME * 4
        assert_nothing_more(peer)


def test_python_send_all_leaves_each_descriptor_as_it_was(pairs):
    """The pure version wraps each fd for one call: it never closes it, never changes its
    blocking mode, and works on gevent's sockets too (whose fds are non-blocking)."""
    import fcntl

    from gevent import socket as gsocket

    (a, a_peer), (dead, dead_peer) = pairs(2, "unix")
    g, g_peer = gsocket.socketpair()
    try:
        dead_peer.close()
        flags = {fd: fcntl.fcntl(fd, fcntl.F_GETFL) for fd in (a.fileno(), g.fileno())}
        assert pure.send_all([a.fileno(), dead.fileno(), g.fileno()], FRAME) == [
            (1, -errno.EPIPE)
        ]
        for fd, before in flags.items():
            assert fcntl.fcntl(fd, fcntl.F_GETFL) == before
        os.fstat(dead.fileno())
        assert read_exactly(a_peer, len(FRAME)) == FRAME
        g_peer.settimeout(5)
        assert g_peer.recv(100) == FRAME
    finally:
        g.close()
        g_peer.close()
