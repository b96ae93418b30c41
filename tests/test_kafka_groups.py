"""Consumer groups of real Kafka clients (Kafka's classic protocol) on a 3-broker cluster.

For each of confluent-kafka, kafka-python and aiokafka: 3 consumers subscribe
to a 2-partition topic in one group; once the group is stable, every record
is read by exactly one consumer and one consumer gets nothing. They commit and
stop; a new consumer of the group resumes from the committed offsets and reads
only what came after. The committed offsets show in `raftka groups describe`
(the HTTP side of the same groups), and a group driven by Kafka clients refuses
raftka's own members (and the reverse) with INCONSISTENT_GROUP_PROTOCOL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest
from cluster import request, retry
from kafka_support import start_kafka_cluster

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")
aiokafka = pytest.importorskip("aiokafka")

pytestmark = pytest.mark.timeout(300)

FIRST, LATER = 200, 50


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_kafka_cluster(tmp_path_factory.mktemp("kafka-groups"))
    yield cluster
    cluster.close()


class ConfluentMember:
    def __init__(self, bootstrap: str, group: str, topic: str):
        self.consumer = confluent_kafka.Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        self.consumer.subscribe([topic])

    def poll(self) -> list[tuple[int, int, bytes]]:
        msgs = self.consumer.consume(100, timeout=0.2)
        return [(m.partition(), m.offset(), m.key()) for m in msgs if m.error() is None]

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def commit(self) -> None:
        try:
            self.consumer.commit(asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            if exc.args[0].code() != confluent_kafka.KafkaError._NO_OFFSET:  # the idle member has nothing to commit
                raise

    def close(self) -> None:
        self.consumer.close()


class KafkaPythonMember:
    def __init__(self, bootstrap: str, group: str, topic: str):
        self.consumer = kafka.KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                            auto_offset_reset="earliest", enable_auto_commit=False,
                                            session_timeout_ms=6000, heartbeat_interval_ms=500)

    def poll(self) -> list[tuple[int, int, bytes]]:
        batches = self.consumer.poll(timeout_ms=200)
        return [(m.partition, m.offset, m.key) for batch in batches.values() for m in batch]

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def commit(self) -> None:
        self.consumer.commit()

    def close(self) -> None:
        self.consumer.close()


class AioKafkaMember:
    """aiokafka on its own event loop in the member's thread."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        self.loop = asyncio.new_event_loop()

        async def start():
            consumer = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                                 session_timeout_ms=6000, heartbeat_interval_ms=500)
            await consumer.start()
            return consumer

        self.consumer = self.loop.run_until_complete(start())

    def poll(self) -> list[tuple[int, int, bytes]]:
        batches = self.loop.run_until_complete(self.consumer.getmany(timeout_ms=200))
        return [(m.partition, m.offset, m.key) for batch in batches.values() for m in batch]

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def commit(self) -> None:
        self.loop.run_until_complete(self.consumer.commit())

    def close(self) -> None:
        self.loop.run_until_complete(self.consumer.stop())
        self.loop.close()


CLIENTS = {"confluent-kafka": ConfluentMember, "kafka-python": KafkaPythonMember, "aiokafka": AioKafkaMember}


class Runner(threading.Thread):
    """Polls one member in its own thread (each client library wants its own thread or loop)."""

    def __init__(self, make):
        super().__init__(daemon=True)
        self.make = make
        self.records: list[tuple[int, int, bytes]] = []
        self.assigned: set[int] = set()
        self.commit_wanted, self.stop_wanted = threading.Event(), threading.Event()
        self.committed, self.error = threading.Event(), None

    def run(self) -> None:
        try:
            member = self.make()
            try:
                while not self.stop_wanted.is_set():
                    self.records += member.poll()
                    self.assigned = member.assignment()
                    if self.commit_wanted.is_set() and not self.committed.is_set():
                        member.commit()
                        self.committed.set()
            finally:
                member.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc


def _group(cluster, group: str) -> dict:
    resp = request(cluster.url(1) + f"/groups/{group}")
    return resp.json() if resp.status == 200 else {}


