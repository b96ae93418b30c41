"""Idempotent produce over the Kafka protocol: Kafka's sequence and epoch rules, and a leader killed mid-produce.

* Raw requests (kafka-python's message classes over a socket): a retried
  batch answers success with its original offset, a sequence gap
  OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch INVALID_PRODUCER_EPOCH; an
  acks=0 produce gets no answer (the next answer on the connection is the
  next request's).
* For each of confluent-kafka, kafka-python and aiokafka with idempotence on:
  kill -9 the partition leader while producing; every acknowledged record is
  in the partition exactly once, and no record is there twice.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from cluster import request
from kafka_support import http_records, receive_response, start_kafka_cluster

from raftka.storage import Record, encode_batch

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")
aiokafka = pytest.importorskip("aiokafka")
from kafka.protocol.metadata import MetadataRequest, MetadataResponse  # noqa: E402
from kafka.protocol.producer import (InitProducerIdRequest, InitProducerIdResponse, ProduceRequest,  # noqa: E402
                                     ProduceResponse)

pytestmark = pytest.mark.timeout(300)

RECORDS = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_kafka_cluster(tmp_path_factory.mktemp("kafka-idempotence"))
    yield cluster
    cluster.close()


class Wire:
    """One Kafka connection speaking raw requests."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.correlation = 0

    def send(self, message) -> int:
        self.correlation += 1
        message.with_header(correlation_id=self.correlation, client_id="wire")
        self.sock.sendall(bytes(message.encode(header=True, framed=True)))
        return self.correlation

    def receive(self, response_cls, version: int):
        return receive_response(self.sock, response_cls, version)

    def call(self, message, response_cls):
        self.send(message)
        return self.receive(response_cls, message.API_VERSION)

    def close(self) -> None:
        self.sock.close()


def _produce(topic: str, batch: bytes, acks: int = -1):
    t = ProduceRequest.TopicProduceData
    return ProduceRequest(version=9, transactional_id=None, acks=acks, timeout_ms=10_000, topic_data=[
        t(name=topic, partition_data=[t.PartitionProduceData(index=0, records=batch)])])


def _result(response) -> tuple[int, int]:
    p = response.responses[0].partition_responses[0]
    return p.error_code, p.base_offset


def _leader_wire(cluster, topic: str) -> Wire:
    leader = cluster.leader_of(topic, 0)
    return Wire(cluster.kafka_ports[leader])


def test_kafkas_sequence_and_epoch_rules_on_the_wire(cluster):
    cluster.create_topic("seq", partitions=1)
    wire = _leader_wire(cluster, "seq")
    try:
        init = wire.call(InitProducerIdRequest(version=4, transactional_id=None, transaction_timeout_ms=60000),
                         InitProducerIdResponse)
        assert init.error_code == 0 and init.producer_id >= 0 and init.producer_epoch == 0
        pid = init.producer_id

        def batch(seq: int, epoch: int = 0, n: int = 10) -> bytes:
            return encode_batch([Record(b"k", b"%d" % (seq + i)) for i in range(n)], producer_id=pid,
                                producer_epoch=epoch, base_sequence=seq)

        first = batch(0)
        assert _result(wire.call(_produce("seq", first), ProduceResponse)) == (0, 0)
        assert _result(wire.call(_produce("seq", batch(10)), ProduceResponse)) == (0, 10)
        assert _result(wire.call(_produce("seq", first), ProduceResponse)) == (0, 0)  # a retry: original offset
        assert _result(wire.call(_produce("seq", batch(30)), ProduceResponse))[0] == 45  # gap
        assert _result(wire.call(_produce("seq", batch(0, epoch=1)), ProduceResponse)) == (0, 20)  # new epoch
        assert _result(wire.call(_produce("seq", batch(20, epoch=0)), ProduceResponse))[0] == 47  # fenced
        corrupt = bytearray(batch(10, epoch=1))
        corrupt[-1] ^= 0xFF
        assert _result(wire.call(_produce("seq", bytes(corrupt)), ProduceResponse))[0] == 2  # CORRUPT_MESSAGE

        # acks=0: no answer; the next answer on the connection is the Metadata request's.
        wire.send(_produce("seq", encode_batch([Record(None, b"fire-and-forget")]), acks=0))
        metadata = MetadataRequest(version=1, topics=None)
        correlation = wire.send(metadata)
        answer = wire.receive(MetadataResponse, 1)
        assert answer.header.correlation_id == correlation
    finally:
        wire.close()
    deadline = time.monotonic() + 10
    while request(cluster.url(1) + "/topics/seq/partitions/0/offsets").json().get("end_offset") != 31:
        assert time.monotonic() < deadline, "the acks=0 record was not appended"
        time.sleep(0.1)


