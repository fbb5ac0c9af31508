"""When to try connecting again, and when to stop.

Delays grow exponentially with random jitter, so clients cut off together (a server
restart) do not all come back in the same instant (RFC 6455 section 7.2.3 asks clients to
randomise reconnection delays for that reason). A :class:`RetryBudget` counts the failed
attempts of one outage and the time it has lasted, and ends it with :class:`GaveUp` at
the configured limits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import ClientError, GaveUp

__all__ = ["Backoff", "RetryBudget"]


@dataclass(frozen=True)
class Backoff:
    """Delays ``initial``, ``initial * factor``, ... capped at ``maximum`` seconds, each
    shortened by up to ``jitter`` (a fraction, 0 to 1) at random."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.maximum >= self.initial and self.factor >= 1):
            raise ValueError("Backoff needs 0 <= initial <= maximum and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff jitter is a fraction between 0 and 1")

    def delays(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * (1 - self.jitter * rng())
            delay = min(self.maximum, delay * self.factor)


class RetryBudget:
    """Failed attempts and elapsed time of one outage, against the limits.

    ``max_tries``: failed attempts in a row before giving up (None: no limit);
    ``max_time``: seconds since the outage began (the connection was lost, or the first
    attempt started) before giving up (None: no limit)."""

    def __init__(
        self,
        backoff: Backoff,
        max_tries: int | None = None,
        max_time: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_tries is not None and max_tries < 1:
            raise ValueError("max_tries must be at least 1 (or None: no limit)")
        if max_time is not None and max_time < 0:
            raise ValueError("max_time must be >= 0 (or None: no limit)")
        self.backoff = backoff
        self.max_tries = max_tries
        self.max_time = max_time
        self.clock = clock
        self.rng = rng
        self.tries = 0
        self.started: float | None = None
        self._delays = backoff.delays(rng)

    def begin(self) -> None:
        """An outage starts now (if one is not already running)."""
        if self.started is None:
            self.started = self.clock()

    def reset(self) -> None:
        """Connected: the next outage starts from scratch."""
        self.tries = 0
        self.started = None
        self._delays = self.backoff.delays(self.rng)

    def elapsed(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def deadline_left(self) -> float | None:
        """Seconds left before ``max_time`` (None: no limit)."""
        if self.max_time is None:
            return None
        return self.max_time - self.elapsed()

    def failed(self, error: ClientError) -> float:
        """Record a failed attempt; the delay before the next one, or raise.

        Raises `error` itself when it is permanent, GaveUp at the limits."""
        self.begin()
        self.tries += 1
        if error.permanent:
            raise error
        if self.max_tries is not None and self.tries >= self.max_tries:
            raise GaveUp(self.tries, self.elapsed(), error)
        delay = next(self._delays)
        left = self.deadline_left()
        if left is not None:
            if left <= 0:
                raise GaveUp(self.tries, self.elapsed(), error)
            delay = min(delay, left)
        return delay

    def out_of_time(self, error: ClientError | None) -> GaveUp | None:
        """GaveUp when ``max_time`` is over (checked after a delay), else None."""
        left = self.deadline_left()
        if left is not None and left <= 0:
            return GaveUp(self.tries, self.elapsed(), error)
        return None
