"""A deflate bomb (RFC 7692 8: "implementations must limit the decompressed size"): one
frame of about 100 KiB that would inflate to 100 MiB. The size limit applies to the
inflated output while inflating, so the server closes 1009 after producing at most
WSAPP_MAX_MESSAGE_BYTES, and its resident memory (peak included) grows by less than 10 MiB,
in both serving modes, with four bombs at once."""

from __future__ import annotations

import functools
import os
import zlib

import pytest

from tests.support.deflate_client import DeflateWS
from tests.support.rawws import Op, encode_frame
from tests.support.servers import running_server

from .conftest import rss_kib

MiB = 1 << 20
OFFER = "permessage-deflate; client_max_window_bits"


@functools.cache
def bomb_frame() -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -12)
    data = (z.compress(bytes(100 * MiB)) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert 90 * 1024 < len(data) < 110 * 1024  # about 100 KiB on the wire
    return encode_frame(Op.BINARY, data, rsv=4)


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}")


def worker_pid(srv) -> int:
    """The process that serves the sockets: the server itself, or gunicorn's worker."""
    if srv.mode == "serve":
        return srv.proc.pid
    pid = srv.proc.pid
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids = f.read().split()
        if kids:
            return int(kids[0])
    raise AssertionError("gunicorn has no worker")


def echo_once(srv) -> None:
    with DeflateWS.connect(srv.url("/echo"), OFFER, timeout=5) as ws:
        ws.send_message(Op.TEXT, b"warm up the compressors " * 100)
        assert ws.recv_message() == (Op.TEXT, b"warm up the compressors " * 100)


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_deflate_bomb_is_1009_and_memory_stays_flat(mode):
    frame = bomb_frame()
    with running_server(mode) as srv:
        pid = worker_pid(srv)
        for _ in range(3):
            echo_once(srv)  # first-use allocations are not the bomb's
        before = rss_kib(pid)
        sockets = [DeflateWS.connect(srv.url("/echo"), OFFER, timeout=5) for _ in range(4)]
        try:
            for ws in sockets:
                assert ws.negotiated is not None
                ws.ws.try_send(frame)  # the server may close before it has read it all
            for ws in sockets:
                code, reason = ws.ws.expect_close(1009, timeout=10)
                assert "inflated" in reason
        finally:
            for ws in sockets:
                ws.close()
        peak = status_kib(pid, "VmHWM")
        after = rss_kib(pid)
        echo_once(srv)  # still serving
        assert after - before < 10 * 1024, f"RSS grew {after - before} KiB"
        assert peak - before < 10 * 1024, f"peak RSS {peak} KiB, {peak - before} KiB over before"
        assert "over the size limit once inflated" in srv.log_text()
