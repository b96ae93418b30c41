"""The Kafka listener on a real 3-broker cluster: malformed frames, unsupported APIs, kcat, and admin clients.

* a malformed frame (over --max-request-bytes, truncated, unknown API,
  undecodable) closes that connection only, and /metrics counts it by reason;
  a producer on another connection keeps working;
* a transactional API answers UNSUPPORTED_VERSION and the connection stays up;
* kcat (librdkafka's CLI) lists, produces and consumes against 3 brokers, and
  consumes in a group (-G) whose committed offsets show over HTTP;
* confluent-kafka's AdminClient and kafka-python's KafkaAdminClient, pointed at
  one broker that does not lead the metadata group (so writes are relayed):
  create (with configs), describe and alter configs, add partitions, delete.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import time

import pytest
from cluster import request
from kafka_support import receive_response, start_kafka_cluster

from raftka.client.partitioner import partition_for_key

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,  # noqa: E402
                                   NewPartitions, NewTopic)
from kafka.protocol.metadata import MetadataRequest, MetadataResponse  # noqa: E402
from kafka.protocol.producer import EndTxnRequest, EndTxnResponse  # noqa: E402

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_kafka_cluster(tmp_path_factory.mktemp("kafka-listener"))
    yield cluster
    cluster.close()


def _connect(cluster, broker: int = 1) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", cluster.kafka_ports[broker]), timeout=10)
    sock.settimeout(10)
    return sock


def _closed_by_broker(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _exchange(sock: socket.socket, message, response_cls, correlation_id: int):
    message.with_header(correlation_id=correlation_id, client_id="raw-test")
    sock.sendall(bytes(message.encode(header=True, framed=True)))
    return receive_response(sock, response_cls, message.API_VERSION)


def _malformed_counts(cluster, broker: int) -> dict[str, float]:
    text = request(cluster.url(broker) + "/metrics").body.decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'raftka_kafka_malformed_frames_total\{reason="(\w+)"\} (\S+)', text)}


def test_malformed_frames_close_only_their_connection_and_are_counted(cluster):
    cluster.create_topic("survivor", partitions=1)
    producer = kafka.KafkaProducer(bootstrap_servers=cluster.kafka_address(2))
    try:
        producer.send("survivor", b"before").get(30)
        before = _malformed_counts(cluster, 2)
        frames = {
            "too_large": struct.pack(">i", 1 << 30),
            "unknown_api": struct.pack(">ihhih", 10, 999, 0, 1, -1),
            "undecodable": struct.pack(">ihhih", 14, 3, 12, 1, -1) + b"\xff\xff\xff\xff",
            "truncated": struct.pack(">i", 100) + b"\x00\x03\x00\x01",
        }
        for reason, frame in frames.items():
            sock = _connect(cluster, 2)
            sock.sendall(frame)
            if reason == "truncated":
                sock.shutdown(socket.SHUT_WR)  # the client gives up mid-frame
            assert _closed_by_broker(sock), reason
            sock.close()
        deadline = time.monotonic() + 10
        while True:
            after = _malformed_counts(cluster, 2)
            if all(after.get(r, 0) >= before.get(r, 0) + 1 for r in frames) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {r: after.get(r, 0) - before.get(r, 0) for r in frames} == {r: 1 for r in frames}
        assert producer.send("survivor", b"after").get(30).offset == 1  # its connection was never touched
    finally:
        producer.close()


def test_transactions_answer_unsupported_version_and_the_connection_stays_up(cluster):
    sock = _connect(cluster, 1)
    try:
        answer = _exchange(sock, EndTxnRequest(version=1, transactional_id="t", producer_id=1, producer_epoch=0,
                                               committed=True), EndTxnResponse, 41)
        assert (answer.header.correlation_id, answer.error_code) == (41, 35)
        metadata = _exchange(sock, MetadataRequest(version=9, topics=[], allow_auto_topic_creation=False,
                                                   include_topic_authorized_operations=False), MetadataResponse, 42)
        assert sorted(b.node_id for b in metadata.brokers) == [1, 2, 3]
        assert metadata.cluster_id and metadata.controller_id in (1, 2, 3)
    finally:
        sock.close()


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (Debian package kcat)")
def test_kcat_lists_produces_and_consumes(cluster):
    cluster.create_topic("kcat-topic", partitions=3)
    run = lambda *args, data=None: subprocess.run(  # noqa: E731
        ["kcat", "-b", cluster.kafka_bootstrap, *args], input=data, capture_output=True, timeout=60, check=True)
    listing = run("-L", "-t", "kcat-topic").stdout.decode()
    assert "3 brokers:" in listing and 'topic "kcat-topic" with 3 partitions' in listing, listing
    lines = [f"key-{i}:value-{i}" for i in range(300)]
    run("-P", "-t", "kcat-topic", "-K:", "-X", "partitioner=murmur2_random",
        data="\n".join(lines).encode() + b"\n")
    consumed = run("-C", "-t", "kcat-topic", "-K:", "-e", "-o", "beginning", "-f", "%k:%s:%p\n").stdout.decode()
    got = [line.rsplit(":", 1) for line in consumed.splitlines() if line]
    assert sorted(kv for kv, _ in got) == sorted(lines)
    for kv, partition in got:
        assert int(partition) == partition_for_key(kv.split(":")[0].encode(), 3), kv
    # the balanced consumer (-G): joins a group, reads everything, commits; the offsets show over HTTP
    grouped = run("-G", "kcat-group", "-e", "-X", "auto.offset.reset=earliest", "-f", "%k:%s\n", "kcat-topic")
    assert sorted(line for line in grouped.stdout.decode().splitlines() if line) == sorted(lines)
    committed = request(cluster.url(2) + "/groups/kcat-group").json()["offsets"]
    assert sum(o["offset"] for o in committed) == 300 and all(o["lag"] == 0 for o in committed), committed


def _eventually(predicate, what: str, timeout: float = 10.0) -> None:
    """A change committed by the metadata leader reaches every broker's replica a moment later."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


