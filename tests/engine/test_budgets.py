"""Budgets in bytes against hostile peers, on real server processes over loopback.

Each test states the bound it checks; the budgets and their defaults are in the README
configuration table and docs/architecture.md (memory per connection).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.security.conftest import rss_kib
from tests.support.rawws import Op, RawWS, encode_frame
from tests.support.servers import running_server
from wsapp.protocol.frames import encode_message

MiB = 1 << 20
MASK = b"\x01\x02\x03\x04"


def _one_byte_fragments(size: int) -> bytes:
    """A binary message of `size` bytes sent as `size` frames of one byte each."""
    first = encode_frame(Op.BINARY, b"x", fin=False, mask=MASK)
    middle = encode_frame(Op.CONT, b"x", fin=False, mask=MASK)
    last = encode_frame(Op.CONT, b"x", fin=True, mask=MASK)
    return first + middle * (size - 2) + last


class Bystander(threading.Thread):
    """Echoes a small message every 20 ms and records the worst round trip."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.ws = RawWS.connect(url, timeout=10)
        self.worst = 0.0
        self.count = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                self.ws.echo("still there?", timeout=10)
                self.worst = max(self.worst, time.monotonic() - started)
                self.count += 1
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(15)
        self.ws.close()
        assert self.error is None, self.error


@pytest.mark.timeout(180)
def test_one_byte_fragment_floods_cost_their_size_and_never_stall_others():
    """4 sockets each send a 1 MiB message as 1,048,576 one-byte fragments (7 MiB on the
    wire each). The server coalesces fragments as they come: RSS grows by at most 3x the
    bytes in flight (4 MiB), each message is echoed whole, and a bystander's echo round
    trip stays under 100 ms throughout (the reader yields every 16 KiB of slow parsing)."""
    env = {"WSAPP_MAX_FRAGMENTS": str(2 * MiB), "WSAPP_RATE_LIMIT": "0",
           "WSAPP_PING_INTERVAL": "0"}  # no pings in the replies: only the echo is read
    with running_server("serve", env=env) as srv:
        wire = _one_byte_fragments(MiB)
        attackers = [RawWS.connect(srv.url("/echo"), timeout=60) for _ in range(4)]
        bystander = Bystander(srv.url("/echo"))
        time.sleep(0.3)
        before = rss_kib(srv.proc.pid)
        bystander.start()
        peak = before
        echoed: list[bytes] = []

        expected = encode_message(b"x" * MiB)  # the server's (unmasked) echo frame

        def attack(ws: RawWS) -> None:
            # Plain socket calls (they release the GIL): the bystander in this process
            # must not wait for the test's own Python parsing.
            ws.sock.sendall(wire)
            ws.sock.settimeout(120)
            got = bytearray(ws._buf)
            while len(got) < len(expected):
                chunk = ws.sock.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
            echoed.append(bytes(got))

        threads = [threading.Thread(target=attack, args=(ws,), daemon=True) for ws in attackers]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_kib(srv.proc.pid))
            time.sleep(0.05)
        bystander.finish()
        for ws in attackers:
            ws.close()
        assert echoed == [expected] * 4
        growth = peak - before
        print(f"fragment flood: RSS +{growth} KiB, bystander worst {bystander.worst * 1000:.1f} ms")
        assert growth <= 3 * 4 * 1024, f"RSS grew {growth} KiB for 4 MiB in flight"
        assert bystander.count > 10
        assert bystander.worst < 0.1, f"bystander waited {bystander.worst * 1000:.0f} ms"


def test_too_many_fragments_is_1009():
    with running_server("serve", env={"WSAPP_MAX_FRAGMENTS": "100"}) as srv:
        with RawWS.connect(srv.url("/echo")) as ws:
            ws.send_raw(encode_frame(Op.TEXT, b"a", fin=False, mask=MASK))
            ws.send_raw(encode_frame(Op.CONT, b"b", fin=False, mask=MASK) * 99)
            ws.send_raw(encode_frame(Op.CONT, b"c", fin=True, mask=MASK))
            code, reason = ws.expect_close(1009)
            assert "100 fragments" in reason
        with RawWS.connect(srv.url("/echo")) as ws:  # exactly at the limit: fine
            ws.send_raw(encode_frame(Op.TEXT, b"a", fin=False, mask=MASK))
            ws.send_raw(encode_frame(Op.CONT, b"b", fin=False, mask=MASK) * 98)
            ws.send_raw(encode_frame(Op.CONT, b"c", fin=True, mask=MASK))
            assert ws.recv_message() == (Op.TEXT, b"a" + b"b" * 98 + b"c")


