"""One grid of wake-up times for a broker's timers, so that its timers share wake-ups.

An idle broker costs what its wake-ups cost: on a small virtual machine each return from a
blocking `epoll_wait` costs 0.1-0.2 ms of CPU, however little the callbacks then do, so ten
timers at ten phases cost about ten times one timer that runs ten callbacks.  The Raft ticker
(`host.RaftHost`) therefore counts its ticks on the multiples of the tick on the monotonic clock
and, while idle, beats on those of its idle heartbeat interval; it announces that interval here
(`set_beat`), and every periodic task of the broker sleeps until the next multiple of its period
rounded up to a multiple of that beat (`sleep_on_grid`), a wake-up the ticker has anyway.
CLOCK_MONOTONIC is one clock for all processes of a machine, so idle brokers sharing one beat at
the same instants, and a peer's heartbeat tends to arrive while its receiver is awake.  A busy
ticker wakes a phase of its broker's own past the grid (`broker_phase`): groups whose election
timers expire on the same tick on two brokers must not start their elections at the same instant.

Every wake-up is `GRID_LAG_S` past its grid point: an event loop's timer may fire up to a
millisecond early (uvloop counts whole milliseconds from the loop's cached time), and one that
fired just before its grid point would count no tick and sleep again.
"""

from __future__ import annotations

import asyncio
import math
import time

GRID_LAG_S = 0.002

_beat_s: float | None = None  # the idle heartbeat interval of this process's broker (None: no broker yet)


def set_beat(period_s: float | None) -> None:
    """An idle ticker of this process's broker wakes on the multiples of `period_s` (its idle heartbeats)."""
    global _beat_s
    _beat_s = period_s


def broker_phase(broker_id: int, tick_s: float) -> float:
    """How far past a grid point a broker's busy ticker wakes: brokers spread over the tick in golden-ratio steps."""
    return (broker_id * 0.6180339887498949) % 1.0 * tick_s


def grid_floor(now: float, period_s: float) -> float:
    """The latest multiple of `period_s` at or before `now`."""
    return math.floor(now / period_s) * period_s


def grid_delay(period_s: float, now: float) -> float:
    """Seconds from `now` until `GRID_LAG_S` past the next multiple of `period_s` after it.

    A timer that fired early (`now` is then less than `GRID_LAG_S` past a grid point) waits for the
    next point, not again for the one it was set for."""
    return grid_floor(now, period_s) + period_s - now + GRID_LAG_S


def on_beat(period_s: float) -> float:
    """`period_s` rounded up to a multiple of the broker's beat: a task never runs more often than it asked."""
    if _beat_s is None:
        return period_s
    return max(1, math.ceil(period_s / _beat_s - 1e-9)) * _beat_s


async def sleep_on_grid(period_s: float) -> None:
    """Sleep until just past the next multiple of `period_s` (rounded up to the broker's beat, see `on_beat`) on the
    monotonic clock."""
    await asyncio.sleep(grid_delay(on_beat(period_s), time.monotonic()))
