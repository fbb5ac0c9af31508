"""One frame to many sockets (a room broadcast): encode once, write at once where possible.

Sockets whose `Outbox.ready` is true (nothing queued, no write under way) get the frame
now, all in one call (`send_all`: compiled when built, one non-blocking send per socket,
io_uring batching where the kernel allows); the others, and the unsent rest of a partial
send, go through their own outbox, so frames never overtake each other. Further
broadcasts in the same turn of the event loop (a burst, e.g. several messages in one read
from Redis pub/sub) are queued with `write_soon`, so each member gets the rest of the
burst with one send instead of one per message.

A broadcast may carry more than one frame for the same message: the uncompressed frame for
most sockets and, for the members that negotiated permessage-deflate, the message
compressed once (`wsapp.chat.hub`). Each further `(sockets, frame)` group is sent the same
way, within the same broadcast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent

from wsapp.speedups import select as speedups

if TYPE_CHECKING:
    from wsapp.engine.outbox import Outbox
    from wsapp.engine.websocket import WebSocket

_in_burst = False  # a broadcast already went out directly in this turn of the event loop


def _end_burst() -> None:
    global _in_burst
    _in_burst = False


def send_to_all(
    sockets: list[WebSocket], frame: bytes, *groups: tuple[list[WebSocket], bytes]
) -> None:
    """Write `frame` to every socket in `sockets`, and each group's frame to its sockets
    (see the module docstring)."""
    global _in_burst
    if _in_burst:
        _queue_soon(sockets, frame)
        for more, other in groups:
            _queue_soon(more, other)
        return
    _in_burst = True
    gevent.get_hub().loop.run_callback(_end_burst)
    _send_now(sockets, frame)
    for more, other in groups:
        _send_now(more, other)


def _queue_soon(sockets: list[WebSocket], frame: bytes) -> None:
    for ws in sockets:
        outbox = ws.outbox
        if outbox is not None and outbox.open:
            outbox.write_soon(frame)


def _send_now(sockets: list[WebSocket], frame: bytes) -> None:
    ready: list[Outbox] = []
    for ws in sockets:
        outbox = ws.outbox
        if outbox is None:
            continue
        if outbox.ready:
            ready.append(outbox)
        elif outbox.open:
            outbox.write((frame,), 1)  # queued behind what waits (or refused as too slow)
    if not ready:
        return
    leftovers = speedups.send_all([outbox.fd for outbox in ready], frame)
    size = len(frame)
    if not leftovers:
        for outbox in ready:
            outbox.bytes_out += size
            outbox.messages_out += 1
        return
    partial = dict(leftovers)
    for index, outbox in enumerate(ready):
        sent = partial.get(index)
        if sent is None:
            outbox.bytes_out += size
            outbox.messages_out += 1
        elif sent < 0:
            outbox.fail()
        else:
            outbox.sent_partly(frame, sent)