def test_ten_thousand_pings_in_one_write_get_ten_thousand_pongs():
    with running_server("serve") as srv, RawWS.connect(srv.url("/echo"), timeout=20) as ws:
        count = 10_000
        pings = b"".join(encode_frame(Op.PING, b"%d" % i, mask=MASK) for i in range(count))
        sender = threading.Thread(target=ws.sock.sendall, args=(pings,), daemon=True)
        sender.start()
        got = [ws.recv_pong(timeout=20) for _ in range(count)]
        sender.join(10)
        assert got == [b"%d" % i for i in range(count)]
        ws.echo("and still open")


@pytest.mark.timeout(120)
def test_stalled_chat_members_are_cut_at_their_byte_budget():
    """50 members that never read, 25 senders of 16 KiB messages of quote characters
    (JSON-escaped to 32 KiB a frame: the control characters that would escape to 96 KiB
    are refused in chat text), 2 members that read. Each stalled member holds
    at most WSAPP_SEND_QUEUE_BYTES plus one frame in the process (broadcast frames are
    shared, so this is an upper bound), and is closed 1008; the readers get everything; a
    bystander's echo stays under 200 ms."""
    budget = MiB  # the default WSAPP_SEND_QUEUE_BYTES
    env = {"WSAPP_RATE_LIMIT": "0",
           "WSAPP_MAX_CONN_PER_IP": "0", "WSAPP_CLOSE_TIMEOUT": "0.5", "WSAPP_HISTORY": "10"}
    senders, per_sender = 25, 4
    # 16 KiB of '"' each, which JSON escapes to two bytes a character in the frames
    message = ('{"type":"message","text":"' + '\\"' * 16384 + '"}').encode()
    with running_server("serve", env=env) as srv:
        room = f"/chat/flood{time.monotonic_ns()}"
        stalled = []
        for i in range(50):
            ws = RawWS.connect(srv.url(f"{room}?name=s{i}"), timeout=10)
            ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ws.recv_message()  # hello; then never read again
            stalled.append(ws)
        readers = [RawWS.connect(srv.url(f"{room}?name=r{i}"), timeout=30) for i in range(2)]
        received = [0, 0]
        frame_size = 0

        def read(index: int) -> None:
            nonlocal frame_size
            ws = readers[index]
            while received[index] < senders * per_sender:
                _, payload = ws.recv_message(timeout=30)
                if payload.startswith(b'{"type":"message"'):
                    frame_size = max(frame_size, len(payload))
                    received[index] += 1

        reading = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(2)]
        for t in reading:
            t.start()
        time.sleep(0.5)  # the join storm settles
        bystander = Bystander(srv.url("/echo"))
        before = rss_kib(srv.proc.pid)
        bystander.start()
        peak = before

        def drain(ws: RawWS) -> None:  # a sender is a member too: it reads the room
            with contextlib.suppress(Exception):
                while True:
                    ws.recv_message(timeout=30)

        def send(index: int) -> None:
            with RawWS.connect(srv.url(f"{room}?name=w{index}"), timeout=30) as ws:
                threading.Thread(target=drain, args=(ws,), daemon=True).start()
                # Staggered: a burst of all 25 at one instant (2.4 MB) is more than a
                # member's budget plus its kernel buffer, whoever reads how fast.
                time.sleep(index * 0.02)
                for _ in range(per_sender):
                    ws.send_text(message)
                    time.sleep(0.5)  # 25 senders: 50 messages (1.6 MB) a second to each member
                time.sleep(1.0)

        writers = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(senders)]
        for t in writers:
            t.start()
        while any(t.is_alive() for t in writers + reading):
            peak = max(peak, rss_kib(srv.proc.pid))
            time.sleep(0.05)
        bystander.finish()
        assert received == [senders * per_sender] * 2
        growth_kib = peak - before
        bound_kib = 50 * (budget + frame_size) // 1024 + 32 * 1024
        print(f"stalled members: RSS +{growth_kib} KiB (bound {bound_kib}), frame {frame_size} B, "
              f"bystander worst {bystander.worst * 1000:.1f} ms")
        assert growth_kib <= bound_kib, f"RSS grew {growth_kib} KiB, bound {bound_kib} KiB"
        text_log = srv.wait_for_log("slow consumer", timeout=5)
        deadline = time.monotonic() + 10
        while text_log.count("slow consumer: /chat/") < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
            text_log = srv.log_text()
        assert text_log.count("slow consumer: /chat/") == 50
        assert bystander.worst < 0.2, f"bystander waited {bystander.worst * 1000:.0f} ms"
        for ws in stalled + readers:
            with contextlib.suppress(Exception):
                ws.close()


