"""Fetch, for every front end: committed records of a partition, read by its leader under the lease.

`read` answers the stored RecordBatch v2 bytes unchanged (a front end
decodes them only if its format needs records), bounded by the high
watermark, so a consumer never sees an uncommitted record. With `wait_ms`,
a read at the high watermark long-polls until data is applied or the wait
ends. An offset outside [log start, high watermark] is `OffsetOutOfRange`.
When another broker leads the partition, `ServedElsewhere` names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftka.node.cluster.broker import Broker
from raftka.node.errors import OffsetOutOfRange
from raftka.node.services.routing import serve_partition_here
from raftka.raft import canary
from raftka.storage import iter_batches, iter_records
from raftka.storage.errors import OffsetOutOfRangeError

SCAN_BYTES = 1 << 20  # read size while looking for a timestamp


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Whole stored batches from the one holding `offset` (it may start before it), and the partition's bounds."""

    data: bytes
    high_watermark: int
    log_start_offset: int


class FetchService:
    def __init__(self, broker: Broker):
        self.broker = broker

    async def read(self, topic: str, partition: int, offset: int, max_bytes: int, wait_ms: int) -> FetchResult:
        broker = self.broker
        if not (canary.enabled("follower-reads") and (topic, partition) in broker.partitions):
            await serve_partition_here(broker, topic, partition)
        sm = broker.local_partition(topic, partition).sm
        if offset >= sm.high_watermark and wait_ms:
            await sm.wait_beyond(offset, wait_ms / 1000)
            broker.local_partition(topic, partition)  # still the leader after waiting?
        hw, start = sm.high_watermark, sm.log_start_offset
        if offset < start or offset > hw:
            raise OffsetOutOfRange(topic, partition, offset, start, hw)
        try:
            data = sm.log.read(offset, max_bytes, max_offset=hw).data if offset < hw else b""
        except OffsetOutOfRangeError:
            raise OffsetOutOfRange(topic, partition, offset, sm.log_start_offset, sm.high_watermark) from None
        return FetchResult(data, hw, start)

    async def offset_for_timestamp(self, topic: str, partition: int, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first committed record whose timestamp is >= `timestamp` (Kafka's
        ListOffsets by time), or None when there is none. Skips whole segments, then whole batches, by their
        largest timestamp; decodes only the batch that holds the answer."""
        await serve_partition_here(self.broker, topic, partition)
        sm = self.broker.local_partition(topic, partition).sm
        hw, log = sm.high_watermark, sm.log
        candidates = [s.base_offset for s in log.segments() if s.max_timestamp >= timestamp]
        position = max(candidates[0], sm.log_start_offset) if candidates else hw
        while position < hw:
            try:
                result = log.read(position, SCAN_BYTES, max_offset=hw)
            except OffsetOutOfRangeError:  # retention moved the log start meanwhile
                position = max(position, sm.log_start_offset)
                continue
            for header, batch in iter_batches(result.data):
                if header.max_timestamp >= timestamp:
                    for record in iter_records(batch, start_offset=position):
                        if record.timestamp >= timestamp:
                            return record.offset, record.timestamp
            position = max(result.next_offset, position + 1)
        return None

    async def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start offset, high watermark) of the partition, as its leader sees them."""
        await serve_partition_here(self.broker, topic, partition)
        sm = self.broker.local_partition(topic, partition).sm
        return sm.log_start_offset, sm.high_watermark


__all__ = ["FetchResult", "FetchService"]
