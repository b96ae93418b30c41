"""Partition figures (high watermark, log start, in-sync replicas) are the leader's, whichever broker answers, and
in-sync follows the match index and broker liveness, not recent traffic (issue 12, items 4 and 5)."""

from __future__ import annotations

import time

import pytest

from cluster import request, retry

pytestmark = pytest.mark.timeout(120)

JSON_V2 = "application/vnd.kafka.json.v2+json"


def describe_everywhere(cluster, topic: str) -> list[dict]:
    """Partition 0 as each live broker describes it, through each of the three routes."""
    docs = []
    for broker in cluster.procs:
        base = cluster.url(broker) + f"/topics/{topic}"
        docs.append(request(base + "/partitions/0").json())
        docs.append(request(base + "/partitions").json()[0])
        docs.append(request(base).json()["partitions"][0])
    return docs


def in_sync(doc: dict) -> dict[int, bool]:
    return {r["broker"]: r["in_sync"] for r in doc["replicas"]}


def quiesced(cluster, broker: int, topic: str) -> bool:
    groups = request(cluster.url(broker) + "/raft").json()["groups"]
    return any(g["partition"] == f"{topic}/0" and g["quiesced"] for g in groups)


def test_every_broker_answers_with_the_leaders_figures_and_quiet_followers_stay_in_sync(cluster_factory):
    cluster = cluster_factory(3)
    cluster.create_topic("figs", partitions=1, replication_factor=3)
    resp = retry(lambda: request(cluster.url(1) + "/topics/figs/partitions/0", "POST",
                                 {"records": [{"value": i} for i in range(3)]}, content_type=JSON_V2))
    assert resp.status == 200, resp.body
    leader = cluster.leader_of("figs", 0)

    deadline = time.monotonic() + 30
    while not quiesced(cluster, leader, "figs"):  # no writes since: the group goes quiet
        assert time.monotonic() < deadline, "the partition group never quiesced"
        time.sleep(0.1)
    # Quiet for ten election timeouts (300 ms in tests): followers stay in sync, every broker says so.
    watch_until = time.monotonic() + 3.0
    while time.monotonic() < watch_until:
        for doc in describe_everywhere(cluster, "figs"):
            assert doc["leader"] == leader
            assert (doc["high_watermark"], doc["log_start_offset"]) == (3, 0), doc
            assert in_sync(doc) == {1: True, 2: True, 3: True}, doc
        time.sleep(0.2)

    follower = next(b for b in cluster.ids if b != leader)
    cluster.kill(follower)
    deadline = time.monotonic() + 30
    while True:  # a dead broker's replica falls out of sync, as every live broker reports
        docs = describe_everywhere(cluster, "figs")
        if all(in_sync(doc)[follower] is False and in_sync(doc)[leader] for doc in docs):
            break
        assert time.monotonic() < deadline, docs
        time.sleep(0.2)
