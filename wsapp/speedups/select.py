"""The one place that decides between wsapp's C modules and their pure Python twins.

At import it takes the compiled `_framing` and `_fanout` when both are built
(`python -m wsapp.speedups.build`), else `pure`; `use_speedups` and `use_io_uring`
switch at run time (WSAPP_SPEEDUPS and WSAPP_IO_URING at start, the tests both ways).
The switches rebind this module's names, so read them through the module:

    from wsapp.speedups import select as speedups
    speedups.send_all(fds, frame)

`Payload` (a large payload unmasked in place) and `Utf8` (a str's UTF-8 bytes lent to a
send) switch with the framing functions. `apply_mask` is not switched: it is websockets'
compiled masker (see `mask`).
"""

from __future__ import annotations

from wsapp.speedups import pure
from wsapp.speedups.mask import apply_mask

_FRAMING_NAMES = ("scan_data_frames", "encode_messages", "Payload", "Utf8", "payload_ahead")

try:
    from wsapp.speedups import _fanout, _framing

    _stale = [name for name in _FRAMING_NAMES if not hasattr(_framing, name)]
    if _stale:  # built from an older _framing.c
        raise ImportError(f"_framing has no {', '.join(_stale)}: rebuild it")
except ImportError as exc:  # not built: pure Python
    _fanout = _framing = None
    _missing = f"C speedups not built ({exc}): python -m wsapp.speedups.build"
else:
    _missing = ""

__all__ = [
    "scan_data_frames", "encode_messages", "send_all", "apply_mask", "Payload", "Utf8",
    "payload_ahead", "speedups_enabled", "use_speedups", "use_io_uring", "configure",
]

scan_data_frames = pure.scan_data_frames
encode_messages = pure.encode_messages
send_all = pure.send_all
Payload = pure.Payload
Utf8 = pure.Utf8
payload_ahead = pure.payload_ahead
_ring_wanted = True  # _fanout's own default; it sets its ring up on first use
_ring_stale = False  # use_io_uring was called while _fanout was not in use


def speedups_enabled() -> bool:
    """Whether the compiled functions are the ones in use."""
    return send_all is not pure.send_all


def use_speedups(enabled: bool) -> bool:
    """Use the compiled functions (when built) or the pure Python ones; True if compiled."""
    global scan_data_frames, encode_messages, send_all, Payload, Utf8, payload_ahead
    global _ring_stale
    if enabled and _framing is not None and _fanout is not None:
        scan_data_frames = _framing.scan_data_frames
        encode_messages = _framing.encode_messages
        send_all = _fanout.send_all
        Payload = _framing.Payload
        Utf8 = _framing.Utf8
        payload_ahead = _framing.payload_ahead
        if _ring_stale:
            _fanout.set_ring(_ring_wanted)
            _ring_stale = False
        return True
    scan_data_frames = pure.scan_data_frames
    encode_messages = pure.encode_messages
    send_all = pure.send_all
    Payload = pure.Payload
    Utf8 = pure.Utf8
    payload_ahead = pure.payload_ahead
    return False


def use_io_uring(enabled: bool) -> str:
    """Whether the compiled `send_all` batches its sends through io_uring (one system call
    per 1,024 sockets, same results as one send() each). Returns the path now in use:
    "io_uring", "send", or "send (io_uring: <why not>)"."""
    global _ring_wanted, _ring_stale
    _ring_wanted = bool(enabled)
    if not speedups_enabled():
        _ring_stale = True
        return "send (io_uring: needs the C speedups)" if enabled else "send"
    return _fanout.set_ring(enabled)


def configure(speedups: bool, io_uring: bool) -> str:
    """Apply WSAPP_SPEEDUPS and WSAPP_IO_URING; the line for the start-up log."""
    if use_speedups(speedups):
        return f"C speedups, broadcasts by {use_io_uring(io_uring)}"
    use_io_uring(io_uring)
    return f"pure Python ({_missing or 'WSAPP_SPEEDUPS=0'})"


use_speedups(True)
