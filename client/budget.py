"""The producer's memory bound (``buffer_memory``): bytes of records accepted but not yet acknowledged.

Acquired by ``send`` - either on the event loop (``await acquire``) or from a
user thread of the blocking API (``acquire_blocking``) - and released on the
event loop when a batch completes. A record larger than the whole budget is
admitted when nothing else is buffered, so it fails or succeeds on its merits
instead of blocking forever.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from raftka.client.errors import BufferFullError

__all__ = ["ByteBudget"]


class ByteBudget:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("buffer_memory must be positive")
        self.limit = limit
        self._used = 0
        self._cond = threading.Condition()
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def used(self) -> int:
        return self._used

    def _fits(self, size: int) -> bool:
        return self._used == 0 or self._used + size <= self.limit

    def try_acquire(self, size: int) -> bool:
        with self._cond:
            if self._waiters or not self._fits(size):
                return False
            self._used += size
            return True

    async def acquire(self, size: int, timeout_s: float) -> None:
        """Wait (on the event loop) until ``size`` bytes fit; BufferFullError after ``timeout_s``."""
        if self.try_acquire(size):
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            if entry in self._waiters:
                self._waiters.remove(entry)
            raise BufferFullError(self._full_message(size, timeout_s)) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # granted just as we were cancelled
            elif entry in self._waiters:
                self._waiters.remove(entry)
            raise

    def acquire_blocking(self, size: int, timeout_s: float) -> None:
        """Wait (in a user thread) until ``size`` bytes fit; BufferFullError after ``timeout_s``."""
        if self.try_acquire(size):
            return
        with self._cond:
            if not self._cond.wait_for(lambda: not self._waiters and self._fits(size), timeout_s):
                raise BufferFullError(self._full_message(size, timeout_s))
            self._used += size

    def release(self, size: int) -> None:
        """Return bytes (on the event loop thread); wakes waiters in arrival order."""
        with self._cond:
            self._used -= size
            while self._waiters:
                wanted, waiter = self._waiters[0]
                if waiter.done():
                    self._waiters.popleft()
                    continue
                if not self._fits(wanted):
                    break
                self._waiters.popleft()
                self._used += wanted
                waiter.set_result(None)
            self._cond.notify_all()

    def _full_message(self, size: int, timeout_s: float) -> str:
        return (
            f"No room for a {size}-byte record within {timeout_s:g} s: {self._used} of {self.limit} bytes "
            "(buffer_memory) await acknowledgement; the cluster is not keeping up or is unreachable"
        )
