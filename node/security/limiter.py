"""Failed logins per source address: past the limit within a minute, that address is refused until the minute ends.

Both front ends report every failed authentication (`failed`) and ask before checking credentials (`blocked`),
so guessing passwords costs an attacker a minute per `limit` guesses per address, and the broker no key
derivations. Successful logins do not reset the count. At most `MAX_ADDRESSES` addresses are tracked (the
oldest are forgotten first), so a flood from many addresses cannot exhaust memory.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["MAX_ADDRESSES", "LoginLimiter"]

MAX_ADDRESSES = 10_000


class LoginLimiter:
    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def blocked(self, address: str) -> bool:
        failures = self._recent(address)
        return failures is not None and len(failures) >= self.limit

    def failed(self, address: str) -> None:
        failures = self._recent(address)
        if failures is None:
            if len(self._failures) >= MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]
            failures = self._failures[address] = deque()
        if len(failures) < self.limit:
            failures.append(self._clock())
        else:  # keep the window sliding from the latest failure without growing
            failures.popleft()
            failures.append(self._clock())
