"""Real Kafka clients (confluent-kafka/librdkafka, kafka-python, aiokafka) produce and fetch through the Kafka listener.

One 3-broker cluster for the module. Each client produces 10,000 keyed
records; every key must land on the partition Kafka's Java client picks
(murmur2), the acknowledged offsets must be dense, and the records must read
back the same over Kafka and over raftka's HTTP API (one model, two protocols).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from cluster import metric_total, request, retry
from kafka_support import http_records, start_kafka_cluster

from raftka.client.partitioner import partition_for_key

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")
aiokafka = pytest.importorskip("aiokafka")

pytestmark = pytest.mark.timeout(240)

RECORDS = 10_000
PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_kafka_cluster(tmp_path_factory.mktemp("kafka-produce"))
    yield cluster
    cluster.close()


def _create(cluster, name: str, partitions: int = PARTITIONS, configs: dict | None = None) -> None:
    resp = retry(lambda: request(cluster.bootstrap[0] + "/topics", "POST", {
        "name": name, "partitions": partitions, "replication_factor": 3, "configs": configs or {}}))
    assert resp.status == 201, resp.body


def _check_placement(acks: list[tuple[bytes, int, int]], partitions: int) -> dict[int, list[tuple[int, bytes]]]:
    """Every key on its murmur2 partition, offsets dense per partition; returns partition -> [(offset, key)]."""
    by_partition = defaultdict(list)
    for key, partition, offset in acks:
        assert partition == partition_for_key(key, partitions), key
        by_partition[partition].append((offset, key))
    for partition, entries in by_partition.items():
        assert sorted(o for o, _ in entries) == list(range(len(entries))), partition
    assert sum(len(v) for v in by_partition.values()) == len(acks)
    return by_partition


def _check_http_reads(cluster, topic: str, by_partition: dict[int, list[tuple[int, bytes]]]) -> None:
    for partition, entries in by_partition.items():
        records = http_records(cluster, topic, partition, len(entries))
        assert [(r["offset"], r["key"], r["value"]) for r in records] == [
            (o, k, b"value-" + k) for o, k in sorted(entries)]


def test_confluent_kafka_keyed_records_land_where_javas_partitioner_puts_them(cluster):
    _create(cluster, "ck-keys")
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap,
                                         "partitioner": "murmur2_random", "enable.idempotence": True,
                                         "linger.ms": 5})
    acks, failures = [], []

    def delivered(err, msg):
        (failures if err else acks).append((msg.key(), msg.partition(), msg.offset()) if not err else err)

    for i in range(RECORDS):
        key = f"key-{i}".encode()
        producer.produce("ck-keys", key=key, value=b"value-" + key, on_delivery=delivered)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []
    by_partition = _check_placement(acks, PARTITIONS)
    _check_http_reads(cluster, "ck-keys", by_partition)

    consumer = confluent_kafka.Consumer({"bootstrap.servers": cluster.kafka_bootstrap, "group.id": "ck-reader",
                                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([confluent_kafka.TopicPartition("ck-keys", p, 0) for p in range(PARTITIONS)])
        seen = {}
        deadline = time.monotonic() + 60
        while len(seen) < RECORDS and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1):
                assert msg.error() is None, msg.error()
                seen[(msg.partition(), msg.offset())] = (msg.key(), msg.value())
        assert seen == {(p, o): (k, b"value-" + k) for p, entries in by_partition.items() for o, k in entries}
    finally:
        consumer.close()


def test_kafka_python_produces_keyed_records_and_reads_them_back(cluster):
    _create(cluster, "kp-keys")
    producer = kafka.KafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, linger_ms=5)
    futures = []
    for i in range(RECORDS):
        key = f"key-{i}".encode()
        futures.append((key, producer.send("kp-keys", key=key, value=b"value-" + key)))
    producer.flush(60)
    acks = [(key, (meta := future.get(10)).partition, meta.offset) for key, future in futures]
    producer.close()
    by_partition = _check_placement(acks, PARTITIONS)
    _check_http_reads(cluster, "kp-keys", by_partition)

    consumer = kafka.KafkaConsumer(bootstrap_servers=cluster.kafka_bootstrap, enable_auto_commit=False,
                                   auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        consumer.assign([kafka.TopicPartition("kp-keys", p) for p in range(PARTITIONS)])
        seen = {(m.partition, m.offset): (m.key, m.value) for m in consumer}
        assert seen == {(p, o): (k, b"value-" + k) for p, entries in by_partition.items() for o, k in entries}
    finally:
        consumer.close()


def test_aiokafka_produces_keyed_records_and_reads_them_back(cluster):
    _create(cluster, "aio-keys")

    async def run():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            keys = [f"key-{i}".encode() for i in range(RECORDS)]
            futures = [await producer.send("aio-keys", key=k, value=b"value-" + k) for k in keys]
            metas = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        acks = [(k, m.partition, m.offset) for k, m in zip(keys, metas)]
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=cluster.kafka_bootstrap, enable_auto_commit=False,
                                             auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([aiokafka.TopicPartition("aio-keys", p) for p in range(PARTITIONS)])
            seen = {}
            deadline = time.monotonic() + 60
            while len(seen) < RECORDS and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    seen.update({(m.partition, m.offset): (m.key, m.value) for m in batch})
        finally:
            await consumer.stop()
        return acks, seen

    acks, seen = asyncio.run(run())
    by_partition = _check_placement(acks, PARTITIONS)
    assert seen == {(p, o): (k, b"value-" + k) for p, entries in by_partition.items() for o, k in entries}
    _check_http_reads(cluster, "aio-keys", by_partition)


def test_http_produced_records_read_over_kafka_with_offsets_by_time(cluster):
    _create(cluster, "http-to-kafka", partitions=1)
    before = int(time.time() * 1000) - 1
    body = {"records": [{"key": f"k{i}", "value": {"n": i}, "partition": 0} for i in range(50)]}
    resp = retry(lambda: request(cluster.bootstrap[1] + "/topics/http-to-kafka", "POST", body,
                                 content_type="application/vnd.kafka.json.v2+json"))
    assert resp.status == 200, resp.body
    consumer = kafka.KafkaConsumer(bootstrap_servers=cluster.kafka_bootstrap, enable_auto_commit=False,
                                   consumer_timeout_ms=3000)
    try:
        tp = kafka.TopicPartition("http-to-kafka", 0)
        consumer.assign([tp])
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: 50}
        by_time = consumer.offsets_for_times({tp: before})[tp]
        assert by_time.offset == 0 and by_time.timestamp >= before
        assert consumer.offsets_for_times({tp: int(time.time() * 1000) + 60_000})[tp] is None
        consumer.seek(tp, 10)
        got = [(m.offset, m.key, m.value) for m in consumer]
        assert got == [(i, b'"k%d"' % i, b'{"n":%d}' % i) for i in range(10, 50)]  # JSON-format keys are JSON
    finally:
        consumer.close()


def test_kafka_errors_unknown_topic_and_out_of_range(cluster):
    _create(cluster, "errors", partitions=1)
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap, "message.timeout.ms": 3000})
    errors = []
    producer.produce("no-such-topic", value=b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert [e.code() for e in errors] in ([confluent_kafka.KafkaError._UNKNOWN_TOPIC],
                                          [confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART],
                                          [confluent_kafka.KafkaError._MSG_TIMED_OUT])
    consumer = confluent_kafka.Consumer({"bootstrap.servers": cluster.kafka_bootstrap, "group.id": "oor",
                                         "auto.offset.reset": "error", "enable.auto.commit": False})
    try:
        consumer.assign([confluent_kafka.TopicPartition("errors", 0, 1000)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                assert msg.error().code() == confluent_kafka.KafkaError._AUTO_OFFSET_RESET, msg.error()
                break
        else:
            pytest.fail("no offset-out-of-range error")
    finally:
        consumer.close()


def test_a_batch_over_max_message_bytes_is_message_too_large_and_nothing_is_stored(cluster):
    _create(cluster, "small-messages", partitions=1, configs={"max.message.bytes": 2000})
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap, "message.send.max.retries": 0})
    outcomes = []
    producer.produce("small-messages", value=b"x" * 5000, on_delivery=lambda err, msg: outcomes.append(err))
    producer.produce("small-messages", value=b"fits", on_delivery=lambda err, msg: outcomes.append(err))
    producer.flush(30)
    assert outcomes[0] is not None and outcomes[0].code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE
    offsets = request(cluster.bootstrap[0] + "/topics/small-messages/partitions/0/offsets").json()
    assert offsets["end_offset"] == (1 if outcomes[1] is None else 0)


def test_kafka_protocol_traffic_is_counted_once_on_the_leader_for_the_consoles_charts(cluster):
    _create(cluster, "kafka-metered", partitions=1)
    leader = cluster.leader_of("kafka-metered", 0)
    scrape = {b: request(cluster.url(b) + "/metrics").body.decode() for b in cluster.ids}
    latency_before = metric_total(scrape[leader], "raftka_produce_seconds_count")
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap, "enable.idempotence": True,
                                         "batch.num.messages": 5, "linger.ms": 5})
    for i in range(20):
        producer.produce("kafka-metered", value=b"metered-%d" % i, partition=0)
    assert producer.flush(30) == 0
    consumer = confluent_kafka.Consumer({"bootstrap.servers": cluster.kafka_bootstrap, "group.id": "metered",
                                         "enable.auto.commit": False})
    try:
        consumer.assign([confluent_kafka.TopicPartition("kafka-metered", 0, 0)])
        got, deadline = [], time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.offset())
        assert got == list(range(20))
    finally:
        consumer.close()
    scrape = {b: request(cluster.url(b) + "/metrics").body.decode() for b in cluster.ids}
    for b, text in scrape.items():
        counts = tuple(metric_total(text, name, topic="kafka-metered") for name in (
            "raftka_produced_records_total", "raftka_fetched_records_total"))
        assert counts == ((20, 20) if b == leader else (0, 0)), b
    assert metric_total(scrape[leader], "raftka_produced_bytes_total", topic="kafka-metered") > 20 * 9
    assert metric_total(scrape[leader], "raftka_fetched_bytes_total", topic="kafka-metered") > 20 * 9
    assert metric_total(scrape[leader], "raftka_produce_seconds_count") - latency_before >= 4  # one per batch
