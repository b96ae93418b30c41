"""ListOffsets: earliest (-2), latest (-1, the high watermark) and by timestamp, from `FetchService`.

A timestamp at or above 0 answers the first offset from the log start on whose
record timestamp is at least that (with the record's timestamp), or -1 when no
record is that recent, as Kafka does. read_committed and read_uncommitted are the same:
raftka has no transactions, and only committed records are ever served.
Versions stop at 6: the max-timestamp spec (-3, v7) is not served. DESCRIBE on
the topic is needed (TOPIC_AUTHORIZATION_FAILED otherwise).
"""

from __future__ import annotations

from typing import Any

from kafka.protocol.consumer import ListOffsetsResponse

from raftka.node.errors import ApiError
from raftka.node.kafka.access import authorize
from raftka.node.kafka.errors import ErrorCode, error_code
from raftka.node.security.acl import Operation, Resource

_Topic = ListOffsetsResponse.ListOffsetsTopicResponse
_Partition = _Topic.ListOffsetsPartitionResponse
EARLIEST, LATEST = -2, -1


async def list_offsets(conn: Any, request: Any) -> Any:
    service = conn.server.services.fetch
    topics = []
    for t in request.body.topics:
        parts = []
        for p in t.partitions:
            code, offset, timestamp = await _one(conn, service, t.name, p.partition_index, p.timestamp)
            parts.append(_Partition(partition_index=p.partition_index, error_code=code, timestamp=timestamp,
                                    offset=offset, leader_epoch=-1))
        topics.append(_Topic(name=t.name, partitions=parts))
    return ListOffsetsResponse(version=request.api_version, throttle_time_ms=0, topics=topics)


async def _one(conn: Any, service: Any, topic: str, partition: int, timestamp: int) -> tuple[int, int, int]:
    """(error code, offset, timestamp) for one partition."""
    try:
        await authorize(conn, Operation.DESCRIBE, Resource.topic(topic))
        if timestamp in (EARLIEST, LATEST):
            start, end = await service.offsets(topic, partition)
            return ErrorCode.NONE, start if timestamp == EARLIEST else end, -1
        if timestamp < 0:
            return ErrorCode.INVALID_REQUEST, -1, -1
        found = await service.offset_for_timestamp(topic, partition, timestamp)
    except ApiError as exc:
        return error_code(exc), -1, -1
    if found is None:
        return ErrorCode.NONE, -1, -1  # no record that recent
    return ErrorCode.NONE, found.offset, found.timestamp


__all__ = ["list_offsets"]
