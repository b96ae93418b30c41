"""Value/offset anomalies on hand-made histories: each one detected with the ops
that prove it, and not reported on the clean history."""

import pytest
from jepsen_histories import Builder, clean_run

from jepsen_raftka.history import HistoryError


def refs(anomaly):
    return [op.invoke_index for op in anomaly.ops]


def test_clean_history_is_valid():
    report = clean_run().check()
    assert report.verdict == "valid", report.to_text()
    assert report.anomalies == []


def test_inconsistent_offsets_names_both_observers():
    b = clean_run(3)
    send = b.send(0, 50, offset=1)  # the log already holds 101 at offset 1
    report = b.check()
    [a] = report.of_kind("inconsistent-offsets")
    assert a.details == {"partition": "t/0", "offset": 1, "values": [101, 50]}
    assert a.ops[0].f == "send" and a.ops[0].body.value == 101  # the first observer
    assert refs(a)[1] == send
    assert report.verdict == "invalid"


def test_inconsistent_offsets_between_two_polls():
    b = clean_run(3)
    poll = b.poll(1, {"t/0": [[2, 777]]})
    [a] = b.check().of_kind("inconsistent-offsets")
    assert a.details["values"] == [102, 777] and refs(a)[1] == poll


def test_duplicate_value_at_two_offsets():
    b = clean_run(3)
    # an un-deduplicated retry: 101 stored again at offset 4
    b.send(0, 104, offset=5)
    poll = b.poll(1, {"t/0": [[3, 103], [4, 101], [5, 104]]})
    report = b.check()
    [a] = report.of_kind("duplicate")
    assert a.details == {"topic": "t", "value": 101, "positions": [["t/0", 1], ["t/0", 4]]}
    assert a.ops[0].body.value == 101 and refs(a)[1] == poll
    assert not report.of_kind("inconsistent-offsets")


def test_duplicate_across_partitions():
    b = Builder()
    s = b.send(0, 1, offset=0, partition=0)
    p = b.poll(1, {"t/1": [[0, 1]]})
    [a] = b.check().of_kind("duplicate")
    assert a.details["positions"] == [["t/0", 0], ["t/1", 0]] and refs(a) == [s, p]


def test_lost_write_below_the_highest_read_offset():
    b = Builder()
    b.assign(1, ["t/0"], seek_to_beginning=True)
    lost = b.send(0, 10, offset=0)
    b.send(0, 11, offset=1)
    poll = b.poll(1, {"t/0": [[1, 11]]})  # offset 0 never read by anyone
    report = b.check()
    [a] = report.of_kind("lost-write")
    assert a.details == {"partition": "t/0", "offset": 0, "value": 10, "max_read_offset": 1,
                         "reason": "below-max-read"}
    assert refs(a) == [lost, poll]


def test_lost_write_never_read_after_final_polls():
    b = clean_run(3)
    lost = b.send(0, 500, offset=4)  # acked after the final polls were done, never read
    report = b.check()
    [a] = report.of_kind("lost-write")
    assert a.details["reason"] == "never-read" and a.details["offset"] == 4
    final_poll = max(op.invoke_index for op in b.history().ops if op.f == "final_poll")
    assert refs(a) == [lost, final_poll]


def test_unread_ok_send_above_max_read_is_not_lost_without_final_polls():
    b = Builder()
    b.send(0, 10, offset=0)
    b.poll(1, {"t/0": [[0, 10]]})
    b.send(0, 11, offset=1)
    assert not b.check().of_kind("lost-write")


def test_indefinite_send_never_read_is_not_lost():
    b = clean_run(3)
    b.send(5, 900, type_="info")
    assert not b.check().of_kind("lost-write")


def test_g1a_failed_send_visible_to_a_poll():
    b = clean_run(3)
    failed = b.send(0, 666, type_="fail")
    poll = b.poll(1, {"t/0": [[4, 666]]})
    report = b.check()
    [a] = report.of_kind("G1a")
    assert a.details == {"partition": "t/0", "offset": 4, "value": 666}
    assert refs(a) == [failed, poll]


def test_indefinite_send_visible_to_a_poll_is_fine():
    b = clean_run(3)
    b.send(7, 700, type_="info")
    b.poll(1, {"t/0": [[4, 700]]})
    report = b.check()
    assert not report.of_kind("G1a") and not report.of_kind("unexpected-value")


def test_unexpected_value_nobody_sent():
    b = clean_run(3)
    poll = b.poll(1, {"t/0": [[4, 4242]]})
    [a] = b.check().of_kind("unexpected-value")
    assert a.details == {"partition": "t/0", "offset": 4, "value": 4242} and refs(a) == [poll]


def test_a_value_sent_to_another_topic_is_unexpected_here():
    b = Builder()
    b.send(0, 1, offset=0, topic="a")
    b.poll(1, {"b/0": [[0, 1]]})
    assert len(b.check().of_kind("unexpected-value")) == 1


def test_sending_the_same_value_twice_is_a_harness_error():
    b = Builder()
    b.send(0, 1, offset=0)
    b.send(1, 1, offset=1)
    with pytest.raises(HistoryError, match="already sent"):
        b.check()
