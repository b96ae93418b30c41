"""DeleteRecords: each partition's log start offset moves to the requested offset, through `DeleteRecordsService`.

As in Kafka, the client sends each partition to its leader: a broker that
does not lead one answers NOT_LEADER_OR_FOLLOWER for it (clients refresh
their metadata and retry). Offset -1 means the high watermark; an offset
above the high watermark answers OFFSET_OUT_OF_RANGE. The low watermark
answered is the partition's log start offset after the deletion (-1 with an
error). The partitions of one request are deleted concurrently, each
committed through its partition's Raft group before the answer. DELETE on the
topic is needed (TOPIC_AUTHORIZATION_FAILED otherwise), as in Kafka.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kafka.protocol.admin import DeleteRecordsResponse

from raftka.node.errors import ApiError
from raftka.node.kafka.access import authorize
from raftka.node.kafka.errors import ErrorCode, error_code
from raftka.node.security.acl import Operation, Resource

_Topic = DeleteRecordsResponse.DeleteRecordsTopicResult
_Partition = _Topic.DeleteRecordsPartitionResult
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1.0, 60.0


async def delete_records(conn: Any, request: Any) -> Any:
    body = request.body
    timeout_s = min(max(body.timeout_ms / 1000, MIN_TIMEOUT_S), MAX_TIMEOUT_S)
    services = conn.server.services

    async def one(topic: str, partition: int, offset: int) -> Any:
        try:
            await authorize(conn, Operation.DELETE, Resource.topic(topic))
            await services.topics.catch_up(topic)
            low = await services.delete_records.delete_before(topic, partition, offset, timeout_s)
        except ApiError as exc:
            return _Partition(partition_index=partition, low_watermark=-1, error_code=error_code(exc))
        return _Partition(partition_index=partition, low_watermark=low, error_code=ErrorCode.NONE)

    answers = [asyncio.gather(*(one(t.name, p.partition_index, p.offset) for p in t.partitions)) for t in body.topics]
    results = await asyncio.gather(*answers)
    return DeleteRecordsResponse(version=request.api_version, throttle_time_ms=0,
                                 topics=[_Topic(name=t.name, partitions=list(parts))
                                         for t, parts in zip(body.topics, results)])


__all__ = ["delete_records"]
