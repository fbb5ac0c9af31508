"""CPU per delivery of `wsapp.speedups` send_all: C through io_uring, C with send(), Python.

`python -m bench.send_all_cost [--sockets 1000] [--rounds 100] [--unix]`

One process holds N connected loopback sockets (TCP, or Unix socket pairs with --unix)
and hands one 66-byte WebSocket frame to all of them per round with one `send_all` call;
a child process on the other CPU reads everything. The three implementations take turns
round by round, so that a busy machine slows them alike; the figures are the median CPU
time (user + system, `time.process_time`) of the writer per delivery, and of the whole
call, over the rounds. Like `bench.kernel_send_cost`, rounds are 20 ms apart: separate
chat messages, nothing for TCP to coalesce.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import time
from array import array

from wsapp.speedups import _fanout, pure

FRAME = b"\x81\x40" + b"x" * 64


def reader(socks: list[socket.socket], done: int) -> None:
    """Read everything until `done` (a pipe's read end) sees the writer go."""
    os.sched_setaffinity(0, {1})
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    poller.register(done, select.EPOLLIN)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for fd, _ in poller.poll(1.0):
            if fd == done:
                os._exit(0)
            by_fd[fd].recv(65536)
    os._exit(1)


def connect(count: int, unix: bool) -> tuple[list[socket.socket], list[socket.socket]]:
    """(writer ends, reader ends)."""
    if unix:
        pairs = [socket.socketpair() for _ in range(count)]
        return [a for a, _ in pairs], [b for _, b in pairs]
    listener = socket.create_server(("127.0.0.1", 0), backlog=count + 10)
    readers = [socket.create_connection(listener.getsockname()) for _ in range(count)]
    writers = [listener.accept()[0] for _ in range(count)]
    listener.close()
    return writers, readers


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--unix", action="store_true", help="Unix socket pairs, not TCP")
    args = parser.parse_args()
    writers, readers = connect(args.sockets, args.unix)
    impls = {
        "C io_uring": lambda fds, frame: _fanout.send_all(fds, frame),
        "C send()": lambda fds, frame: _fanout.send_all(fds, frame),
        "Python": pure.send_all,
    }
    modes = {"C io_uring": True, "C send()": False, "Python": False}
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(done_w)
        for sock in writers:
            sock.close()
        reader(readers, done_r)
    os.close(done_r)
    for sock in readers:
        sock.close()
    os.sched_setaffinity(0, {0})
    for sock in writers:
        sock.setblocking(False)
    fds = array("i", [s.fileno() for s in writers])
    if _fanout.set_ring(True) != "io_uring":
        raise SystemExit(f"io_uring refused here: {_fanout.set_ring(True)}")
    time.sleep(0.5)
    cpu: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(args.rounds):
        for name, send_all in impls.items():
            _fanout.set_ring(modes[name])
            started = time.process_time()
            left = send_all(fds, FRAME)
            cpu[name].append(time.process_time() - started)
            if left:
                raise SystemExit(f"{name}: {len(left)} sockets did not take the frame: {left[:3]}")
            time.sleep(0.02)
    _fanout.set_ring(True)
    os.close(done_w)
    kind = "Unix socket pairs" if args.unix else "loopback TCP"
    print(f"send_all of a {len(FRAME)}-byte frame to {args.sockets} sockets ({kind}), "
          f"{args.rounds} rounds each, median writer CPU:")
    for name, times in cpu.items():
        median = statistics.median(times)
        print(f"  {name:11} {median * 1e6 / args.sockets:6.2f} us per delivery, "
              f"{median * 1e3:6.2f} ms per call")
    os.waitpid(child, 0)


if __name__ == "__main__":
    main()
