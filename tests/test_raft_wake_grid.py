"""wake_grid: every timer of a broker wakes just past a multiple of its period, rounded to the broker's beat."""

import math

import pytest
from hypothesis import given, strategies as st

from raftka.raft import wake_grid
from raftka.raft.wake_grid import GRID_LAG_S, broker_phase, grid_delay, on_beat


@pytest.fixture
def beat():
    """Set the process's beat for one test and forget it afterwards (other tests run without a broker)."""
    yield wake_grid.set_beat
    wake_grid.set_beat(None)


@given(st.sampled_from([0.01, 0.04, 0.1, 0.16, 0.2, 0.5, 10.0]), st.floats(0, 1e6))
def test_a_wake_up_lands_just_past_the_next_grid_point(period, now):
    delay = grid_delay(period, now)
    wake = now + delay - GRID_LAG_S
    points = wake / period
    assert math.isclose(points, round(points), abs_tol=1e-6), (period, now, delay)
    # the next point, never the current one, never one later than that
    assert GRID_LAG_S - 1e-6 <= delay <= period + GRID_LAG_S + 1e-6


def test_a_timer_that_fired_early_waits_for_the_next_point_not_again_for_its_own():
    period = 0.2
    mark = 1000 * period
    # set for mark + GRID_LAG_S, fired a millisecond early: it sleeps until the next point + GRID_LAG_S
    assert grid_delay(period, mark + GRID_LAG_S - 0.001) == pytest.approx(period + 0.001)


def test_timers_of_different_periods_share_the_broker_s_beats(beat):
    beat(0.16)
    assert on_beat(0.5) == pytest.approx(0.64)  # rounded up: never more often than asked
    assert on_beat(0.25) == pytest.approx(0.32)
    assert on_beat(0.1) == pytest.approx(0.16)
    assert on_beat(0.32) == pytest.approx(0.32)
    assert on_beat(1.0) == pytest.approx(1.12)
    # the grid points of every rounded period are beats: a wake-up the ticker has anyway
    for period in (0.5, 0.25, 0.1, 1.0, 10.0):
        wake = 1234.567 + grid_delay(on_beat(period), 1234.567) - GRID_LAG_S
        assert math.isclose(wake / 0.16, round(wake / 0.16), abs_tol=1e-6), period


def test_without_a_broker_a_period_is_its_own_grid():
    assert on_beat(0.5) == 0.5


def test_busy_brokers_wake_at_phases_of_their_own():
    # Busy brokers ticking at the same instants start the elections of groups whose timers expire on the same tick
    # together, and tied candidacies split the votes (10,000 groups created at once: 88 led after 122 s).
    tick = 0.05
    phases = sorted(broker_phase(b, tick) for b in range(1, 6))
    gaps = [b - a for a, b in zip(phases, phases[1:])] + [phases[0] + tick - phases[-1]]
    assert min(gaps) >= 0.1 * tick, phases
    assert all(0 <= p < tick for p in phases)
