"""Property tests: histories of a simulated correct log check clean, and one
random corruption of such a history is always detected."""

import copy
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jepsen_histories import NO_MINIMUMS, SimulatedLog

from jepsen_raftka.checker import CheckOptions, check
from jepsen_raftka.history import history_from_dicts

SLOTS = 3
actions = st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(0, SLOTS - 1), st.integers(0, 2),
              st.sampled_from(["ok", "ok", "ok", "fail", "info", "info-applied"])),
    st.tuples(st.just("poll"), st.integers(0, SLOTS - 1), st.integers(1, 4)),
    st.tuples(st.just("commit"), st.integers(0, SLOTS - 1)),
    st.tuples(st.just("list_committed"), st.integers(0, SLOTS - 1)),
    st.tuples(st.just("seek_and_commit"), st.integers(0, SLOTS - 1), st.integers(0, 2),
              st.floats(0, 1)),
    st.tuples(st.just("crash"), st.integers(0, SLOTS - 1)),
), max_size=60)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def simulate(acts, partitions=3):
    return SimulatedLog(partitions).run(acts)


@FAST
@given(actions)
def test_simulated_correct_log_checks_clean(acts):
    report = check(simulate(acts), options=NO_MINIMUMS)
    assert report.verdict == "valid", report.to_text()


def _poll_lists(events, min_len):
    """(event index, partition) of every ok poll list with at least min_len records."""
    return [(i, tp) for i, e in enumerate(events)
            if e["type"] == "ok" and e["f"] in ("poll", "final_poll")
            for tp, pairs in e["value"]["records"].items() if len(pairs) >= min_len]


def _mutate(events, mutation, data):
    """Applies one corruption; returns the anomaly kinds that must then be reported."""
    sites = _poll_lists(events, 2)
    i, tp = data.draw(st.sampled_from(sites), label="poll")
    pairs = events[i]["value"]["records"][tp]
    j = data.draw(st.integers(0, len(pairs) - 2), label="record")
    if mutation == "drop":  # never the last record: a shorter poll would be legal
        del pairs[j]
        return {"int-poll-skip", "poll-skip"}
    k = data.draw(st.integers(j + 1, len(pairs) - 1), label="other record")
    if mutation == "swap-offsets":
        pairs[j][0], pairs[k][0] = pairs[k][0], pairs[j][0]
        return {"int-nonmonotonic-poll"}
    pairs[k][1] = pairs[j][1]  # duplicate a value at a second offset
    return {"duplicate"}


@FAST
@given(actions, st.sampled_from(["drop", "swap-offsets", "duplicate"]), st.data())
def test_single_corruption_of_a_poll_is_detected(acts, mutation, data):
    events = copy.deepcopy(simulate(acts + [("send", 0, 0, "ok"), ("send", 0, 0, "ok")])
                           .events)
    raw = [e.to_json() for e in events]
    expected = _mutate(raw, mutation, data)
    report = check(history_from_dicts(raw), options=NO_MINIMUMS)
    assert expected & set(report.counts), (mutation, report.to_text())


@FAST
@given(actions, st.data())
def test_swapping_two_acknowledged_offsets_is_detected(acts, data):
    raw = [e.to_json() for e in
           simulate(acts + [("send", 0, 0, "ok"), ("send", 1, 0, "ok")]).events]
    acks = [i for i, e in enumerate(raw) if e["f"] == "send" and e["type"] == "ok"
            and e["value"]["partition"] == 0]
    a, b = data.draw(st.lists(st.sampled_from(acks), min_size=2, max_size=2, unique=True))
    raw[a]["value"]["offset"], raw[b]["value"]["offset"] = (raw[b]["value"]["offset"],
                                                            raw[a]["value"]["offset"])
    report = check(history_from_dicts(raw), options=NO_MINIMUMS)
    assert "inconsistent-offsets" in report.counts, report.to_text()


def test_a_100k_op_history_checks_in_seconds():
    sim = SimulatedLog(partitions=8)
    acts = []
    for n in range(25_000):
        acts += [("send", n % 3, n % 8, "ok"), ("send", (n + 1) % 3, (n + 3) % 8, "ok"),
                 ("poll", n % 3, 4)]
        if n % 50 == 0:
            acts += [("commit", n % 3), ("list_committed", (n + 1) % 3)]
    history = sim.run(acts)
    assert len(history.ops) > 75_000
    started = time.perf_counter()
    report = check(history, options=CheckOptions())
    elapsed = time.perf_counter() - started
    assert report.verdict == "valid", report.to_text()
    assert elapsed < 10, f"checking {len(history.ops)} ops took {elapsed:.1f} s"
