"""Every frame-layer test runs twice: with the compiled loops and with the pure Python ones."""

from __future__ import annotations

import pytest

from wsapp.speedups import select as speedups


@pytest.fixture(autouse=True, params=["c", "python"])
def framing(request) -> str:
    """The implementation under test. `make test` builds the C modules (`--require`), so
    "c" is never silently the Python code (tests/speedups/test_select.py checks that)."""
    assert speedups.use_speedups(request.param == "c") == (request.param == "c")
    request.addfinalizer(lambda: speedups.use_speedups(True))
    return request.param
