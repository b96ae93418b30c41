"""Where a lone journal fsync runs: on the event loop, or in a worker thread.

Handing an fsync to a worker thread costs the event loop more than a fast
fsync does: waking the worker, two futures chained across threads, and a
wake-up of the loop when it is done (measured at 2,000 msg/s on 2 cores: a
quarter of a follower's busy time; the fsync itself took 0.1 ms). A thread
pays off when fsyncs are slow (the loop keeps serving everything else
meanwhile) or when several groups sync at once (their fsyncs overlap on the
device). `InlineSyncPolicy` says "inline" only after a streak of fast syncs:
one sync slower than `max_s` sends the next `streak` syncs to the threads
again, so a disk that turns slow blocks the loop at most once per streak.
A sync in a thread is timed until the thread holds the interpreter again:
on a busy machine syncs count as slow, and stay in the threads. Syncs slower
than `slow_s` are counted apart (the host logs them: a slow one on the loop
stalled the whole broker for that long). Pure bookkeeping: the host measures
each sync and asks before the next one.
"""

from __future__ import annotations


SLOW_SYNC_S = 0.1


class InlineSyncPolicy:
    def __init__(self, max_s: float, streak: int = 32, slow_s: float = SLOW_SYNC_S):
        self.max_s = max_s  # 0: never inline
        self.streak = streak
        self.slow_s = slow_s
        self._fast = 0  # syncs in a row that took at most max_s
        self.inline_count = 0  # syncs run on the event loop (for /raft)
        self.slow_count = 0  # syncs that took slow_s or longer (for /raft) ...
        self.slow_inline_count = 0  # ... of them on the event loop

    def record(self, seconds: float, inline: bool = False) -> bool:
        """Note a finished sync (inf: it failed); True when it was slow."""
        self._fast = self._fast + 1 if seconds <= self.max_s else 0
        if not self.slow_s <= seconds < float("inf"):
            return False
        self.slow_count += 1
        self.slow_inline_count += inline
        return True

    def inline(self) -> bool:
        """May the next lone sync run on the event loop?"""
        return self.max_s > 0 and self._fast >= self.streak
