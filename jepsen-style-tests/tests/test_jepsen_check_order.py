"""Ordering anomalies on hand-made histories: inside a poll, across one
consumer's polls (with the resets that legitimately break continuity), across
one producer's sends, and between sends ordered in real time."""

from jepsen_histories import Builder, clean_run


def refs(anomaly):
    return [op.invoke_index for op in anomaly.ops]


def log_of(n):
    """A builder whose t/0 holds values 100.. at offsets 0..n-1 (all acked)."""
    b = Builder()
    for i in range(n):
        b.send(0, 100 + i, offset=i)
    return b


def rec(*offsets):
    return {"t/0": [[o, 100 + o] for o in offsets]}


# ------------------------------------------------------------------ within a poll


def test_int_poll_skip_names_poll_and_skipped_records():
    b = log_of(6)
    poll = b.poll(1, rec(0, 1, 4, 5))
    report = b.check()
    [a] = report.of_kind("int-poll-skip")
    assert a.details == {"partition": "t/0", "offsets": [1, 4], "position": 2,
                         "skipped_count": 2, "skipped": [[2, 102], [3, 103]]}
    assert refs(a) == [poll]
    assert not report.of_kind("int-nonmonotonic-poll")


def test_int_nonmonotonic_poll():
    b = log_of(4)
    poll = b.poll(1, rec(0, 2, 1, 3))
    report = b.check()
    [a] = report.of_kind("int-nonmonotonic-poll")
    assert a.details["offsets"] == [2, 1] and refs(a) == [poll]
    assert [x.details["offsets"] for x in report.of_kind("int-poll-skip")] == [[0, 2], [1, 3]]


def test_int_poll_repeating_an_offset_is_nonmonotonic():
    b = log_of(2)
    b.poll(1, rec(0, 0, 1))
    assert len(b.check().of_kind("int-nonmonotonic-poll")) == 1


def test_consecutive_poll_is_clean():
    b = log_of(4)
    b.poll(1, rec(0, 1, 2, 3))
    report = b.check()
    assert not report.of_kind("int-poll-skip") and not report.of_kind("int-nonmonotonic-poll")


# ------------------------------------------------------------------ across polls


def test_poll_skip_across_two_polls_of_one_process():
    b = log_of(6)
    first = b.poll(1, rec(0, 1))
    second = b.poll(1, rec(3, 4))
    report = b.check()
    [a] = report.of_kind("poll-skip")
    assert a.details == {"partition": "t/0", "offsets": [1, 3], "skipped_count": 1,
                         "skipped": [[2, 102]]}
    assert refs(a) == [first, second]


def test_nonmonotonic_poll_across_two_polls():
    b = log_of(6)
    first = b.poll(1, rec(0, 1, 2))
    second = b.poll(1, rec(2, 3))
    [a] = b.check().of_kind("nonmonotonic-poll")
    assert a.details == {"partition": "t/0", "offsets": [2, 2]} and refs(a) == [first, second]


def test_polls_of_different_processes_are_independent():
    b = log_of(6)
    b.poll(1, rec(0, 1))
    b.poll(2, rec(4, 5))
    b.poll(1, rec(2, 3))
    report = b.check()
    assert not report.of_kind("poll-skip") and not report.of_kind("nonmonotonic-poll")


def test_empty_poll_keeps_the_position():
    b = log_of(4)
    b.poll(1, rec(0, 1))
    b.poll(1, {"t/0": []})
    b.poll(1, rec(3))
    assert len(b.check().of_kind("poll-skip")) == 1


def test_seek_to_beginning_sets_where_the_next_poll_must_start():
    b = log_of(4)
    b.poll(1, rec(0, 1, 2))
    b.assign(1, ["t/0"], seek_to_beginning=True)
    b.poll(1, rec(0, 1))  # after the seek, re-reading from 0 is right
    late = b.poll(1, rec(3))  # but 2 was skipped
    assign2 = b.assign(1, ["t/0"], seek_to_beginning=True)
    skipping = b.poll(1, rec(1))  # offset 0 skipped right after a seek
    report = b.check()
    assert [refs(a) for a in report.of_kind("poll-skip")] == [[late - 2, late],
                                                               [assign2, skipping]]
    assert not report.of_kind("nonmonotonic-poll")


def test_seek_to_an_offset():
    b = log_of(6)
    b.poll(1, rec(0, 1, 2, 3))
    b.assign(1, ["t/0"], seek={"t/0": 1})
    b.poll(1, rec(1, 2))
    seek = b.assign(1, ["t/0"], seek={"t/0": 4})
    bad = b.poll(1, rec(3))
    [a] = b.check().of_kind("nonmonotonic-poll")
    assert refs(a) == [seek, bad]


