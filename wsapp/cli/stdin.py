"""Reading stdin line by line without blocking gevent's event loop.

``python -m wsapp`` monkey-patches with gevent; a plain ``readline`` on a terminal or
pipe would then block every greenlet, so under gevent each line is read in gevent's
thread pool (a real OS thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO

__all__ = ["stdin_lines"]


def stdin_lines(stream: IO[str]) -> Iterator[str]:
    """Lines of `stream` without their line ending, until end of input."""
    read: Callable[[], str] = stream.readline
    try:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent

            pool = gevent.get_hub().threadpool

            def read() -> str:  # noqa: F811 - the gevent-friendly variant
                return pool.apply(stream.readline)
    except ImportError:  # pragma: no cover - gevent is a dependency
        pass
    while True:
        line = read()
        if not line:
            return
        yield line.rstrip("\r\n")
