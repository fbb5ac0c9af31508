"""Connection queueing rules over a real server: bursts, slow readers."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time

import pytest

from tests.support.rawws import Op, RawWS, WSError, encode_frame
from tests.support.servers import running_server


def test_burst_much_larger_than_the_send_queue_is_echoed_not_dropped():
    """3000 frames in one write with WSAPP_SEND_QUEUE=64: a client that reads is never "too slow"."""
    with running_server("serve", env={"WSAPP_SEND_QUEUE": "64"}) as srv, RawWS.connect(srv.url("/echo"), timeout=10) as ws:
        total = 3000
        burst = b"".join(encode_frame(Op.TEXT, f"m{i}".encode()) for i in range(total))
        received: list[str] = []

        def reader() -> None:
            with contextlib.suppress(WSError, OSError):
                while len(received) < total:
                    received.append(ws.recv_message()[1].decode())

        thread = threading.Thread(target=reader)
        thread.start()
        ws.sock.sendall(burst)
        thread.join(20)
        assert received == [f"m{i}" for i in range(total)]


def test_idle_background_connections_hold_no_request_objects():
    """Echo and chat sockets leave their request (`serve_in_background`): while they wait,
    no pywsgi handler, environ, request Flask context or request greenlet is kept for them.

    In-process so the live objects can be counted; the clients run in a thread with plain
    blocking sockets while this thread runs the server's gevent loop."""
    import gc
    import time

    import gevent
    from flask.ctx import RequestContext
    from gevent.pywsgi import WSGIServer

    from wsapp import create_app
    from wsapp.protocol import runtime
    from wsapp.protocol.handler import WsappHandler
    from wsapp.settings import Settings

    app = create_app(Settings(max_conn_per_ip=0))
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=WsappHandler, log=None)
    server.start()
    url = f"ws://127.0.0.1:{server.server_port}"
    opened = threading.Event()
    done = threading.Event()
    failures: list[BaseException] = []

    def clients() -> None:
        sockets = []
        try:
            for i in range(10):
                sockets.append(RawWS.connect(f"{url}/echo"))
                sockets.append(RawWS.connect(f"{url}/chat/idle?name=m{i}"))
            for ws in sockets[::2]:
                ws.send_text(b"ping")
                assert ws.recv_message() == (Op.TEXT, b"ping")
            opened.set()
            done.wait(10)
            for ws in sockets[::2]:  # the connections still work after the count
                ws.send_text(b"still here")
                assert ws.recv_message() == (Op.TEXT, b"still here")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            opened.set()
        finally:
            for index, ws in enumerate(sockets):
                if index % 4 == 3:  # some peers vanish with a TCP reset instead of closing
                    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    ws.sock.close()
                else:
                    ws.close()

    thread = threading.Thread(target=clients)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not opened.is_set() and time.monotonic() < deadline:
            gevent.sleep(0.01)
        gevent.sleep(0.2)  # the chat joins' broadcasts settle
        assert not failures, failures
        gc.collect()
        live = gc.get_objects()
        assert runtime.current().count() == 20
        assert sum(isinstance(o, WsappHandler) for o in live) == 0
        assert sum(isinstance(o, RequestContext) for o in live) == 0
        assert sum(isinstance(o, dict) and "wsgi.input" in o for o in live) == 0  # no environ
        del live
        done.set()
        while thread.is_alive() and time.monotonic() < deadline + 10:
            gevent.sleep(0.01)
        assert not failures, failures
        rt = runtime.current()
        while (rt.count() or rt.admitted) and time.monotonic() < deadline + 15:
            gevent.sleep(0.01)
        # Everything the sockets held is given back, whichever way they ended.
        assert rt.count() == 0
        assert rt.admitted == 0 and not rt.per_ip
        assert app.extensions["wsapp"].hub.local_rooms() == {}
    finally:
        done.set()
        server.stop(timeout=1)
        thread.join(5)


