"""LoopLag: the worst ticker lateness since start, and over a sliding window that forgets old stalls."""

from hypothesis import given, strategies as st

from raftka.raft.loop_lag import LoopLag


def test_a_stall_counts_in_the_window_until_it_slides_out_and_forever_since_start():
    lag = LoopLag(window_s=60, slices=6)
    lag.record(0.002, now=1000.0)
    lag.record(1.5, now=1001.0)
    lag.record(0.004, now=1030.0)
    assert lag.recent_max_s(1049.0) == 1.5
    assert lag.recent_max_s(1059.9) == 1.5  # its slice [1000, 1010) is still one of the last six
    assert lag.recent_max_s(1060.0) == 0.004  # it slid out; the later one has not
    assert lag.recent_max_s(1100.0) == 0.0
    assert lag.max_s == 1.5


def test_an_early_wake_is_no_lateness():
    lag = LoopLag()
    lag.record(-0.001, now=5.0)
    assert lag.recent_max_s(5.0) == 0.0 and lag.max_s == 0.0


@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 3)), max_size=60))
def test_the_window_holds_the_worst_of_the_last_whole_slices(events):
    """Against a plain reading of the rule: the worst lateness recorded in the slices that the window holds."""
    lag = LoopLag(window_s=60, slices=6)
    clock = 0.0
    seen = []
    for step, late in events:
        clock += step
        lag.record(late, clock)
        seen.append((clock, late))
        oldest_slice = int(clock // 10) - 5
        expected = max((x for t, x in seen if int(t // 10) >= oldest_slice), default=0.0)
        assert lag.recent_max_s(clock) == expected
        assert lag.max_s == max(x for _, x in seen)
    assert len(lag._worst) <= 6