def test_assign_keeps_only_partitions_still_assigned():
    b = log_of(6)
    b.send(0, 200, offset=0, partition=1)
    b.poll(1, {"t/0": [[0, 100]], "t/1": [[0, 200]]})
    b.assign(1, ["t/0"])  # t/1 dropped: its position is forgotten
    b.assign(1, ["t/0", "t/1"])
    b.poll(1, {"t/0": [[1, 101]], "t/1": [[0, 200]]})  # t/1 from its committed offset
    b.poll(1, {"t/0": [[3, 103]]})  # t/0 kept its position: skip
    report = b.check()
    assert [a.details["partition"] for a in report.of_kind("poll-skip")] == ["t/0"]
    assert not report.of_kind("nonmonotonic-poll")


def test_subscribe_mode_rebalance_resets_but_plain_subscribe_polls_do_not():
    b = log_of(6)
    b.poll(1, rec(0, 1, 2), mode="subscribe")
    b.poll(1, rec(0, 1), mode="subscribe", rebalanced=True)  # reassigned: may re-read
    b.poll(1, rec(2, 3), mode="subscribe")
    bad = b.poll(1, rec(2), mode="subscribe")  # no rebalance: going back is an anomaly
    [a] = b.check().of_kind("nonmonotonic-poll")
    assert refs(a)[1] == bad


def test_rebalanced_flag_does_not_excuse_assign_mode():
    b = log_of(4)
    b.poll(1, rec(0, 1))
    b.poll(1, rec(0), rebalanced=True)
    assert len(b.check().of_kind("nonmonotonic-poll")) == 1


def test_subscribe_and_crash_reset_the_consumer():
    b = log_of(6)
    b.poll(1, rec(0, 1, 2))
    b.op(1, "subscribe", {"topics": ["t"], "group": "g"})
    b.poll(1, rec(0, 1), mode="subscribe")
    b.op(1, "crash")
    b.poll(1, rec(0), mode="subscribe")
    report = b.check()
    assert not report.of_kind("nonmonotonic-poll") and not report.of_kind("poll-skip")


def test_failed_poll_changes_nothing():
    b = log_of(4)
    b.poll(1, rec(0, 1))
    b.op(1, "poll", {}, "fail")
    b.poll(1, rec(3))
    assert len(b.check().of_kind("poll-skip")) == 1


# ------------------------------------------------------------------ sends


def test_nonmonotonic_send_of_one_producer():
    b = Builder()
    first = b.send(0, 1, offset=5)
    second = b.send(0, 2, offset=3)
    b.send(0, 3, offset=1, partition=1)  # another partition: independent
    report = b.check()
    [a] = report.of_kind("nonmonotonic-send")
    assert a.details == {"partition": "t/0", "offsets": [5, 3]} and refs(a) == [first, second]


def test_increasing_sends_are_clean():
    b = Builder()
    for i, offset in enumerate([0, 2, 7]):  # gaps are other producers' records
        b.send(0, i, offset=offset)
    report = b.check()
    assert not report.of_kind("nonmonotonic-send")
    assert not report.of_kind("realtime-send-order")


def test_realtime_send_order_across_processes():
    b = Builder()
    a_send = b.send(0, 1, offset=5)
    b_send = b.send(1, 2, offset=4)  # invoked after A was acked, yet lower
    report = b.check()
    [a] = report.of_kind("realtime-send-order")
    assert a.details == {"partition": "t/0", "offsets": [5, 4]}
    assert refs(a) == [a_send, b_send]
    assert not report.of_kind("nonmonotonic-send")


def test_realtime_evidence_is_the_highest_earlier_send():
    b = Builder()
    b.send(0, 1, offset=3)
    high = b.send(1, 2, offset=9)
    b.send(2, 3, offset=4)
    low = b.send(3, 4, offset=5)
    found = b.check().of_kind("realtime-send-order")
    assert len(found) == 2 and refs(found[1]) == [high, low]


def test_concurrent_sends_may_land_in_either_order():
    b = Builder()
    b.begin(0, "send", {"topic": "t", "value": 1})
    b.begin(1, "send", {"topic": "t", "value": 2})
    b.end("ok", 0, "send", {"topic": "t", "value": 1, "partition": 0, "offset": 1})
    b.end("ok", 1, "send", {"topic": "t", "value": 2, "partition": 0, "offset": 0})
    assert not b.check().of_kind("realtime-send-order")


def test_clean_run_has_no_order_anomalies():
    report = clean_run(8).check()
    assert report.anomalies == []
