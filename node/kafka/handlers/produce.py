"""Produce and InitProducerId: record batches go to `ProduceService` as the client sent them.

Each partition's batch is checked and committed by `ProduceService.append`
(max.message.bytes, RecordBatch v2 framing and CRC, Raft commit on the
partition leader); the bytes are stored as they came. acks=1 and acks=-1
both answer after a quorum committed the batch (raftka always replicates
before answering); acks=0 gets no answer. Appends to one partition from one
connection are proposed in the order they came, pipelined
(`connection.ProduceLanes`).

Idempotence is the partition's producer table (`raft/partition_producers.py`)
applied to the producer id, epoch and base sequence in the batch header: a
retried batch answers success with its original offsets, a sequence gap
OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch INVALID_PRODUCER_EPOCH. Producer
ids come from the metadata group (InitProducerId, relayed to its leader;
COORDINATOR_LOAD_IN_PROGRESS, which clients retry, while none can be had).
Produce needs WRITE on each topic (TOPIC_AUTHORIZATION_FAILED per partition
otherwise); InitProducerId IDEMPOTENT_WRITE on the cluster or WRITE on some
topic (CLUSTER_AUTHORIZATION_FAILED otherwise), as in Kafka.
Transactions are not supported: a transactional id answers
UNSUPPORTED_VERSION (InitProducerId) or INVALID_REQUEST (Produce).
Compressed batches answer UNSUPPORTED_COMPRESSION_TYPE: raftka stores and
serves batches uncompressed (set compression.type=none, the default of
kafka-python, aiokafka and librdkafka).
"""

from __future__ import annotations

import asyncio
from typing import Any

from kafka.protocol.producer import InitProducerIdResponse, ProduceResponse

from raftka.node.errors import ApiError, InvalidRequest
from raftka.node.kafka.access import allowed, authorize, denied_unless_any_topic
from raftka.node.kafka.errors import ErrorCode, error_code
from raftka.node.kafka.handlers.raw import RawResponse
from raftka.node.security.acl import Operation, Resource
from raftka.node.services.produce import ProduceRejected
from raftka.node.services.routing import ServedElsewhere

_Topic = ProduceResponse.TopicProduceResponse
_Partition = _Topic.PartitionProduceResponse
_ATTRIBUTES_AT = 21  # offset of the int16 attributes in a RecordBatch v2 header
_COMPRESSION_MASK = 0x07
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1.0, 60.0


async def produce(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version
    timeout_s = min(max(body.timeout_ms / 1000, MIN_TIMEOUT_S), MAX_TIMEOUT_S)
    transactional = body.transactional_id is not None
    jobs = [[(p.index, _append(conn, t.name, p.index, p.records, timeout_s, transactional)) for p in t.partition_data]
            for t in body.topic_data]
    results = await asyncio.gather(*(job for topic in jobs for _, job in topic))
    if body.acks == 0:
        return None
    answers, flat = [], iter(results)
    for t, topic_jobs in zip(body.topic_data, jobs):
        parts = []
        for index, _ in topic_jobs:
            code, base_offset, message = next(flat)
            parts.append(_Partition(index=index, error_code=code, base_offset=base_offset, log_append_time_ms=-1,
                                    log_start_offset=-1, record_errors=[], error_message=message))
        answers.append(_Topic(name=t.name, partition_responses=parts))
    return ProduceResponse(version=version, responses=answers, throttle_time_ms=0)


async def _append(conn: Any, topic: str, partition: int, records: bytes | None, timeout_s: float,
                  transactional: bool) -> tuple[int, int, str | None]:
    """(error code, base offset, error message) of one partition's batch."""
    if transactional:
        return ErrorCode.INVALID_REQUEST, -1, "raftka does not support transactions"
    if not records:
        return ErrorCode.CORRUPT_MESSAGE, -1, "no record batch"
    if len(records) > _ATTRIBUTES_AT + 1 and int.from_bytes(records[_ATTRIBUTES_AT:_ATTRIBUTES_AT + 2],
                                                            "big") & _COMPRESSION_MASK:
        return ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, -1, "raftka stores batches uncompressed: use compression none"
    services = conn.server.services
    try:
        await authorize(conn, Operation.WRITE, Resource.topic(topic))
        await services.topics.catch_up(topic)
        ack = await conn.lanes.in_order(topic, partition, lambda proposing: services.produce.append(
            topic, partition, records, timeout_s, validate=True, on_proposing=proposing))
    except ProduceRejected as exc:
        return exc.produce_error, -1, exc.message
    except InvalidRequest as exc:  # the batch is not a valid RecordBatch v2 (framing, CRC, records)
        return ErrorCode.CORRUPT_MESSAGE, -1, exc.message
    except ApiError as exc:
        return error_code(exc), -1, exc.message
    return ErrorCode.NONE, ack.base_offset, None


async def init_producer_id(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version

    def answer(code: int, producer_id: int = -1, epoch: int = -1) -> Any:
        return InitProducerIdResponse(version=version, throttle_time_ms=0, error_code=code, producer_id=producer_id,
                                      producer_epoch=epoch)

    if body.transactional_id is not None:
        return answer(ErrorCode.UNSUPPORTED_VERSION)
    if not allowed(conn, Operation.IDEMPOTENT_WRITE, Resource.cluster()) and \
            (refused := await denied_unless_any_topic(conn, Operation.WRITE)) is not None:
        return answer(refused)
    # No id now (no metadata leader, or it did not answer): COORDINATOR_LOAD_IN_PROGRESS, as Kafka answers while
    # its producer id block is pending. Clients retry it as it is; a coordinator error would send kafka-python
    # to look up a transaction coordinator for a null transactional id, which fails its producer for good.
    try:
        return answer(ErrorCode.NONE, await conn.server.services.topics.allocate_producer_id(), 0)
    except ServedElsewhere as elsewhere:
        relayed = await conn.server.relay.relay(request, elsewhere.leader_id)
        return RawResponse(relayed) if relayed is not None else answer(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
    except ApiError as exc:
        return answer(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if exc.retriable else error_code(exc))


__all__ = ["init_producer_id", "produce"]
