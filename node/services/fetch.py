"""Fetch, for every front end: committed records of a partition, read by its leader under the lease.

`read` answers the stored RecordBatch v2 bytes unchanged (a front end
decodes them only if its format needs records), bounded by the high
watermark, so a consumer never sees an uncommitted record. With `wait_ms`,
a read at the high watermark long-polls until data is applied or the wait
ends (`wait` only waits). An offset outside [log start, high watermark] is
`OffsetOutOfRange`; the log start moves with retention and deleted records
(`DeleteRecordsService`). When another broker leads the partition,
`ServedElsewhere` names it. What `read` serves is counted in the traffic
metrics, once, on the leader.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftka.node.cluster.broker import Broker
from raftka.node.errors import OffsetOutOfRange
from raftka.node.services.routing import serve_partition_here
from raftka.node.services.traffic import TrafficMetrics
from raftka.raft import canary
from raftka.storage import TimestampMatch
from raftka.storage.errors import OffsetOutOfRangeError


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Whole stored batches from the one holding `offset` (it may start before it), and the partition's bounds."""

    data: bytes
    high_watermark: int
    log_start_offset: int
    next_offset: int  # after the last record returned (`offset` when none)


class FetchService:
    def __init__(self, broker: Broker, traffic: TrafficMetrics):
        self.broker = broker
        self.traffic = traffic

    async def read(self, topic: str, partition: int, offset: int, max_bytes: int, wait_ms: int) -> FetchResult:
        broker = self.broker
        if not (canary.enabled("follower-reads") and (topic, partition) in broker.partitions):
            await serve_partition_here(broker, topic, partition)
        sm = broker.local_partition(topic, partition).sm
        if offset >= sm.high_watermark and wait_ms:
            await self._wait(topic, partition, offset, wait_ms)
        hw, start = sm.high_watermark, sm.log_start_offset
        if offset < start or offset > hw:
            raise OffsetOutOfRange(topic, partition, offset, start, hw)
        try:
            read = sm.log.read(offset, max_bytes, max_offset=hw) if offset < hw else None
        except OffsetOutOfRangeError:
            raise OffsetOutOfRange(topic, partition, offset, sm.log_start_offset, sm.high_watermark) from None
        if read is None:
            return FetchResult(b"", hw, start, offset)
        self.traffic.fetched(topic, read.next_offset - offset, len(read.data))
        return FetchResult(read.data, hw, start, read.next_offset)

    async def wait(self, topic: str, partition: int, offset: int, wait_ms: int) -> None:
        """Return once the partition has committed records at or past `offset`, or after `wait_ms` (a long poll
        that reads nothing: the front end reads afterwards)."""
        await serve_partition_here(self.broker, topic, partition)
        if offset >= self.broker.local_partition(topic, partition).sm.high_watermark:
            await self._wait(topic, partition, offset, wait_ms)

    async def _wait(self, topic: str, partition: int, offset: int, wait_ms: int) -> None:
        await self.broker.local_partition(topic, partition).sm.wait_beyond(offset, wait_ms / 1000)
        self.broker.local_partition(topic, partition)  # still the leader after waiting?

    async def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start offset, high watermark) of the partition, as its leader sees them."""
        await serve_partition_here(self.broker, topic, partition)
        sm = self.broker.local_partition(topic, partition).sm
        return sm.log_start_offset, sm.high_watermark

    async def offset_for_timestamp(self, topic: str, partition: int, timestamp: int) -> TimestampMatch | None:
        """The first committed record from the log start on whose timestamp is >= `timestamp`, as (offset,
        timestamp); None when no record is that recent (Kafka's ListOffsets by time)."""
        await serve_partition_here(self.broker, topic, partition)
        sm = self.broker.local_partition(topic, partition).sm
        return sm.log.offset_for_timestamp(timestamp, min_offset=sm.log_start_offset, max_offset=sm.high_watermark)


__all__ = ["FetchResult", "FetchService"]
