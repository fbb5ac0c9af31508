"""Every frame-layer test runs twice: with the compiled `_speedups` loops and without them."""

from __future__ import annotations

import pytest

from wsapp.protocol import frames

C_SCAN = frames._c_scan_data_frames
C_ENCODE = frames._c_encode_messages


@pytest.fixture(autouse=True, params=["c", "python"])
def framing(request, monkeypatch) -> str:
    """The implementation under test. `make test` builds the C module (build_speedups
    --require), so "c" is never silently the Python code: test_speedups checks that."""
    if request.param == "python":
        monkeypatch.setattr(frames, "_c_scan_data_frames", None)
        monkeypatch.setattr(frames, "_c_encode_messages", None)
    return request.param
