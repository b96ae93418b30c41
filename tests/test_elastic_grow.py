"""Growing a running cluster (real broker processes): brokers join with --join under continuous produce, a
rebalance moves replicas onto them, and nothing acknowledged is lost or duplicated; every replica ends identical."""

from __future__ import annotations

import pytest

from cluster import request, wait_until
from elastic_support import (KeepProducing, assert_nothing_lost_or_duplicated, assert_replicas_identical, brokers,
                             get_json, raftka, reassignments, replicas_of, wait_moves_done)

pytestmark = pytest.mark.timeout(240)

TOPIC = "grow"


def test_grow_three_to_five_under_produce_and_rebalance(cluster_factory):
    cluster = cluster_factory(3)
    cluster_id = get_json(cluster, "/cluster")["cluster_id"]
    cluster.create_topic(TOPIC, 6, 3)
    producer = KeepProducing(cluster, TOPIC)
    producer.start()
    try:
        wait_until(lambda: len(producer.acked) > 200 or producer.failures, 30, "the first acknowledgements")
        cluster.add_broker()
        cluster.add_broker()
        wait_until(lambda: sum(b["metadata_role"] == "voter" for b in brokers(cluster).values()) == 5, 30,
                   "five metadata voters once five brokers are in (auto)")
        before = sum(len(r) for r in replicas_of(cluster, TOPIC))
        plan = request(cluster.url(4) + "/cluster/rebalance?dry_run=true", "POST")
        assert plan.status == 200 and any(c["moves_data"] for c in plan.json()["changes"]), plan.body
        assert reassignments(cluster) == []  # a dry run changes nothing
        output = raftka(cluster, "cluster", "rebalance", "--wait")  # moves, waits, then balances leadership
        assert "moving" in output and "preferred replica" in output
        wait_moves_done(cluster)
        acked_during = len(producer.acked)
        wait_until(lambda: len(producer.acked) > acked_during + 200 or producer.failures, 30,
                   "acknowledgements after the moves")
    finally:
        producer.stop()
    assert not producer.failures, producer.failures[:5]
    after = replicas_of(cluster, TOPIC)
    assert sum(len(r) for r in after) == before  # the replication factor held
    counts = {b: sum(b in r for r in after) for b in cluster.ids}
    assert max(counts.values()) - min(counts.values()) <= 1, counts  # 18 replicas over 5 brokers: 3 or 4 each
    assert get_json(cluster, "/cluster")["cluster_id"] == cluster_id  # the id did not change when brokers joined
    assert_nothing_lost_or_duplicated(cluster, TOPIC, producer.acked)
    assert_replicas_identical(cluster, TOPIC)
