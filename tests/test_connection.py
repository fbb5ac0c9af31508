"""Connection queueing rules over a real server: bursts, slow readers."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

import pytest

from tests.support.rawws import Op, RawWS, WSError, encode_frame
from tests.support.servers import running_server


def test_burst_much_larger_than_the_send_queue_is_echoed_not_dropped():
    """3000 frames in one write with a 4 KiB send queue: a client that reads is never "too slow"
    (the reader's own replies wait for the peer instead: TCP backpressure)."""
    with (
        running_server("serve", env={"WSAPP_SEND_QUEUE_BYTES": "4096"}) as srv,
        RawWS.connect(srv.url("/echo"), timeout=10) as ws,
    ):
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
    """Echo and chat sockets leave their request (`WebSocket.serve`): while they wait,
    no pywsgi handler, environ, request Flask context or request greenlet is kept for them.

    In-process so the live objects can be counted; the clients run in a thread with plain
    blocking sockets while this thread runs the server's gevent loop."""
    import gc

    import gevent
    from flask.ctx import RequestContext
    from gevent.pywsgi import WSGIServer

    from wsapp import create_app
    from wsapp.app_state import get_state
    from wsapp.engine import registry as runtime
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
        assert get_state(app).hub.local_rooms() == {}
    finally:
        done.set()
        server.stop(timeout=1)
        thread.join(5)


def _members(count: int):
    """`count` accepted WebSockets on socket pairs, with the peers' ends."""
    from tests.support.socketpair_ws import make_pair

    members, peers = [], []
    for _ in range(count):
        ws, peer = make_pair()
        members.append(ws)
        peers.append(peer)
    return members, peers


def _fill_send_buffer(ws) -> int:
    """Fill the kernel buffers of `ws`'s socket (send buffer shrunk to 4 KiB first);
    returns how many bytes it took, which its peer will read before anything else."""
    ws._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filler = 0
    while True:
        try:
            sent = ws._socket._sock.send(b"f" * 4096)
        except BlockingIOError:
            sent = 0
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


def _close_all(members, peers) -> None:
    for ws, peer in zip(members, peers, strict=True):
        ws.abort()
        peer.close()


@pytest.fixture(params=["c-io_uring", "c-send", "python"])
def send_impl(request):
    """Which `send_all` the broadcast uses: C through io_uring, C with send(), Python."""
    from wsapp.speedups import select as speedups

    impl = request.param
    assert speedups.use_speedups(impl != "python") == (impl != "python")
    if impl == "c-send":
        assert speedups.use_io_uring(False) == "send"
    elif impl == "c-io_uring":
        mode = speedups.use_io_uring(True)
        if mode != "io_uring":
            pytest.skip(f"this kernel refuses io_uring: {mode}")

    def restore() -> None:
        speedups.use_speedups(True)
        speedups.use_io_uring(True)

    request.addfinalizer(restore)
    return impl


def test_send_to_all_writes_ready_members_at_once_and_queues_the_rest(send_impl):
    """`send_to_all`: a ready member gets the frame at once; a member with frames already
    queued gets it behind them (order kept); a closed one nothing; one whose socket buffer
    is full the rest after the filler (never a torn frame); one whose peer is gone is lost."""
    import gevent

    from wsapp.engine import fanout
    from wsapp.engine.fanout import send_to_all
    from wsapp.protocol import frames

    members, peers = _members(5)
    ready, busy, closed, full, gone = members
    ready_peer, busy_peer, _closed_peer, full_peer, gone_peer = peers
    try:
        closed.abort()
        filler = _fill_send_buffer(full)
        gone_peer.close()  # a socket pair: the next send() fails with EPIPE
        gevent.sleep(0.05)

        frame = frames.encode_message("hello")
        big = frames.encode_message(b"b" * 2_000_000)  # more than a socket pair buffers
        gevent.sleep(0)  # a new turn of the loop: the first broadcast of a turn is written directly
        busy.outbox.write_soon(b"first")  # queued; the loop callback writes it later
        send_to_all([ready, busy, closed, full, gone], frame)
        # The ready member has it before anything else ran, and it was counted.
        assert _read_exactly(ready_peer, len(frame)) == frame
        assert ready.messages_out == 1 and ready.bytes_out == len(frame)
        assert busy.queued() == 5 + len(frame)  # behind the frame already queued
        assert closed.queued() == 0
        gevent.sleep(0.05)
        assert _read_exactly(busy_peer, 5 + len(frame)) == b"first" + frame
        assert not gone.outbox.alive
        # `full` gets the rest of the filler, then the whole frame: never a torn frame.
        assert _read_exactly(full_peer, filler + len(frame))[filler:] == frame
        # A partial send: the kernel takes part of a big frame, the rest follows via the queue.
        fanout._in_burst = False
        send_to_all([ready, busy], big)
        received = gevent.spawn(_read_exactly, busy_peer, len(big))
        assert _read_exactly(ready_peer, len(big)) == big
        assert received.get(timeout=5) == big
    finally:
        _close_all(members, peers)


def test_broadcast_to_many_members_each_gets_each_frame_once_in_order(send_impl):
    """1,100 members: every member gets each frame exactly once and in order, written
    directly (nothing queued), and each delivery is counted once."""
    import gevent

    from wsapp.engine import fanout
    from wsapp.engine.fanout import send_to_all
    from wsapp.protocol import frames

    members, peers = _members(1100)
    try:
        first, second = frames.encode_message("one"), frames.encode_message("two")
        gevent.sleep(0)
        send_to_all(members, first)
        fanout._in_burst = False
        send_to_all(members, second)
        assert all(ws.queued() == 0 for ws in members), (
            "a ready member was queued instead of written"
        )
        for peer in peers:
            assert _read_exactly(peer, len(first) + len(second)) == first + second
        assert {(ws.messages_out, ws.bytes_out) for ws in members} == {
            (2, len(first) + len(second))
        }
    finally:
        _close_all(members, peers)


def test_burst_in_one_loop_turn_goes_out_in_one_send_per_member(send_impl):
    """Broadcasts after the first in one turn of the loop are queued and flushed together."""
    import gevent

    from wsapp.engine.fanout import send_to_all
    from wsapp.protocol import frames

    members, peers = _members(3)
    try:
        burst = [frames.encode_message(f"m{i}") for i in range(10)]
        gevent.sleep(0)
        for frame in burst:
            send_to_all(members, frame)
        assert all(ws.queued() == sum(map(len, burst[1:])) for ws in members)
        gevent.sleep(0.01)
        for peer in peers:
            assert _read_exactly(peer, sum(map(len, burst))) == b"".join(burst)
        assert all(ws.queued() == 0 and ws.messages_out == 10 for ws in members)
    finally:
        _close_all(members, peers)
