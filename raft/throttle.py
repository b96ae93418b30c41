"""A byte-rate limit for catch-up traffic to learners (`--reassignment-max-bytes-per-sec`).

A token bucket of `rate` bytes per second holding at most `burst` bytes.
Sending is charged after the fact (`charge`, which may run the balance into
debt: a snapshot chunk's size is known only once it is read), and the next
send waits until the balance is back above zero (`wait_s`).  Over any
stretch of time the bytes charged are at most ``burst + rate * seconds`` plus
one chunk.  Pure bookkeeping with an injectable clock; the host decides what
to hold back (see `RaftHost`).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ByteRateLimiter:
    def __init__(self, rate: int, burst: int | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1, rate // 10)
        self._clock = clock
        self._balance = float(self.burst)
        self._at = clock()
        self.charged = 0  # bytes charged since creation (for /raft and progress reports)

    def _refill(self) -> None:
        now = self._clock()
        self._balance = min(float(self.burst), self._balance + (now - self._at) * self.rate)
        self._at = now

    def charge(self, nbytes: int) -> None:
        self._refill()
        self._balance -= nbytes
        self.charged += nbytes

    def wait_s(self) -> float:
        """Seconds until the next send may go (0: now)."""
        self._refill()
        return 0.0 if self._balance >= 0 else -self._balance / self.rate


__all__ = ["ByteRateLimiter"]
