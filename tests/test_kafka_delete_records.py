"""Deleting records (Kafka's DeleteRecords) on a real 3-broker cluster, from Kafka admin clients and over HTTP.

* confluent-kafka's AdminClient.delete_records: the low watermark answered is
  the new log start offset; -1 deletes up to the high watermark; an offset
  above it is OFFSET_OUT_OF_RANGE. Consumers with auto.offset.reset=earliest
  then start at the new earliest offset, a group whose committed offset was
  deleted included; an HTTP fetch below it answers 416 naming it.
* `POST /topics/{t}/partitions/{p}/delete-records` at a broker that does not
  lead the partition (forwarded), with its errors.
* kafka-python's KafkaAdminClient.delete_records, then kill -9 the leader:
  the new leader has the same log start offset; the killed broker, restarted,
  too; every replica deletes the segments below it.
"""

from __future__ import annotations

import time

import pytest
from cluster import request, retry, wait_until
from kafka_support import start_kafka_cluster

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")
from confluent_kafka import TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_kafka_cluster(tmp_path_factory.mktemp("kafka-delete-records"))
    yield cluster
    cluster.close()


def _create(cluster, name: str, partitions: int, configs: dict | None = None) -> None:
    resp = retry(lambda: request(cluster.bootstrap[0] + "/topics", "POST", {
        "name": name, "partitions": partitions, "replication_factor": 3, "configs": configs or {}}))
    assert resp.status == 201, resp.body


def _produce(cluster, topic: str, counts: dict[int, int], size: int = 10) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap, "linger.ms": 5,
                                         "batch.num.messages": 10})  # many batches: segments roll
    failures = []
    for partition, count in counts.items():
        for i in range(count):
            producer.produce(topic, value=b"%d-%d|" % (partition, i) + b"x" * size, partition=partition,
                             on_delivery=lambda err, msg: err and failures.append(err))
    assert producer.flush(30) == 0 and failures == []


