"""Committed offsets as grow-only registers: regressions detected with their
evidence, seek-commits excused, concurrency respected."""

from hypothesis import given
from hypothesis import strategies as st
from jepsen_histories import Builder

from jepsen_raftka.check_commits import RangeMax


def refs(anomaly):
    return [op.invoke_index for op in anomaly.ops]


def regressions(b):
    return b.check().of_kind("committed-offset-regression")


def test_read_below_an_acknowledged_commit():
    b = Builder()
    commit = b.commit(1, "g", {"t/0": 10})
    read = b.list_committed(2, "g", {"t/0": 7})
    [a] = regressions(b)
    assert a.details == {"group": "g", "partition": "t/0", "offsets": [10, 7]}
    assert refs(a) == [commit, read]


def test_read_below_an_earlier_read():
    b = Builder()
    b.commit(1, "g", {"t/0": 5}, type_="info")  # unknown outcome: binds nothing itself
    first = b.list_committed(2, "g", {"t/0": 5})
    second = b.list_committed(3, "g", {"t/0": 3})
    [a] = regressions(b)
    assert refs(a) == [first, second]


def test_missing_partition_after_a_commit_is_a_regression():
    b = Builder()
    b.commit(1, "g", {"t/0": 4, "t/1": 2})
    b.list_committed(2, "g", {"t/0": 4})
    [a] = regressions(b)
    assert a.details["partition"] == "t/1" and a.details["offsets"] == [2, -1]


def test_growing_register_and_lower_commits_are_fine():
    b = Builder()
    b.commit(1, "g", {"t/0": 3})
    b.list_committed(2, "g", {"t/0": 3})
    b.commit(1, "g", {"t/0": 8})
    b.commit(3, "g", {"t/0": 5})  # a lower commit without seek does not lower a max register
    b.list_committed(2, "g", {"t/0": 8})
    b.commit(1, "g", {"t/0": 20}, type_="fail")
    b.list_committed(2, "g", {"t/0": 8})
    assert regressions(b) == []


def test_groups_are_independent():
    b = Builder()
    b.commit(1, "g1", {"t/0": 9})
    b.list_committed(2, "g2", {"t/0": 1})
    assert regressions(b) == []


def test_seek_commit_may_move_backwards_and_then_binds():
    b = Builder()
    b.commit(1, "g", {"t/0": 10})
    seek = b.commit(1, "g", {"t/0": 2}, seek=True)
    b.list_committed(2, "g", {"t/0": 2})
    b.commit(1, "g", {"t/0": 4})
    read = b.list_committed(2, "g", {"t/0": 3})  # below the ack of 4 after the seek
    [a] = regressions(b)
    assert a.details["offsets"] == [4, 3] and refs(a) == [seek + 4, read]


def test_seek_commit_concurrent_with_the_read_excuses_it():
    b = Builder()
    b.commit(1, "g", {"t/0": 10})
    b.begin(1, "commit", {"group": "g", "offsets": {"t/0": 2}, "seek": True})
    b.list_committed(2, "g", {"t/0": 2})
    b.end("ok", 1, "commit", {"group": "g", "offsets": {"t/0": 2}, "seek": True})
    assert regressions(b) == []


def test_indefinite_seek_commit_excuses_every_later_read():
    b = Builder()
    b.commit(1, "g", {"t/0": 10})
    b.commit(1, "g", {"t/0": 2}, seek=True, type_="info")
    b.list_committed(2, "g", {"t/0": 2})
    assert regressions(b) == []


def test_seek_commit_before_the_known_value_does_not_excuse():
    b = Builder()
    b.commit(1, "g", {"t/0": 2}, seek=True)
    b.commit(1, "g", {"t/0": 10})
    b.list_committed(2, "g", {"t/0": 2})
    assert len(regressions(b)) == 1


def test_concurrent_commit_and_read_may_miss_it():
    b = Builder()
    b.begin(1, "commit", {"group": "g", "offsets": {"t/0": 10}})
    b.list_committed(2, "g", {"t/0": 0})
    b.end("ok", 1, "commit", {"group": "g", "offsets": {"t/0": 10}})
    assert regressions(b) == []


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=40), st.data())
def test_range_max_matches_brute_force(values, data):
    lo = data.draw(st.integers(0, len(values)))
    hi = data.draw(st.integers(lo, len(values)))
    best = RangeMax(values).argmax(lo, hi)
    if lo == hi:
        assert best is None
    else:
        assert lo <= best < hi and values[best] == max(values[lo:hi])
