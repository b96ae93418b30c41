"""How late a broker's ticker wakes: the event loop's lag, since start and over the last minute.

The ticker sleeps until its next round; when it wakes later than planned the
event loop was kept from running (CPU starvation, a blocking call). Near the
election timeout, peers hold elections. `LoopLag` keeps the worst lateness
since the process started (enough to diagnose after the fact) and over a
sliding window, as one maximum per slice of it (what an alert needs: it falls
back once the broker runs on time again; the window holds its last whole
slices, so a minute's window looks back 50-60 s). Pure bookkeeping: the caller passes
the clock's reading.
"""

from __future__ import annotations


class LoopLag:
    def __init__(self, window_s: float = 60.0, slices: int = 6):
        self.max_s = 0.0  # the worst since start
        self._slice_s = window_s / slices
        self._slice_count = slices
        self._worst: dict[int, float] = {}  # slice number -> the worst lateness recorded in it

    def record(self, late_s: float, now: float) -> None:
        self.max_s = max(self.max_s, late_s)
        current = int(now // self._slice_s)
        if late_s > self._worst.get(current, 0.0):
            self._worst[current] = late_s
            self._forget_before(current)

    def recent_max_s(self, now: float) -> float:
        """The worst lateness recorded within the window that ends now."""
        self._forget_before(int(now // self._slice_s))
        return max(self._worst.values(), default=0.0)

    def _forget_before(self, current: int) -> None:
        oldest = current - self._slice_count + 1
        for number in [n for n in self._worst if n < oldest]:
            del self._worst[number]
