"""Connection queueing rules over a real server: bursts, slow readers."""

from __future__ import annotations

import contextlib
import threading

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