def _members(count: int):
    """`count` accepted Connections on socket pairs (pongs and pings through the queue, as
    `Connection.open` sets up), with the peers' ends."""
    from tests.support.socketpair_ws import make_pair
    from wsapp.connection import Connection
    from wsapp.settings import Settings

    settings = Settings()
    conns, peers = [], []
    for _ in range(count):
        ws, peer = make_pair()
        conn = Connection(ws, settings, "test")
        ws.control_sink = conn.send_frame
        conns.append(conn)
        peers.append(peer)
    return conns, peers


def _fill_send_buffer(conn) -> int:
    """Fill the kernel buffers of `conn`'s socket (send buffer shrunk to 4 KiB first);
    returns how many bytes it took, which its peer will read before anything else."""
    conn.ws._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filler = 0
    while True:
        sent = conn.ws.write_nowait(b"f" * 4096)
        filler += sent
        if sent < 4096:
            return filler


def _read_exactly(sock, n: int) -> bytes:
    import gevent

    data = b""
    with gevent.Timeout(5):
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "closed early"
            data += chunk
    return data


@pytest.fixture
def send_impl(request, monkeypatch):
    """Which direct-send loop `send_to_all` uses: C through io_uring, C with send(), Python."""
    from wsapp.protocol import frames

    impl = request.param
    if impl == "python":
        monkeypatch.setattr(frames, "c_broadcast", None)
        return impl
    assert frames.c_broadcast is not None, "C speedups not built"
    if impl == "c-send":
        assert frames.use_io_uring(False) == "send"
    else:
        mode = frames.use_io_uring(True)
        if mode != "io_uring":
            pytest.skip(f"this kernel refuses io_uring: {mode}")
    request.addfinalizer(lambda: frames.use_io_uring(True))
    return impl


@pytest.mark.parametrize("send_impl", ["c-io_uring", "c-send", "python"], indirect=True)
def test_send_to_all_writes_ready_members_at_once_and_queues_the_rest(send_impl):
    """`send_to_all` with the C loop (io_uring or send()) and with the Python one: same
    outcome for a ready member, a member with frames already queued (order kept), a closed
    one, one whose socket buffer is full (partial send, the rest follows) and one whose
    peer is gone."""
    import gevent

    from wsapp import connection
    from wsapp.connection import send_to_all
    from wsapp.protocol import frames

    (ready, busy, closed, full, gone), (ready_peer, busy_peer, _closed_peer, full_peer, gone_peer) = _members(5)

    closed.ws.abort()
    filler = _fill_send_buffer(full)
    gone_peer.close()  # a socket pair: the next send() fails with EPIPE
    gevent.sleep(0.05)

    frame = frames.encode_message("hello")
    big = frames.encode_message(b"b" * 2_000_000)  # more than a socket pair buffers
    gevent.sleep(0)  # a new turn of the loop: the first broadcast of a turn is written directly
    busy.send_frame(b"first")  # queued; the loop callback writes it later
    send_to_all([ready, busy, closed, full, gone], frame)
    # The ready member has it before anything else ran, and it was counted.
    assert _read_exactly(ready_peer, len(frame)) == frame
    assert ready.ws.messages_out == 1 and ready.ws.bytes_out == len(frame)
    assert busy.queued() == 2  # behind the frame already queued
    assert closed.queued() == 0
    gevent.sleep(0.05)
    assert _read_exactly(busy_peer, 5 + len(frame)) == b"first" + frame
    assert gone.ws.state == "CLOSED" and gone.ws.close_code == 1006
    # `full` gets the rest of the filler, then the whole frame: never a torn frame.
    assert _read_exactly(full_peer, filler + len(frame))[filler:] == frame
    # A partial send: the kernel takes part of a big frame, the rest follows via the queue
    # (two members, so that the C loop sends them as one batch).
    connection._in_burst = False
    send_to_all([ready, busy], big)
    received = gevent.spawn(_read_exactly, busy_peer, len(big))
    assert _read_exactly(ready_peer, len(big)) == big
    assert received.get(timeout=5) == big




def _close_all(conns, peers) -> None:
    for conn, peer in zip(conns, peers, strict=True):
        conn.ws.abort()
        peer.close()


