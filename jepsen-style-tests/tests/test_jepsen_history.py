"""History format: parsing, pairing, validation errors, fault windows, file round trip."""

import pytest
from jepsen_histories import Builder, clean_run

from jepsen_raftka.history import (
    Assign,
    Commit,
    HistoryError,
    HistoryRecorder,
    PollResult,
    Send,
    history_from_dicts,
    load_history,
    split_partition_key,
    write_history,
)


def test_pairs_invokes_with_completions_and_types_bodies():
    b = Builder()
    b.begin(1, "send", {"topic": "t", "key": "k", "value": 7})
    b.begin(2, "poll", {})
    b.end("ok", 1, "send", {"topic": "t", "key": "k", "value": 7, "partition": 3, "offset": 9})
    b.end("ok", 2, "poll", {"records": {"t/3": [[9, 7]]}, "mode": "subscribe",
                            "rebalanced": True})
    b.assign(3, ["t/0"], seek={"t/0": 4})
    b.commit(3, "g", {"t/0": 4}, seek=True)
    h = b.history()
    send, poll, assign, commit = h.ops
    assert (send.invoke_index, send.complete_index, send.type) == (0, 2, "ok")
    assert send.body == Send("t", "k", 7, 3, 9, "t/3")
    assert (poll.invoke_index, poll.complete_index) == (1, 3)
    assert poll.body == PollResult({"t/3": [[9, 7]]}, "subscribe", True)
    assert assign.body == Assign(("t/0",), False, {"t/0": 4})
    assert commit.body == Commit("g", {"t/0": 4}, True)


def test_pending_invoke_at_end_counts_as_info():
    b = Builder()
    b.begin(1, "send", {"topic": "t", "value": 1})
    op = b.history().ops[0]
    assert op.type == "info" and op.complete_time is None and op.end_time == float("inf")


@pytest.mark.parametrize("events, message", [
    ([{"type": "ok", "process": 1, "f": "crash", "time": 1}], "without a pending invoke"),
    ([{"type": "invoke", "process": 1, "f": "crash", "time": 1},
      {"type": "invoke", "process": 1, "f": "crash", "time": 2}], "is pending"),
    ([{"type": "invoke", "process": 1, "f": "crash", "time": 1},
      {"type": "info", "process": 1, "f": "crash", "time": 2},
      {"type": "invoke", "process": 1, "f": "crash", "time": 3}], "retired"),
    ([{"type": "invoke", "process": 1, "f": "crash", "time": 1},
      {"type": "ok", "process": 1, "f": "poll", "time": 2}], "does not match"),
    ([{"type": "invoke", "process": 1, "f": "dance", "time": 1}], "unknown f"),
    ([{"type": "begin", "process": 1, "f": "crash", "time": 1}], "bad type"),
    ([{"type": "invoke", "process": 1, "f": "crash", "time": 1.5}], "time must be"),
    ([{"type": "invoke", "process": "x", "f": "crash", "time": 1}], "process must be"),
    ([{"type": "ok", "process": "nemesis", "f": "heal", "time": 1}], "nemesis events"),
    ([{"type": "invoke", "process": 1, "f": "send", "value": {"topic": "t"}, "time": 1}],
     "scalar 'value'"),
    ([{"type": "invoke", "process": 1, "f": "send", "value": {"topic": "t", "value": 1},
       "time": 1},
      {"type": "ok", "process": 1, "f": "send", "value": {"topic": "t", "value": 1}, "time": 2}],
     "integer 'partition'"),
    ([{"type": "invoke", "process": 1, "f": "poll", "value": {}, "time": 1},
      {"type": "ok", "process": 1, "f": "poll", "value": {"records": {"t/0": [[0]]}},
       "time": 2}], "bad [offset, value]"),
    ([{"type": "invoke", "process": 1, "f": "poll", "value": {}, "time": 1},
      {"type": "ok", "process": 1, "f": "poll", "value": {"records": {"t/0": [[0, [1]]]}},
       "time": 2}], "bad [offset, value]"),
    ([{"type": "invoke", "process": 1, "f": "poll", "value": {}, "time": 1},
      {"type": "ok", "process": 1, "f": "poll", "value": {"records": {"t": []}}, "time": 2}],
     "bad partition key"),
    ([{"type": "invoke", "process": 1, "f": "commit", "value": {"offsets": {}}, "time": 1}],
     "needs a 'group'"),
    (["not an object"], "expected a JSON object"),
])
def test_malformed_histories_are_rejected_with_the_event_index(events, message):
    with pytest.raises(HistoryError, match="event") as err:
        history_from_dicts(events)
    assert message in str(err.value)


def test_split_partition_key():
    assert split_partition_key("my.topic/12") == ("my.topic", 12)
    for bad in ("t", "t/", "/3", "t/x", 5):
        with pytest.raises(HistoryError):
            split_partition_key(bad)


def test_fault_windows_and_instant_faults():
    b = Builder()
    b.nemesis("start-partition", {"nodes": [1]})
    b.nemesis("kill", {"node": 2})
    b.nemesis("start-pause")
    b.nemesis("stop-partition")
    b.nemesis("start-partition")
    b.nemesis("heal")
    b.nemesis("start-clock")
    h = b.history()
    windows = [(w.name, w.start, w.end) for w in h.fault_windows()]
    ms = 1_000_000
    assert windows == [("partition", 1 * ms, 4 * ms), ("pause", 3 * ms, 6 * ms),
                       ("partition", 5 * ms, 6 * ms), ("clock", 7 * ms, None)]
    assert [e.f for e in h.instant_faults()] == ["kill"]
    assert h.heal_times == [6 * ms]


def test_write_then_load_round_trip(tmp_path):
    events = clean_run().events
    path = tmp_path / "history.jsonl"
    write_history(path, events)
    assert [e.to_json() for e in load_history(path).events] == events


def test_recorder_writes_a_loadable_history(tmp_path):
    path = tmp_path / "history.jsonl"
    with HistoryRecorder(path) as rec:
        rec.invoke(1, "send", {"topic": "t", "key": None, "value": 1})
        rec.complete("ok", 1, "send", {"topic": "t", "key": None, "value": 1,
                                       "partition": 0, "offset": 0}, node=2)
        rec.nemesis("start-kill", {"node": 2})
        rec.invoke(1, "poll", {})
        rec.complete("info", 1, "poll", None, error="timeout")
        with pytest.raises(ValueError):
            rec.complete("done", 1, "poll", None)
    h = load_history(path)
    assert [op.type for op in h.ops] == ["ok", "info"]
    assert h.ops[0].node == 2 and h.ops[1].error == "timeout"
    assert [e.f for e in h.nemesis] == ["start-kill"]
    times = [e.time for e in h.events]
    assert times == sorted(times)


def test_invalid_json_line_is_reported_with_its_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"type": "invoke", "process": 1, "f": "crash", "time": 1}\n\n{oops\n')
    with pytest.raises(HistoryError, match="line 3"):
        load_history(path)