def test_a_view_that_never_receives_makes_the_reader_stop_reading():
    """The client keeps sending to a route that never calls receive(): the server holds at
    most WSAPP_RECEIVE_QUEUE_BYTES of its messages, then stops reading (TCP pushes back:
    the client's sends block), and the connection is not dropped by keepalive for it."""
    env = {"WSAPP_RECEIVE_QUEUE_BYTES": str(256 * 1024), "WSAPP_PING_INTERVAL": "0.5",
           "WSAPP_PING_TIMEOUT": "0.5"}
    app = "tests.apps.classic_routes:app"
    with running_server("serve", env=env, app=app) as srv, RawWS.connect(srv.url("/hoard")) as ws:
        assert ws.recv_message() == (Op.TEXT, b"ready")
        before = rss_kib(srv.proc.pid)
        ws.sock.settimeout(0.5)
        chunk = encode_frame(Op.BINARY, b"h" * 65536, mask=MASK)
        sent = 0
        with contextlib.suppress(TimeoutError, socket.timeout):
            while sent < 64 * MiB:
                ws.sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 32 * MiB, "the server kept reading what nobody takes"
        time.sleep(2.0)  # several keepalive periods: no ping can be read, none is due
        growth = rss_kib(srv.proc.pid) - before
        assert growth < 8 * 1024, f"RSS grew {growth} KiB"
        assert "keepalive timeout" not in srv.log_text()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("prealloc", [8 * MiB, 1 << 30], ids=["budget", "no-budget"])
def test_headers_of_large_frames_alone_hold_at_most_the_prealloc_budget(prealloc):
    """12 sockets each send only the header (and one payload byte) of an 8 MiB binary frame.
    A large single frame is allocated whole at its header while WSAPP_PREALLOC_BYTES allows;
    past it, it is assembled as its bytes arrive. The server runs the pure Python framing,
    whose buffer is zero-filled (resident at once: the compiled one's untouched pages would
    not show in RSS), so RSS shows what the headers made it hold. With an 8 MiB budget it
    grows by at most 3x the budget; with the budget out of the way (1 GiB) it grows by most
    of the 96 MiB claimed, the measure's own check. Either way a bystander's large message
    (also past the budget) is echoed whole."""
    env = {"WSAPP_SPEEDUPS": "0", "WSAPP_MAX_MESSAGE_BYTES": str(8 * MiB),
           "WSAPP_PREALLOC_BYTES": str(prealloc), "WSAPP_RATE_LIMIT": "0",
           "WSAPP_PING_INTERVAL": "0"}
    head = encode_frame(Op.BINARY, b"x" * (8 * MiB), mask=MASK)[:15]  # header, key, 1 byte
    with running_server("serve", env=env) as srv:
        attackers = [RawWS.connect(srv.url("/echo"), timeout=10) for _ in range(12)]
        bystander = RawWS.connect(srv.url("/echo"), timeout=10)
        time.sleep(0.3)
        before = rss_kib(srv.proc.pid)
        for ws in attackers:
            ws.sock.sendall(head)
        time.sleep(1.0)
        growth = rss_kib(srv.proc.pid) - before
        print(f"12 headers of 8 MiB frames, budget {prealloc}: RSS +{growth} KiB")
        bystander.echo(bytes(range(256)) * 1024, timeout=10)  # 256 KiB, one frame
        for ws in attackers:
            ws.close()
        bystander.close()
        if prealloc == 8 * MiB:
            assert growth <= 3 * 8 * 1024, f"RSS grew {growth} KiB on headers alone"
        else:
            assert growth >= 64 * 1024, f"RSS grew only {growth} KiB: the measure sees nothing"