# ------------------------------------------------------------------------ leader killed mid-produce

def produce_confluent(cluster, topic, values, acked, stop):
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap, "enable.idempotence": True,
                                         "linger.ms": 5, "message.timeout.ms": 60000})
    for value in values:
        producer.produce(topic, value=value, partition=0,
                         on_delivery=lambda err, msg: acked.append(msg.value()) if err is None else None)
        producer.poll(0)
        time.sleep(0.0005)
    producer.flush(90)


def produce_kafka_python(cluster, topic, values, acked, stop):
    producer = kafka.KafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, enable_idempotence=True,
                                   linger_ms=5, retries=1000, request_timeout_ms=10000, delivery_timeout_ms=90000)
    for value in values:
        producer.send(topic, value=value, partition=0).add_callback(lambda meta, v=value: acked.append(v))
        time.sleep(0.0005)
    producer.flush(90)
    producer.close()


def produce_aiokafka(cluster, topic, values, acked, stop):
    async def run():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, enable_idempotence=True,
                                             linger_ms=5, request_timeout_ms=10000)
        await producer.start()
        try:
            pending = []
            for value in values:
                fut = await producer.send(topic, value=value, partition=0)
                fut.add_done_callback(lambda f, v=value: acked.append(v) if not f.exception() else None)
                pending.append(fut)
                await asyncio.sleep(0.0005)
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await producer.stop()

    asyncio.run(run())


PRODUCERS = {"confluent-kafka": produce_confluent, "kafka-python": produce_kafka_python,
             "aiokafka": produce_aiokafka}


@pytest.mark.parametrize("client", list(PRODUCERS))
def test_kill_the_leader_mid_produce_every_acknowledged_record_exactly_once(cluster, client):
    topic = f"kill-{client}"
    cluster.create_topic(topic, partitions=1)
    values = [f"{client}-{i}".encode() for i in range(RECORDS)]
    acked: list[bytes] = []
    stop = threading.Event()
    errors = []

    def produce():
        try:
            PRODUCERS[client](cluster, topic, values, acked, stop)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    deadline = time.monotonic() + 60
    while len(acked) < RECORDS // 4:
        assert time.monotonic() < deadline and not errors, (len(acked), errors)
        time.sleep(0.01)
    leader = cluster.leader_of(topic, 0)
    cluster.kill(leader)
    acked_at_kill = len(acked)
    producer.join(180)
    assert not producer.is_alive() and errors == []
    try:
        assert acked_at_kill < RECORDS and len(acked) > acked_at_kill  # the failover happened mid-produce
        end = None
        deadline = time.monotonic() + 30
        while end is None:
            resp = request(cluster.url(next(iter(cluster.procs))) + f"/topics/{topic}/partitions/0/offsets")
            end = resp.json().get("end_offset") if resp.status == 200 else None
            assert end is not None or time.monotonic() < deadline, resp.body
        stored = [r["value"] for r in http_records(cluster, topic, 0, end)]
        assert len(stored) == len(set(stored)), "a record is stored twice"
        missing = set(acked) - set(stored)
        assert not missing, f"{len(missing)} acknowledged records lost"
        assert set(stored) <= set(values)
    finally:
        cluster.restart(leader)
        cluster.wait_kafka_registered()


def test_init_producer_id_without_a_metadata_quorum_is_retriable_and_not_a_coordinator_error(tmp_path):
    """InitProducerId while no metadata leader can be had answers COORDINATOR_LOAD_IN_PROGRESS (Kafka's answer
    while its producer id block is pending), which every client retries as it is. COORDINATOR_NOT_AVAILABLE sent
    kafka-python looking up a transaction coordinator for a null transactional id, which failed its idempotent
    producer for good (a CI run lost every record of one that started right after a broker was killed)."""
    cluster = start_kafka_cluster(tmp_path)
    try:
        alive, *killed = cluster.ids
        init = InitProducerIdRequest(version=4, transactional_id=None, transaction_timeout_ms=60000)
        for broker in killed:
            cluster.kill(broker)
        wire = Wire(cluster.kafka_ports[alive])
        wire.sock.settimeout(60)
        try:
            refused = wire.call(init, InitProducerIdResponse)
        finally:
            wire.close()
        assert refused.error_code == 14 and refused.producer_id == -1, refused  # COORDINATOR_LOAD_IN_PROGRESS
        for broker in killed:
            cluster.restart(broker)
        deadline = time.monotonic() + 60
        while True:
            wire = Wire(cluster.kafka_ports[alive])
            try:
                answer = wire.call(init, InitProducerIdResponse)
            finally:
                wire.close()
            if answer.error_code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.error_code == 0 and answer.producer_id >= 0, answer
    finally:
        cluster.close()
