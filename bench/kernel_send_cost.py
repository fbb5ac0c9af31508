"""The kernel's share of a fan-out delivery: CPU per non-blocking send() to many sockets.

`python -m bench.kernel_send_cost [--sockets 1000] [--rounds 100] [--nodelay]`

One process holds N connected loopback sockets and writes one 66-byte WebSocket frame to
each, round after round; a child process on the other CPU reads them all. The CPU time
the writer spends per send() is the floor under any server's CPU per fan-out delivery
when every member's frame needs its own system call (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import time

FRAME = b"\x81\x40" + b"x" * 64


def reader(port: int, count: int, seconds: float) -> None:
    os.sched_setaffinity(0, {1})
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    poller = select.epoll()
    by_fd = {c.fileno(): c for c in conns}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for fd, _ in poller.poll(0.1):
            by_fd[fd].recv(65536)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--nodelay", action="store_true", help="set TCP_NODELAY on the writer's sockets"
    )
    args = parser.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(args.sockets + 10)
    port = listener.getsockname()[1]
    seconds = args.rounds * 0.05 + 3
    child = os.fork()
    if child == 0:
        reader(port, args.sockets, seconds)
    os.sched_setaffinity(0, {0})
    conns = [listener.accept()[0] for _ in range(args.sockets)]
    for conn in conns:
        conn.setblocking(False)
        if args.nodelay:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    time.sleep(0.5)
    cpu = time.process_time()
    for _ in range(args.rounds):
        for conn in conns:
            conn.send(FRAME)
        time.sleep(0.05)  # like a chat room: separate messages, nothing to coalesce
    cpu = time.process_time() - cpu
    per_send_us = cpu / (args.sockets * args.rounds) * 1e6
    print(f"{args.sockets} sockets x {args.rounds} rounds: {per_send_us:.2f} us CPU per send()")
    os.waitpid(child, 0)


if __name__ == "__main__":
    main()
