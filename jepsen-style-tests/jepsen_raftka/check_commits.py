"""Committed consumer-group offsets as grow-only registers, one per (group, partition).

A read (an ok ``list_committed``) must return at least every value that was
already known to be in the register before the read began: an acknowledged
commit, or an earlier read, that completed before the read was invoked. A
partition missing from a read counts as -1 (nothing committed). A commit with
``"seek": true`` may move the register backwards, so it resets the argument:
a known value only binds the read when no seek-commit could have taken effect
after it and before the read (no seek-commit invoked before the read completed
and completed, or never completed, after the known value).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from .anomaly import Anomaly
from .history import Commit, Committed, History, Op

NOTHING_COMMITTED = -1


class RangeMax:
    """Sparse table: the maximum (and where it is) of values[lo:hi] in O(1)."""

    def __init__(self, values: list[int]) -> None:
        self._rows = [list(range(len(values)))]
        self._values = values
        width = 1
        while 2 * width <= len(values):
            prev = self._rows[-1]
            self._rows.append([self._better(prev[i], prev[i + width])
                               for i in range(len(values) - 2 * width + 1)])
            width *= 2

    def _better(self, i: int, j: int) -> int:
        return i if self._values[i] >= self._values[j] else j

    def argmax(self, lo: int, hi: int) -> int | None:
        if lo >= hi:
            return None
        level = (hi - lo).bit_length() - 1
        row = self._rows[level]
        return self._better(row[lo], row[hi - (1 << level)])


@dataclass(slots=True)
class _Register:
    # known values, each (completion time, value, op): ok commits and ok reads
    known: list[tuple[int, int, Op]] = field(default_factory=list)
    reads: list[tuple[int, Op]] = field(default_factory=list)
    # seek-commits that may have taken effect: (invoke time, completion time or inf)
    resets: list[tuple[int, float]] = field(default_factory=list)


def _registers(history: History) -> dict[tuple[object, str], _Register]:
    registers: dict[tuple[object, str], _Register] = {}
    reads: list[Op] = []
    for op in history.ops:
        if op.f == "commit" and op.type != "fail":
            commit = op.body
            assert isinstance(commit, Commit)
            for tp, offset in commit.offsets.items():
                reg = registers.setdefault((commit.group, tp), _Register())
                if op.type == "ok":
                    reg.known.append((op.complete_time, offset, op))
                if commit.seek:
                    reg.resets.append((op.invoke_time, op.end_time))
        elif op.f == "list_committed" and op.type == "ok":
            reads.append(op)
    for op in reads:
        listed = op.body
        assert isinstance(listed, Committed)
        for tp in listed.offsets:
            registers.setdefault((listed.group, tp), _Register())
        for (group, tp), reg in registers.items():
            if group == listed.group:
                offset = listed.offsets.get(tp, NOTHING_COMMITTED)
                reg.known.append((op.complete_time, offset, op))
                reg.reads.append((offset, op))
    return registers


def _regressions(group: object, tp: str, reg: _Register) -> list[Anomaly]:
    known = sorted(reg.known, key=lambda k: k[0])
    times = [k[0] for k in known]
    highest = RangeMax([k[1] for k in known])
    resets = sorted(reg.resets)
    reset_invokes = [r[0] for r in resets]
    latest_reset_end: list[float] = []
    for _, end in resets:
        latest_reset_end.append(max(end, latest_reset_end[-1]) if latest_reset_end else end)
    found = []
    for offset, read in reg.reads:
        n = bisect.bisect_left(reset_invokes, read.complete_time)
        barrier = latest_reset_end[n - 1] if n else -math.inf
        if barrier == math.inf:
            continue
        lo = bisect.bisect_left(times, barrier)
        hi = bisect.bisect_left(times, read.invoke_time)
        best = highest.argmax(lo, hi)
        if best is not None and known[best][1] > offset:
            found.append(Anomaly("committed-offset-regression",
                                 {"group": group, "partition": tp,
                                  "offsets": [known[best][1], offset]},
                                 (known[best][2], read)))
    return found


def committed_offset_regressions(history: History) -> list[Anomaly]:
    found = []
    for (group, tp), reg in _registers(history).items():
        if reg.reads:
            found.extend(_regressions(group, tp, reg))
    return found
