"""Raw TCP echo on gevent's StreamServer: the ceiling for any gevent-based server.

No framing and no HTTP upgrade: whatever bytes arrive go straight back. The load generator
in `--raw` mode sends the same pre-encoded, masked WebSocket frames it sends to the real
servers and counts a message as echoed once as many bytes as the frame came back, so the
numbers compare one-for-one with a WebSocket echo: same bytes on the wire, zero parsing.
"""

from __future__ import annotations

import argparse

from gevent import socket
from gevent.server import StreamServer

BUFSIZE = 256 * 1024


def handle(sock: socket.socket, _addr: tuple[str, int]) -> None:
    """Echo until the peer closes; a reset is just the end of the connection."""
    # No Nagle: the ceiling must not wait on delayed ACKs that a tuned server would avoid.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = sock.recv(BUFSIZE)
            if not data:
                return
            sock.sendall(data)
    except OSError:
        return
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = StreamServer((args.host, args.port), handle, backlog=4096)
    server.serve_forever()


if __name__ == "__main__":
    main()
