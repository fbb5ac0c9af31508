"""Best-case Python echo client, kept to show why the load generator is written in C.

Raw sockets, `selectors`, pre-encoded masked frames and byte counting only (no frame
parsing): the least a Python client can do per message. Against the raw TCP ceiling it
keeps up with bench/loadgen.c; against WebSocket servers it would also have to parse and
time every frame, which is where C stays cheap.
Usage: python -m bench.py_client PORT   (a `python -m bench.tcp_echo` on PORT)
"""

from __future__ import annotations

import resource
import selectors
import socket
import sys
import time

CONNS, IN_FLIGHT, DURATION = 50, 16, 3.0
FRAME = bytes([0x81, 0x80 | 64]) + b"\x37\xfa\x21\x3d" + bytes(64)


def main(port: int) -> None:
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(CONNS):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [0])
        s.sendall(FRAME * IN_FLIGHT)
        socks.append(s)
    done, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < DURATION:
        for key, _ in sel.select(0.01):
            pending = key.data
            pending[0] += len(key.fileobj.recv(65536))
            n, pending[0] = divmod(pending[0], len(FRAME))
            if n:
                done += n
                key.fileobj.send(FRAME * n)
    elapsed = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu_share = (ru.ru_utime + ru.ru_stime) / elapsed
    print(f"python client: {done / elapsed:.0f} msg/s, cpu {cpu_share:.0%}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