def _non_leader(cluster) -> int:
    leader = request(cluster.url(1) + "/brokers").json()["metadata_leader"]
    return next(b for b in cluster.ids if b != leader)


def test_confluent_admin_client_through_a_broker_that_relays_to_the_metadata_leader(cluster):
    broker = _non_leader(cluster)
    admin = AdminClient({"bootstrap.servers": cluster.kafka_address(broker)})
    created = admin.create_topics([NewTopic("admin-a", 2, 3, config={"retention.ms": "3600000"}),
                                   NewTopic("bad name!", 1, 1), NewTopic("admin-b", 1, 7)])
    assert created["admin-a"].result(30) is None
    with pytest.raises(confluent_kafka.KafkaException) as bad:
        created["bad name!"].result(30)
    assert bad.value.args[0].code() == confluent_kafka.KafkaError.TOPIC_EXCEPTION
    with pytest.raises(confluent_kafka.KafkaException) as too_many:
        created["admin-b"].result(30)
    assert too_many.value.args[0].code() == confluent_kafka.KafkaError.INVALID_REPLICATION_FACTOR
    again = admin.create_topics([NewTopic("admin-a", 2, 3)])["admin-a"]
    with pytest.raises(confluent_kafka.KafkaException) as exists:
        again.result(30)
    assert exists.value.args[0].code() == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS

    resource = ConfigResource(ConfigResource.Type.TOPIC, "admin-a")
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["retention.ms"].value == "3600000" and not configs["retention.ms"].is_default
    assert configs["max.message.bytes"].is_default
    changed = ConfigResource(ConfigResource.Type.TOPIC, "admin-a", incremental_configs=[
        ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([changed])[changed].result(30)
    configs_on_1 = lambda: request(cluster.url(1) + "/topics/admin-a/configs").json()["configs"]  # noqa: E731
    _eventually(lambda: configs_on_1()["retention.bytes"] == 1048576, "the change on broker 1")
    assert configs_on_1()["retention.ms"] != 3600000
    wrong = ConfigResource(ConfigResource.Type.TOPIC, "admin-a", incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(confluent_kafka.KafkaException) as invalid:
        admin.incremental_alter_configs([wrong])[wrong].result(30)
    assert invalid.value.args[0].code() == confluent_kafka.KafkaError.INVALID_CONFIG

    admin.create_partitions([NewPartitions("admin-a", 5)])["admin-a"].result(30)
    assert len(admin.list_topics("admin-a", timeout=10).topics["admin-a"].partitions) == 5
    cluster_info = admin.describe_cluster().result(30)
    assert sorted(n.id for n in cluster_info.nodes) == [1, 2, 3] and cluster_info.controller.id in (1, 2, 3)
    admin.delete_topics(["admin-a"])["admin-a"].result(30)
    _eventually(lambda: request(cluster.url(1) + "/topics/admin-a").status == 404, "the topic gone on broker 1")


def test_kafka_python_admin_client(cluster):
    admin = kafka.KafkaAdminClient(bootstrap_servers=cluster.kafka_address(_non_leader(cluster)))
    try:
        admin.create_topics([kafka.admin.NewTopic("kp-admin", 3, 3)])
        assert "kp-admin" in admin.list_topics()
        described = admin.describe_topics(["kp-admin"])[0]
        assert len(described["partitions"]) == 3
        admin.delete_topics(["kp-admin"])
        deadline = time.monotonic() + 10
        while "kp-admin" in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "kp-admin" not in admin.list_topics()
    finally:
        admin.close()
