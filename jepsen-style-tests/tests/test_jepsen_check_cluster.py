"""Replica divergence and election safety, from their JSON inputs."""

import orjson
import pytest
from jepsen_histories import Builder, clean_run

from jepsen_raftka.check_cluster import (
    LeaderObservation,
    load_leaders,
    load_replicas,
    parse_leaders,
    parse_replicas,
)
from jepsen_raftka.history import HistoryError

SAME = [[0, 100], [1, 101], [2, 102]]


def divergences(replicas, builder=None):
    report = (builder or clean_run(3)).check(replicas=parse_replicas(replicas))
    return [a.details for a in report.of_kind("replica-divergence")]


def test_identical_replicas_are_clean():
    report = clean_run(3).check(replicas=parse_replicas(
        {"1": {"t/0": SAME + [[3, 103]]}, "2": {"t/0": SAME + [[3, 103]]},
         "3": {"t/0": SAME + [[3, 103]]}}))
    assert report.anomalies == [] and report.checks["replica-divergence"].startswith("checked")


def test_value_mismatch_names_nodes_and_values():
    [d] = divergences({"1": {"t/0": SAME}, "2": {"t/0": [[0, 100], [1, 999], [2, 102]]}},
                      builder=Builder())
    assert d == {"kind": "value-mismatch", "partition": "t/0", "offset": 1,
                 "values": {"1": 101, "2": 999}}


def test_history_mismatch_names_the_observing_op():
    b = clean_run(3)
    report = b.check(replicas=parse_replicas({"1": {"t/0": [[0, 100], [1, 555]]}}))
    [a] = report.of_kind("replica-divergence")
    assert a.details["kind"] == "history-mismatch" and a.details["observed"] == 101
    assert a.ops[0].f == "send" and a.ops[0].body.value == 101


def test_length_mismatch_and_gap():
    [gap] = divergences({"1": {"t/0": SAME}, "2": {"t/0": [[0, 100], [2, 102]]}})
    assert gap == {"kind": "gap", "partition": "t/0", "node": "2", "offsets": [0, 2]}
    [short] = divergences({"1": {"t/0": SAME}, "2": {"t/0": SAME[:2]}})
    assert short == {"kind": "length-mismatch", "partition": "t/0",
                     "last_offsets": {"1": 2, "2": 1}}


@pytest.mark.parametrize("bad", [[], {"1": []}, {"1": {"t": []}}, {"1": {"t/0": [[0]]}},
                                 {"1": {"t/0": [["0", 1]]}}])
def test_bad_replica_input_is_rejected(bad):
    with pytest.raises(HistoryError):
        parse_replicas(bad)


def test_load_replicas_from_file(tmp_path):
    path = tmp_path / "replicas.json"
    path.write_bytes(orjson.dumps({"1": {"t/0": SAME}, "2": {"t/0": SAME}}))
    assert load_replicas(path) == {"1": {"t/0": [tuple(p) for p in SAME]},
                                   "2": {"t/0": [tuple(p) for p in SAME]}}


def test_two_leaders_in_one_term():
    leaders = parse_leaders([
        {"group": "t/0", "term": 1, "leader": 1, "observer": 1},
        {"group": "t/0", "term": 1, "leader": 1, "observer": 2},
        {"group": "t/0", "term": 2, "leader": 2},
        {"group": "__metadata", "term": 2, "leader": 3},
        {"group": "t/0", "term": 2, "leader": 3, "observer": 3, "time": 77},
        {"group": "t/0", "term": 3, "leader": None},
    ])
    report = clean_run(3).check(leaders=leaders)
    [a] = report.of_kind("election-safety")
    assert a.details["group"] == "t/0" and a.details["term"] == 2
    assert a.details["leaders"] == ["2", "3"]
    assert a.details["observations"][1] == LeaderObservation("t/0", 2, 3, 3, 77).to_json()


def test_one_leader_per_term_is_clean():
    leaders = parse_leaders([{"group": "t/0", "term": t, "leader": t % 3} for t in range(9)]
                            + [{"group": "t/0", "term": 4, "leader": "1"}])  # same id as 1
    assert clean_run(3).check(leaders=leaders).anomalies == []


def test_load_leaders_accepts_array_or_lines(tmp_path):
    rows = [{"group": "g", "term": 1, "leader": 1}, {"group": "g", "term": 1, "leader": 2}]
    array, lines = tmp_path / "a.json", tmp_path / "l.jsonl"
    array.write_bytes(orjson.dumps(rows))
    lines.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    assert load_leaders(array) == load_leaders(lines) == parse_leaders(rows)
    with pytest.raises(HistoryError):
        parse_leaders([{"group": "g", "term": "1", "leader": 1}])
