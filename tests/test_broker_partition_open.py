"""A partition that cannot be opened never stops the others (issue 12, item 1), against real 3-broker clusters.

Kafka allows 249-character topic names; a partition directory is named after its topic, so a long name must
still give a directory name the file system takes. And whatever makes one partition fail to open on a broker
(here: a file standing where its directory goes), the broker hosts every other partition, reports the failure
in /health, /raft and /metrics, and retries with backoff until it succeeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster import request, retry, wait_until

pytestmark = pytest.mark.timeout(120)

JSON_V2 = "application/vnd.kafka.json.v2+json"


def hosted(cluster, broker: int) -> set[str]:
    """The partitions ("topic/p") broker `broker` hosts, from its /raft."""
    return {g["partition"] for g in request(cluster.url(broker) + "/raft").json()["groups"] if g["partition"]}


def produce_and_read(cluster, topic: str, value: dict) -> list:
    resp = retry(lambda: request(cluster.url(2) + f"/topics/{topic}/partitions/0", "POST",
                                 {"records": [{"value": value}]}, content_type=JSON_V2))
    assert resp.status == 200, resp.body
    offset = resp.json()["offsets"][0]["offset"]
    resp = retry(lambda: request(cluster.url(3) + f"/topics/{topic}/partitions/0/records?offset={offset}",
                                 accept=JSON_V2))
    assert resp.status == 200, resp.body
    return [r["value"] for r in resp.json()]


def test_a_249_character_topic_name_works_and_later_topics_too(cluster_factory):
    cluster = cluster_factory(3)
    long_name = "t" * 249
    resp = request(cluster.url(1) + "/topics", "POST", {"name": long_name, "partitions": 1, "replication_factor": 3})
    assert resp.status == 201, resp.body  # once broker 1 knows the leader; the others learn it from Raft
    for broker in cluster.ids:
        wait_until(lambda: request(cluster.url(broker) + f"/topics/{long_name}/partitions/0").json()["leader"]
                   in cluster.ids, 30, f"broker {broker} to know the leader")
    assert produce_and_read(cluster, long_name, {"n": 1}) == [{"n": 1}]
    cluster.create_topic("after", partitions=1, replication_factor=3)
    assert produce_and_read(cluster, "after", {"n": 2}) == [{"n": 2}]
    for broker in cluster.ids:
        names = [p.name for p in (cluster.root / f"broker-{broker}" / "partitions").iterdir()]
        assert len(names) == 2 and all(len(name) <= 255 for name in names), names
        assert request(cluster.url(broker) + "/health").json()["status"] == "ok"


def test_a_partition_that_cannot_open_is_reported_and_retried_while_the_others_proceed(cluster_factory):
    cluster = cluster_factory(3)
    cluster.stop_broker(1)
    for topic in ("blocked", "later"):  # created in this order: reconciling "blocked" comes first on broker 1
        created = request(cluster.url(2) + "/topics", "POST", {"name": topic, "partitions": 1, "replication_factor": 3})
        assert created.status == 201, created.body
    [directory] = [p.name for p in (cluster.root / "broker-2" / "partitions").iterdir() if p.name.startswith("blocked-")]
    obstacle = cluster.root / "broker-1" / "partitions" / directory
    obstacle.parent.mkdir(parents=True, exist_ok=True)
    obstacle.write_text("a file where broker 1 wants the partition's directory")

    cluster.start_broker(1)
    cluster.wait_healthy(brokers=[1])
    wait_until(lambda: "later/0" in hosted(cluster, 1), 30, "broker 1 to host later/0 despite blocked/0")
    health = wait_until(lambda: (doc := request(cluster.url(1) + "/health").json())["status"] == "degraded" and doc,
                        30, "broker 1 to report itself degraded")
    [problem] = health["partition_problems"]
    assert problem["partition"] == "blocked/0" and "Error" in problem["error"], problem
    assert any("cannot open partition blocked/0" in words for words in health["problems"]), health
    assert [p["partition"] for p in request(cluster.url(1) + "/raft").json()["partition_problems"]] == ["blocked/0"]
    metrics = request(cluster.url(1) + "/metrics").body.decode()
    assert "raftka_partitions_failed 1" in metrics
    assert produce_and_read(cluster, "later", {"n": 1}) == [{"n": 1}]
    for broker in (2, 3):
        assert request(cluster.url(broker) + "/health").json()["status"] == "ok"

    first_attempts = problem["attempts"]
    obstacle.unlink()
    wait_until(lambda: "blocked/0" in hosted(cluster, 1), 30, "broker 1 to open blocked/0 on a retry")
    health = request(cluster.url(1) + "/health").json()
    assert health["status"] == "ok" and health["partition_problems"] == [], health
    assert "raftka_partitions_failed 0" in request(cluster.url(1) + "/metrics").body.decode()
    assert first_attempts >= 1
    assert Path(cluster.root / "broker-1" / "partitions" / directory).is_dir()
