"""The housekeeping loop frees idle compressors and trims the heap once a wave of them is
freed (no sockets: a fake registry, the real compressors, a counting malloc_trim)."""

from __future__ import annotations

from types import SimpleNamespace

from wsapp.engine import housekeeping
from wsapp.protocol import compression


def test_a_wave_of_idle_compressors_is_freed_then_trimmed_once(monkeypatch):
    trims: list[int] = []
    monkeypatch.setattr(housekeeping, "_malloc_trim", lambda pad: trims.append(pad))
    registry = SimpleNamespace(sockets=set(range(1000)), settings=SimpleNamespace(deflate_idle=5.0))
    state = housekeeping._State()
    deflaters = [compression.Deflater(1, 12, 5) for _ in range(housekeeping.TRIM_MIN_GONE)]
    try:
        for d in deflaters:
            d.compress(b"some data worth keeping a compressor for " * 4)
        used = max(d.last_used for d in deflaters)
        start = state.last_trim

        def sweep(now: float) -> None:
            released = compression.release_idle(now, registry.settings.deflate_idle)
            state.released += released
            housekeeping._maybe_trim_memory(registry, state, now, released)

        sweep(used + 1)  # not idle long enough
        assert all(d.active for d in deflaters) and trims == []
        sweep(max(used + 5, start + housekeeping.TRIM_MIN_GAP))  # freed; the wave may go on
        assert not any(d.active for d in deflaters)
        assert trims == []
        sweep(max(used + 6, start + housekeeping.TRIM_MIN_GAP + 1))  # nothing more: trim
        assert trims == [0]
        sweep(used + 7)
        assert trims == [0]  # once per wave
    finally:
        for d in deflaters:
            d.release()