def _produce(cluster, topic: str, keys: list[bytes]) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap})
    for key in keys:
        producer.produce(topic, key=key, value=b"v")
    assert producer.flush(30) == 0


def _wait(predicate, timeout: float, what: str, runners=()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert not [r.error for r in runners if r.error], [r.error for r in runners]
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_three_consumers_on_two_partitions_commit_stop_and_resume(cluster, client):
    topic, group = f"grp-{client}", f"group-{client}"
    cluster.create_topic(topic, partitions=2)
    make = CLIENTS[client]
    runners = [Runner(lambda: make(cluster.kafka_bootstrap, group, topic)) for _ in range(3)]
    for r in runners:
        r.start()
    try:
        _wait(lambda: _group(cluster, group).get("state") == "Stable" and len(_group(cluster, group)["members"]) == 3
              and sorted(len(r.assigned) for r in runners) == [0, 1, 1], 60, "a stable group of 3 members", runners)
        keys = [f"first-{i}".encode() for i in range(FIRST)]
        _produce(cluster, topic, keys)
        _wait(lambda: sum(len(r.records) for r in runners) >= FIRST, 60, "every record consumed")
        assert sorted(k for r in runners for _, _, k in r.records) == sorted(keys)  # each exactly once
        assert sorted(len(r.records) > 0 for r in runners) == [False, True, True]  # the third one is idle
        for r in runners:
            assert {p for p, _, _ in r.records} <= r.assigned
        for r in runners:
            r.commit_wanted.set()
        _wait(lambda: all(r.committed.is_set() or r.error for r in runners), 30, "commits")
    finally:
        for r in runners:
            r.stop_wanted.set()
        for r in runners:
            r.join(30)
    assert [r.error for r in runners] == [None, None, None]

    # The committed offsets are the group's, over HTTP and in the CLI.
    offsets = {o["partition"]: o["offset"] for o in _group(cluster, group)["offsets"]}
    ends = {p: retry(lambda p=p: request(cluster.url(2) + f"/topics/{topic}/partitions/{p}/offsets")).json()[
        "end_offset"] for p in (0, 1)}
    assert offsets == ends and sum(ends.values()) == FIRST
    if client == "confluent-kafka":  # the CLI reads the same groups (once: a process start costs seconds)
        described = subprocess.run([sys.executable, "-m", "raftka.client.cli", "--bootstrap", cluster.bootstrap[2],
                                    "groups", "describe", group], capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "COLUMNS": "200"})
        assert described.returncode == 0, described.stderr
        assert topic in described.stdout and "total lag 0" in described.stdout, described.stdout

    later = [f"later-{i}".encode() for i in range(LATER)]
    _produce(cluster, topic, later)
    resumed = Runner(lambda: make(cluster.kafka_bootstrap, group, topic))
    resumed.start()
    try:
        _wait(lambda: len(resumed.records) >= LATER or resumed.error, 60, "the resumed consumer's records")
        time.sleep(0.5)  # nothing more may come: the first records were committed
    finally:
        resumed.stop_wanted.set()
        resumed.join(30)
    assert resumed.error is None
    assert sorted(k for _, _, k in resumed.records) == sorted(later)


def test_offsets_committed_over_http_are_where_a_kafka_consumer_starts(cluster):
    cluster.create_topic("cross", partitions=1)
    _produce(cluster, "cross", [f"k{i}".encode() for i in range(30)])
    resp = retry(lambda: request(cluster.url(3) + "/groups/cross-group/offsets", "POST",
                                 {"offsets": [{"topic": "cross", "partition": 0, "offset": 20}]}))
    assert resp.status == 200, resp.body
    consumer = kafka.KafkaConsumer("cross", bootstrap_servers=cluster.kafka_bootstrap, group_id="cross-group",
                                   enable_auto_commit=False, consumer_timeout_ms=8000, session_timeout_ms=6000)
    try:
        got = []
        for m in consumer:
            got.append(m.offset)
            if len(got) == 10:
                break
        assert got == list(range(20, 30))
        tp = kafka.TopicPartition("cross", 0)
        assert consumer.committed(tp) == 20
    finally:
        consumer.close()


