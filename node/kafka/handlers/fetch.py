"""Fetch: stored record batches from `FetchService`, sent as they are on disk, with Kafka's long-poll rules.

Every partition is read at once; when the answer holds fewer than min_bytes
and no partition failed, the request waits up to max_wait_ms for any of its
partitions to get new records, then reads again. max_bytes bounds the whole
answer and partition_max_bytes each partition, except that the first
non-empty partition always gets at least one whole batch (KIP-74), so a
consumer never stalls on a batch larger than its limits. A batch may start
before the fetch offset; Kafka clients skip the records below it.

Fetch sessions (KIP-227) are declined: the answer's session id is 0, so
clients keep sending full fetch requests. Errors per partition:
NOT_LEADER_OR_FOLLOWER (clients refresh metadata and go to the leader),
OFFSET_OUT_OF_RANGE (with the valid range in the watermarks),
UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED (READ on the topic is
needed; such partitions are answered at once and the others read as usual).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kafka.protocol.consumer import FetchResponse

from raftka.node.errors import ApiError, OffsetOutOfRange
from raftka.node.kafka.access import denied
from raftka.node.kafka.errors import ErrorCode, error_code
from raftka.node.security.acl import Operation, Resource

_Topic = FetchResponse.FetchableTopicResponse
_Partition = _Topic.PartitionData
MAX_WAIT_MS = 30_000


@dataclass(slots=True)
class _Read:
    topic: str
    partition: int
    offset: int
    max_bytes: int
    error: int = ErrorCode.NONE
    data: bytes = b""
    high_watermark: int = -1
    log_start_offset: int = -1


async def fetch(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version
    service = conn.server.services.fetch
    answered = [_Read(t.topic, p.partition, p.fetch_offset, p.partition_max_bytes)
                for t in body.topics for p in t.partitions]
    refused = {name: await denied(conn, Operation.READ, Resource.topic(name)) for name in {r.topic for r in answered}}
    for r in answered:
        r.error = refused[r.topic] or ErrorCode.NONE
    reads = [r for r in answered if refused[r.topic] is None]
    await _read_all(service, reads, body.max_bytes)
    wait_ms = min(max(body.max_wait_ms, 0), MAX_WAIT_MS)
    if reads and wait_ms and sum(len(r.data) for r in reads) < max(body.min_bytes, 1) and all(
            r.error == ErrorCode.NONE for r in reads):
        await _wait_for_any(service, reads, wait_ms)
        await _read_all(service, reads, body.max_bytes)
    by_topic: dict[str, list[Any]] = {}
    for r in answered:
        by_topic.setdefault(r.topic, []).append(_Partition(
            partition_index=r.partition, error_code=r.error, high_watermark=r.high_watermark,
            last_stable_offset=r.high_watermark, log_start_offset=r.log_start_offset, aborted_transactions=None,
            preferred_read_replica=-1, records=r.data))
    return FetchResponse(version=version, throttle_time_ms=0, error_code=ErrorCode.NONE, session_id=0,
                         responses=[_Topic(topic=t, partitions=parts) for t, parts in by_topic.items()])


async def _read_all(service: Any, reads: list[_Read], max_bytes: int) -> None:
    budget = max_bytes
    for r in reads:
        limit = max(min(r.max_bytes, budget), 1)
        try:
            if budget <= 0:  # the answer is full: only this partition's watermarks
                r.log_start_offset, r.high_watermark = await service.offsets(r.topic, r.partition)
                r.data, r.error = b"", ErrorCode.NONE
                continue
            result = await service.read(r.topic, r.partition, r.offset, limit, 0)
        except OffsetOutOfRange as exc:
            r.error, r.data, r.log_start_offset, r.high_watermark = (ErrorCode.OFFSET_OUT_OF_RANGE, b"",
                                                                     exc.earliest, exc.latest)
            continue
        except ApiError as exc:
            r.error, r.data = error_code(exc), b""
            continue
        r.error, r.data = ErrorCode.NONE, result.data
        r.high_watermark, r.log_start_offset = result.high_watermark, result.log_start_offset
        budget -= len(result.data)


async def _wait_for_any(service: Any, reads: list[_Read], wait_ms: int) -> None:
    """Return when any partition has records past its fetch offset, or after `wait_ms`."""
    waits = [asyncio.ensure_future(service.wait(r.topic, r.partition, r.offset, wait_ms)) for r in reads]
    try:
        await asyncio.wait(waits, timeout=wait_ms / 1000, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


__all__ = ["fetch"]
