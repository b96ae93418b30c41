"""The metadata group's size (real broker processes): with seven brokers five vote and two follow as learners,
which answer metadata reads from their own copy; when a voter's broker is decommissioned a live learner takes its
seat first."""

from __future__ import annotations

import pytest

from cluster import request, retry, wait_until
from elastic_support import brokers, get_json, raftka, slow

pytestmark = pytest.mark.timeout(240)


def roles(cluster, via: int | None = None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for b, d in sorted(brokers(cluster, via).items()):
        out.setdefault(d["metadata_role"], []).append(b)
    return out


@slow
def test_seven_brokers_five_metadata_voters_and_two_learners(cluster_factory):
    cluster = cluster_factory(7)
    wait_until(lambda: roles(cluster).get("voter") == [1, 2, 3, 4, 5] and roles(cluster).get("learner") == [6, 7],
               30, "five voters and two learners")
    assert retry(lambda: request(cluster.url(6) + "/topics", "POST",
                                 {"name": "seven", "partitions": 3, "replication_factor": 3})).status == 201
    for learner in (6, 7):  # served from the learner's own replica (after a read index), not forwarded
        resp = retry(lambda: request(cluster.url(learner) + "/topics"))
        assert resp.status == 200 and "seven" in resp.json()
        assert resp.headers["X-Raftka-Broker"] == str(learner)
        group = next(g for g in request(cluster.url(learner) + "/raft").json()["groups"] if g["group"] == "__metadata")
        assert group["role"] == "follower" and group["id"] in group["learners"]
    leader = get_json(cluster, "/health")["metadata_leader"]
    voter = next(b for b in (1, 2, 3, 4, 5) if b != leader)
    output = raftka(cluster, "cluster", "decommission", str(voter), "--wait")
    assert f"Broker {voter} is decommissioned" in output, output
    # /brokers answers from the asked broker's view (a decommissioned broker's stays as it was: ask another)
    rest = [b for b in range(1, 8) if b != voter]
    after = wait_until(lambda: (r := roles(cluster, via=leader if leader != voter else 6))
                       and sorted(r["voter"] + r.get("learner", [])) == rest and r, 30,
                       f"the view to drop broker {voter} from the metadata group")
    assert len(after["voter"]) == 5, after  # six brokers left: still five seats
    assert set(after["voter"]) & {6, 7}, after  # a learner took the seat