def test_a_group_is_driven_by_one_protocol_at_a_time(cluster):
    cluster.create_topic("one-kind", partitions=1)
    consumer = confluent_kafka.Consumer({"bootstrap.servers": cluster.kafka_bootstrap, "group.id": "kafka-kind",
                                         "session.timeout.ms": 6000})
    consumer.subscribe(["one-kind"])
    try:
        _wait(lambda: consumer.poll(0.2) is None and _group(cluster, "kafka-kind").get("state") == "Stable", 60,
              "the Kafka member in the group")
        resp = request(cluster.url(1) + "/groups/kafka-kind/members", "POST", {"topics": ["one-kind"]})
        assert (resp.status, resp.json()["error_code"]) == (409, 40910), resp.body
    finally:
        consumer.close()

    join = retry(lambda: request(cluster.url(1) + "/groups/raftka-kind/members", "POST",
                                 {"topics": ["one-kind"], "session_timeout_ms": 30000}))
    assert join.status == 200, join.body
    errors = []
    other = confluent_kafka.Consumer({"bootstrap.servers": cluster.kafka_bootstrap, "group.id": "raftka-kind",
                                      "session.timeout.ms": 6000,
                                      "error_cb": lambda err: errors.append(err)})
    other.subscribe(["one-kind"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = other.poll(0.2)
            if msg is not None and msg.error() is not None:
                errors.append(msg.error())
            if any(e.code() == confluent_kafka.KafkaError.INCONSISTENT_GROUP_PROTOCOL for e in errors):
                break
        assert any(e.code() == confluent_kafka.KafkaError.INCONSISTENT_GROUP_PROTOCOL for e in errors), errors
    finally:
        other.close()


def test_admin_clients_list_describe_and_delete_groups(cluster):
    from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    cluster.create_topic("admin-groups", partitions=2)
    _produce(cluster, "admin-groups", [b"a", b"b", b"c"])
    admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap})
    member = Runner(lambda: ConfluentMember(cluster.kafka_bootstrap, "admin-live", "admin-groups"))
    member.start()
    try:
        _wait(lambda: member.assigned == {0, 1} and _group(cluster, "admin-live").get("state") == "Stable", 60,
              "the live member's assignment", [member])
        described = admin.describe_consumer_groups(["admin-live"])["admin-live"].result(30)
        assert described.state == ConsumerGroupState.STABLE and not described.is_simple_consumer_group
        assert described.partition_assignor in ("range", "roundrobin") and described.coordinator.id in (1, 2, 3)
        [live] = described.members
        assert sorted(tp.partition for tp in live.assignment.topic_partitions) == [0, 1]
        with pytest.raises(confluent_kafka.KafkaException) as busy:
            admin.delete_consumer_groups(["admin-live"])["admin-live"].result(30)
        assert busy.value.args[0].code() == confluent_kafka.KafkaError.NON_EMPTY_GROUP
    finally:
        member.stop_wanted.set()
        member.join(30)

    # An empty group with committed offsets (committed over Kafka without membership) is listed and deletable.
    offsets = ConsumerGroupTopicPartitions("admin-idle", [confluent_kafka.TopicPartition("admin-groups", 0, 2)])
    admin.alter_consumer_group_offsets([offsets])["admin-idle"].result(30)
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(30).valid}
    assert {"admin-live", "admin-idle"} <= set(listed) and listed["admin-idle"].state == ConsumerGroupState.EMPTY
    committed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("admin-idle")])["admin-idle"]
    assert [(tp.partition, tp.offset) for tp in committed.result(30).topic_partitions] == [(0, 2)]
    admin.delete_consumer_groups(["admin-idle"])["admin-idle"].result(30)
    assert request(cluster.url(1) + "/groups/admin-idle").status == 404
