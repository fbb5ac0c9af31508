"""`send_all(outboxes, frame)`: one non-blocking send of `frame` to each ready socket.

Returns only the entries not sent whole, as `(index, sent_bytes)` (0 when the kernel
took nothing) or `(index, -errno)` for a broken socket. The compiled version
(`wsapp.speedups`) does the same for the outboxes' descriptors in one C loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsapp.engine.outbox import Outbox


def send_all_py(outboxes: list[Outbox], frame: bytes) -> list[tuple[int, int]]:
    size = len(frame)
    rest: list[tuple[int, int]] = []
    for index, outbox in enumerate(outboxes):
        try:
            sent = outbox.send_nowait(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            rest.append((index, -(exc.errno or 1)))
            continue
        if sent != size:
            rest.append((index, sent))
    return rest


send_all = send_all_py