@pytest.mark.parametrize("send_impl", ["c-io_uring", "c-send"], indirect=True)
def test_broadcast_to_more_members_than_one_io_uring_batch(send_impl):
    """1,100 members (io_uring takes 1,024 sends per call): every member gets each frame
    exactly once and in order, and each delivery is counted once."""
    import gevent

    from wsapp import connection
    from wsapp.connection import send_to_all
    from wsapp.protocol import frames

    conns, peers = _members(1100)
    try:
        first, second = frames.encode_message("one"), frames.encode_message("two")
        gevent.sleep(0)
        send_to_all(conns, first)
        connection._in_burst = False
        send_to_all(conns, second)
        assert all(conn.queued() == 0 for conn in conns), "a ready member was queued instead of written"
        for peer in peers:
            with gevent.Timeout(5):
                data = b""
                while len(data) < len(first) + len(second):
                    data += peer.recv(65536)
            assert data == first + second
        assert {(c.ws.messages_out, c.ws.bytes_out) for c in conns} == {(2, len(first) + len(second))}
    finally:
        _close_all(conns, peers)


def test_forked_worker_sends_through_its_own_io_uring():
    """A gunicorn worker is forked after the app (and maybe the ring) exists: the child
    must set up a ring of its own, never submit to its parent's, and the parent's keeps
    working."""
    from wsapp.protocol import _speedups, frames

    mode = frames.use_io_uring(True)
    if mode != "io_uring":
        pytest.skip(f"this kernel refuses io_uring: {mode}")
    conns, peers = _members(2)
    try:
        parent_frame, child_frame = frames.encode_message("parent"), frames.encode_message("child")
        assert _speedups.broadcast(conns, parent_frame) == []
        assert _speedups.ring_owner() == os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: no gevent here, only the C call
            ok = _speedups.broadcast(conns, child_frame) == [] and _speedups.ring_owner() == os.getpid()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child did not send through a ring of its own"
        assert _speedups.ring_owner() == os.getpid()
        assert _speedups.broadcast(conns, parent_frame) == []
        expected = parent_frame + child_frame + parent_frame
        for peer in peers:
            raw = socket.socket(fileno=os.dup(peer.fileno()))
            raw.settimeout(5)
            data = b""
            while len(data) < len(expected):
                data += raw.recv(65536)
            raw.close()
            assert data == expected
    finally:
        _close_all(conns, peers)


@pytest.mark.parametrize("send_impl", ["c-io_uring"], indirect=True)
def test_a_send_the_kernel_parks_is_cancelled_and_goes_through_the_queue(send_impl):
    """On a kernel that parked a send instead of honouring MSG_DONTWAIT, the broadcast must
    neither wait for that member nor leave the send in flight: it is cancelled (nothing
    sent), the frame goes through the member's queue after what is already buffered, and
    the process falls back to send(). Simulated by sending without MSG_DONTWAIT."""
    import gevent

    from wsapp import connection
    from wsapp.connection import send_to_all
    from wsapp.protocol import _speedups, frames

    conns, peers = _members(2)
    ready, full = conns
    ready_peer, full_peer = peers
    try:
        filler = _fill_send_buffer(full)
        frame = frames.encode_message("parked")
        gevent.sleep(0)
        connection._in_burst = False
        _speedups.ring_force_async(True)
        try:
            started = time.monotonic()
            send_to_all(conns, frame)
            assert time.monotonic() - started < 1.0, "the broadcast waited for a full socket"
        finally:
            _speedups.ring_force_async(False)
        assert _speedups.ring_owner() == 0, "the ring should be given up after a parked send"
        assert full.queued() == 1 and ready.queued() == 0

        assert _read_exactly(ready_peer, len(frame)) == frame
        # exactly once, after the filler: the cancelled send put nothing on the wire
        assert _read_exactly(full_peer, filler + len(frame))[filler:] == frame
        gevent.sleep(0.2)
        full_peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            full_peer.recv(1)  # and nothing more: no second copy from the cancelled send
        assert frames.use_io_uring(True) == "io_uring"  # asked again, it is set up again
    finally:
        _close_all(conns, peers)
