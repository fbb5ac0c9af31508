"""Token bucket rate limiting, pure: no clock of its own unless you let it read one.

    bucket = TokenBucket(rate=20, burst=40)
    if not bucket.allow():            # one message
        conn.close(1008, "rate limit exceeded")

`rate` tokens per second refill the bucket up to `burst`; each event takes one (or
`cost`). A fresh bucket is full, so a client may send `burst` events at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp", "clock")

    def __init__(
        self,
        rate: float,
        burst: float,
        now: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock() if now is None else now

    def _refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now

    def allow(self, cost: float = 1.0, now: float | None = None) -> bool:
        """Take `cost` tokens if available; False (and nothing taken) otherwise."""
        self._refill(self.clock() if now is None else now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def wait_time(self, cost: float = 1.0, now: float | None = None) -> float:
        """Seconds until `cost` tokens are available (0 if they are now)."""
        self._refill(self.clock() if now is None else now)
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate
