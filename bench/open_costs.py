"""Two per-connection costs of opening a WebSocket, each timed alone (docs/performance.md, 11).

`python -m bench.open_costs`

1. One INFO log line written from a fresh greenlet (every socket logs one at open and one
   at close), with logging's default LogRecord fields and with the ones wsapp turns off
   (`logThreads`, `logMultiprocessing`, `_srcfile`). Run in child processes, because the
   switches are process-wide.
2. Parsing a 7-line WebSocket handshake head: pywsgi's `email`-based `headers_factory`
   against `wsapp.protocol.request_head.parse_header_lines`.
"""

from __future__ import annotations

import subprocess
import sys
import timeit
from io import BytesIO

HEAD = [
    b"Host: 127.0.0.1:8000\r\n", b"Upgrade: websocket\r\n", b"Connection: Upgrade\r\n",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"Sec-WebSocket-Version: 13\r\n",
    b"Origin: http://127.0.0.1:8000\r\n", b"User-Agent: bench\r\n", b"\r\n",
]

LOG_LINE = """
from gevent import monkey; monkey.patch_all()
import gevent, logging, sys, time
if sys.argv[1] == "lean":
    logging.logThreads = False; logging.logMultiprocessing = False; logging._srcfile = None
log = logging.getLogger("bench"); log.setLevel("INFO"); log.propagate = False
handler = logging.StreamHandler(open("/dev/null", "w"))
fmt = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
handler.setFormatter(logging.Formatter(fmt))
log.addHandler(handler)
def line(i):
    log.info("ws open conn=%s path=%s peer=%s origin=%s", i, "/echo", "127.0.0.1:5555", "-")
def nothing(i): pass
def run(fn, n=20000):
    t = time.perf_counter()
    gevent.joinall([gevent.spawn(fn, i) for i in range(n)])
    return time.perf_counter() - t
print((run(line) - run(nothing)) / 20000 * 1e6)
"""


def log_line_us(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", LOG_LINE, mode], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def main() -> None:
    for mode in ("default", "lean"):
        runs = sorted(log_line_us(mode) for _ in range(3))
        print(f"log line from a fresh greenlet, {mode} LogRecord: {runs[1]:.1f} us (median of 3)")
    from gevent import pywsgi

    from wsapp.protocol.request_head import parse_header_lines

    n = 20000
    email = min(
        timeit.repeat(lambda: pywsgi.headers_factory(BytesIO(b"".join(HEAD))), number=n, repeat=3)
    ) / n
    ours = min(timeit.repeat(lambda: parse_header_lines(HEAD), number=n, repeat=3)) / n
    print(
        f"7-line handshake head: pywsgi/email {email * 1e6:.1f} us, "
        f"request_head {ours * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
