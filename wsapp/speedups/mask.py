"""Masking a payload (RFC 6455 5.3): the fastest implementation installed, chosen at import.

websockets' compiled `speedups.apply_mask` XORs 8 or 16 bytes at a time; wsaccel's masker
is the fallback; the last resort is one XOR of two big integers (`py_mask`), still C
speed inside CPython. None of them is wsapp's own C, so `select.use_speedups` does not
switch them: all three give the same bytes (tests/speedups/test_framing.py).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["apply_mask", "py_mask", "masker_name"]


def py_mask(data: bytes, mask: bytes) -> bytes:
    """`data` XOR the 4-byte `mask` repeated, through big integers (no C extension)."""
    n = len(data)
    if not n:
        return b""
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


def _pick() -> tuple[Callable[[bytes, bytes], bytes], str]:
    try:
        from websockets.speedups import apply_mask as compiled
    except ImportError:  # pragma: no cover - websockets is a requirement
        pass
    else:
        return compiled, "websockets.speedups"
    try:
        from wsaccel.xormask import XorMaskerSimple
    except ImportError:  # pragma: no cover - wsaccel is a requirement
        return py_mask, "big-integer XOR"

    def wsaccel_mask(data: bytes, mask: bytes) -> bytes:
        return XorMaskerSimple(mask).process(data)

    return wsaccel_mask, "wsaccel"


#: apply_mask(data, mask) -> bytes: mask or unmask a whole payload (its own inverse).
apply_mask, masker_name = _pick()
