"""The Kafka frame decoder (node/kafka/frames.py) and what the listener answers without a broker.

Hypothesis drives random, truncated and bit-flipped frames through
`decode_request`: it must return a request, or raise `MalformedFrame` or
`UnsupportedVersion` — never anything else, never hang. Valid frames are
built by kafka-python's request classes, the way clients build them.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer import FetchRequest, JoinGroupRequest, OffsetCommitRequest
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest
from kafka.protocol.producer import EndTxnRequest, EndTxnResponse, ProduceRequest

from raftka.node.kafka.apis import API_TABLE
from raftka.node.kafka.forwarding import FORWARDED_PREFIX, relayed_frame
from raftka.node.kafka.frames import MalformedFrame, UnsupportedVersion, decode_request, frame_size
from raftka.node.kafka.handlers import HANDLERS, unsupported_version_response
from raftka.storage import Record, encode_batch, validate_batch


def _frame(message, correlation_id: int = 7, client_id: str | None = "test-client") -> bytes:
    message.with_header(correlation_id=correlation_id, client_id=client_id)
    return bytes(message.encode(header=True))


def _produce(version: int = 9) -> bytes:
    t = ProduceRequest.TopicProduceData
    batch = encode_batch([Record(b"k", b"v")])
    return _frame(ProduceRequest(version=version, acks=-1, timeout_ms=1000, topic_data=[
        t(name="orders", partition_data=[t.PartitionProduceData(index=2, records=batch)])]))


def _fetch(version: int = 12) -> bytes:
    t = FetchRequest.FetchTopic
    return _frame(FetchRequest(version=version, replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=1 << 20,
                               isolation_level=0, session_id=0, session_epoch=-1, topics=[
                                   t(topic="orders", partitions=[t.FetchPartition(partition=0, fetch_offset=5,
                                                                                  partition_max_bytes=1 << 20)])],
                               forgotten_topics_data=[], rack_id=""))


VALID_FRAMES = [
    _produce(3), _produce(9), _fetch(4), _fetch(12),
    _frame(ApiVersionsRequest(version=3, client_software_name="x", client_software_version="1")),
    _frame(MetadataRequest(version=12, topics=None, allow_auto_topic_creation=False,
                           include_topic_authorized_operations=False)),
    _frame(JoinGroupRequest(version=7, group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=30000,
                            member_id="", protocol_type="consumer",
                            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"m")])),
    _frame(OffsetCommitRequest(version=8, group_id="g", generation_id_or_member_epoch=1, member_id="m",
                               topics=[])),
]


def test_every_served_api_has_a_handler_and_the_versions_kafka_python_can_decode():
    assert set(HANDLERS) == set(API_TABLE)
    for spec in API_TABLE.values():
        assert 0 <= spec.min_version <= spec.max_version <= spec.request.max_version, spec.name


def test_valid_frames_decode_with_their_header():
    request = decode_request(_produce(9))
    assert (request.api.name, request.api_version, request.correlation_id, request.client_id) == (
        "Produce", 9, 7, "test-client")
    partition = request.body.topic_data[0].partition_data[0]
    assert partition.index == 2 and validate_batch(partition.records).record_count == 1
    fetch = decode_request(_fetch(12)).body
    assert (fetch.topics[0].topic, fetch.topics[0].partitions[0].fetch_offset) == ("orders", 5)


def test_frame_size_limits():
    assert frame_size(struct.pack(">i", 100), 1000) == 100
    for size, reason in ((0, "size"), (-5, "size"), (1001, "too_large")):
        with pytest.raises(MalformedFrame) as info:
            frame_size(struct.pack(">i", size), 1000)
        assert info.value.reason == reason


def test_unknown_api_is_malformed_and_unserved_versions_are_answered():
    with pytest.raises(MalformedFrame) as info:
        decode_request(struct.pack(">hhih", 999, 0, 1, -1))
    assert info.value.reason == "unknown_api"
    with pytest.raises(UnsupportedVersion) as unsupported:
        decode_request(_frame(ApiVersionsRequest(version=4, client_software_name="x", client_software_version="1")))
    answer = unsupported_version_response(unsupported.value)
    response = ApiVersionsResponse.decode(answer[4:], version=0, header=True)
    assert response.header.correlation_id == 7 and response.error_code == 35
    assert {k.api_key for k in response.api_keys} == set(API_TABLE)
    # Transactions are not served: EndTxn is answered UNSUPPORTED_VERSION (its response has an error code).
    with pytest.raises(UnsupportedVersion) as unsupported:
        decode_request(_frame(EndTxnRequest(version=1, transactional_id="t", producer_id=1, producer_epoch=0,
                                            committed=True)))
    answer = unsupported_version_response(unsupported.value)
    assert EndTxnResponse.decode(answer[4:], version=1, header=True).error_code == 35


def test_a_relayed_frame_marks_the_client_id_and_keeps_the_body():
    for frame in (_produce(9), _fetch(4), _frame(MetadataRequest(version=1, topics=None), client_id=None)):
        relayed = relayed_frame(frame)
        assert struct.unpack(">i", relayed[:4])[0] == len(relayed) - 4
        original, again = decode_request(frame), decode_request(relayed[4:])
        assert again.client_id == FORWARDED_PREFIX + (original.client_id or "")
        assert again.body == original.body and again.correlation_id == original.correlation_id


def _check(frame: bytes) -> None:
    try:
        decode_request(frame)
    except (MalformedFrame, UnsupportedVersion):
        pass


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_break_the_decoder(data):
    _check(data)


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_truncated_frames_are_malformed(frame, data):
    cut = data.draw(st.integers(0, len(frame) - 1))
    _check(frame[:cut])


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_bit_flipped_frames_never_break_the_decoder(frame, data):
    flips = data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), min_size=1, max_size=8))
    mutated = bytearray(frame)
    for bit in flips:
        mutated[bit // 8] ^= 1 << (bit % 8)
    _check(bytes(mutated))


@FUZZ
@given(st.sampled_from(list(API_TABLE.values())), st.integers(-2, 20), st.binary(max_size=200))
def test_known_api_keys_with_random_bodies(spec, version, body):
    _check(struct.pack(">hhih", spec.key, version, 1, 4) + b"test" + body)