def _consume(cluster, topic: str, group: str, partition_counts: dict[int, int]) -> dict[int, list[int]]:
    """Offsets a subscribed confluent-kafka consumer (auto.offset.reset=earliest) reads, until it has the given
    count per partition."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": cluster.kafka_bootstrap, "group.id": group,
                                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got: dict[int, list[int]] = {p: [] for p in partition_counts}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 40
        while any(len(got[p]) < n for p, n in partition_counts.items()) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got[msg.partition()].append(msg.offset())
    finally:
        consumer.close()
    return got


def _replica_views(cluster, topic: str, partition: int) -> dict[int, dict]:
    """Each running broker's own replica of the partition (its /raft entry: log start, size, high watermark); a
    broker that does not host it (yet: just restarted) is left out."""
    views = {}
    for b in list(cluster.procs):
        doc = retry(lambda: request(cluster.url(b) + "/raft")).json()
        views.update({b: g for g in doc["groups"] if g["partition"] == f"{topic}/{partition}"})
    return views


def test_confluent_admin_deletes_records_and_consumers_start_at_the_new_earliest_offset(cluster):
    _create(cluster, "purged", partitions=2)
    _produce(cluster, "purged", {0: 100, 1: 30})
    # a group that consumed and committed offset 10 of partition 0, below what is about to be deleted
    committer = confluent_kafka.Consumer({"bootstrap.servers": cluster.kafka_bootstrap, "group.id": "behind"})
    committer.commit(offsets=[TopicPartition("purged", 0, 10)], asynchronous=False)
    committer.close()

    admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap})
    futures = admin.delete_records([TopicPartition("purged", 0, 45), TopicPartition("purged", 1, -1)])
    low = {tp.partition: f.result(30).low_watermark for tp, f in futures.items()}
    assert low == {0: 45, 1: 30}
    [again] = admin.delete_records([TopicPartition("purged", 0, 5)]).values()  # below the start: no change
    assert again.result(30).low_watermark == 45
    [beyond] = admin.delete_records([TopicPartition("purged", 0, 101)]).values()
    with pytest.raises(confluent_kafka.KafkaException) as failed:
        beyond.result(30)
    assert failed.value.args[0].code() == confluent_kafka.KafkaError.OFFSET_OUT_OF_RANGE

    probe = confluent_kafka.Consumer({"bootstrap.servers": cluster.kafka_bootstrap, "group.id": "probe"})
    try:
        assert probe.get_watermark_offsets(TopicPartition("purged", 0), timeout=10) == (45, 100)
        assert probe.get_watermark_offsets(TopicPartition("purged", 1), timeout=10) == (30, 30)
        [by_time] = probe.offsets_for_times([TopicPartition("purged", 0, 0)], timeout=10)  # from the new start
        assert by_time.offset == 45
    finally:
        probe.close()
    _produce(cluster, "purged", {1: 5})  # offsets are never reused: these are 30..34
    for group in ("fresh", "behind"):  # no committed offset; a committed offset that was deleted
        got = _consume(cluster, "purged", group, {0: 55, 1: 5})
        assert got == {0: list(range(45, 100)), 1: list(range(30, 35))}, group

    fetch = request(cluster.bootstrap[2] + "/topics/purged/partitions/0/records?offset=44",
                    accept="application/vnd.kafka.binary.v2+json")
    assert fetch.status == 416 and (fetch.json()["earliest"], fetch.json()["latest"]) == (45, 100)


def test_http_route_deletes_records_through_any_broker(cluster):
    _create(cluster, "purged-http", partitions=1)
    _produce(cluster, "purged-http", {0: 20})
    leader = cluster.leader_of("purged-http", 0)
    other = cluster.url(next(b for b in cluster.ids if b != leader))
    path = "/topics/purged-http/partitions/0/delete-records"

    resp = request(other + path, "POST", {"before_offset": 7})
    assert resp.status == 200, resp.body
    assert resp.json() == {"topic": "purged-http", "partition": 0, "log_start_offset": 7}
    assert resp.headers["X-Raftka-Broker"] == str(leader)  # forwarded to the leader
    offsets = request(other + "/topics/purged-http/partitions/0/offsets").json()
    assert (offsets["beginning_offset"], offsets["end_offset"]) == (7, 20)
    records = request(other + "/topics/purged-http/partitions/0/records?offset=7",
                      accept="application/vnd.kafka.binary.v2+json").json()
    assert [r["offset"] for r in records] == list(range(7, 20))  # the batch holding 7 starts below it

    assert request(other + path, "POST", {"before_offset": 3}).json()["log_start_offset"] == 7
    beyond = request(other + path, "POST", {"before_offset": 21})
    assert (beyond.status, beyond.json()["error_code"], beyond.json()["latest"]) == (416, 41601, 20)
    for bad, code in (({"before_offset": "5"}, 42206), ({"before_offset": 1.5}, 42206), ({"offset": 5}, 42206),
                      ({}, 42206), ({"before_offset": -2}, 41601)):
        resp = request(other + path, "POST", bad)
        assert (resp.status, resp.json()["error_code"]) == (code // 100, code), (bad, resp.body)
    assert request(other + "/topics/purged-http/partitions/3/delete-records", "POST",
                   {"before_offset": 1}).json()["error_code"] == 40402
    resp = request(other + path, "POST", {"before_offset": -1})
    assert resp.json()["log_start_offset"] == 20
    assert request(other + "/topics/purged-http/partitions/0/offsets").json()["beginning_offset"] == 20


def test_every_replica_agrees_on_the_log_start_after_the_leader_is_killed(cluster):
    _create(cluster, "purged-kill", partitions=1, configs={"segment.bytes": 4096})
    _produce(cluster, "purged-kill", {0: 300}, size=100)  # about 10 segments
    # The size of the whole log, taken before the deletion: a checkpoint right after it deletes segments.
    full = max(v["size_bytes"] for v in _replica_views(cluster, "purged-kill", 0).values())
    admin = kafka.KafkaAdminClient(bootstrap_servers=cluster.kafka_bootstrap)
    try:
        result = admin.delete_records({kafka.TopicPartition("purged-kill", 0): 250}, timeout_ms=20_000)
    finally:
        admin.close()
    [partition] = result.values()
    assert (partition["error_code"], partition["low_watermark"]) == (0, 250)
    leader = cluster.leader_of("purged-kill", 0)
    cluster.kill(leader)
    try:
        new_leader = cluster.leader_of("purged-kill", 0, timeout=30)
        assert new_leader != leader
        offsets = retry(lambda: request(cluster.url(new_leader) + "/topics/purged-kill/partitions/0/offsets"))
        assert (offsets.json()["beginning_offset"], offsets.json()["end_offset"]) == (250, 300)
    finally:
        cluster.restart(leader)
    # every replica, the restarted one too, starts at 250 and deletes (at its next checkpoint) the segments below
    def agreed(views: dict[int, dict]) -> bool:
        return len(views) == 3 and all(v["log_start_offset"] == 250 and v["high_watermark"] == 300
                                       and v["size_bytes"] < full / 3 for v in views.values())

    wait_until(lambda: agreed(_replica_views(cluster, "purged-kill", 0)), 30,
               "every replica at log start 250 with its old segments deleted")
    got = _consume(cluster, "purged-kill", "after-kill", {0: 50})
    assert got == {0: list(range(250, 300))}
