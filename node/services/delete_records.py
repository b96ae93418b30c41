"""Deleting records, for every front end: Kafka's DeleteRecords, as a move of the partition's log start offset.

`delete_before(topic, partition, offset)` makes `offset` the partition's
first readable offset. The partition leader proposes it through the
partition's Raft group, so every replica applies it at the same point of its
log (`raft/partition.py`); a fetch below it is then OffsetOutOfRange (Kafka's
OFFSET_OUT_OF_RANGE, the REST API's 416) naming the new earliest offset, and
segments wholly below it are deleted at each replica's next checkpoint.
Kafka's rules: -1 means the high watermark; an offset above the high
watermark (or below -1) is `OffsetOutOfRange`; an offset at or below the
current log start changes nothing. The answer is the low watermark: the log
start offset after the deletion. When another broker leads the partition,
`ServedElsewhere` names it.
"""

from __future__ import annotations

from raftka.node.cluster.broker import Broker
from raftka.node.errors import InvalidRequest, OffsetOutOfRange
from raftka.node.services.routing import serve_partition_here

HIGH_WATERMARK = -1  # Kafka's "delete everything committed so far"


class DeleteRecordsService:
    def __init__(self, broker: Broker):
        self.broker = broker

    async def delete_before(self, topic: str, partition: int, offset: object, timeout_s: float) -> int:
        """Delete the partition's records below `offset` (-1: the high watermark); returns the new log start."""
        if type(offset) is not int:
            raise InvalidRequest(f"The offset to delete records before must be an integer, got {offset!r}.")
        await serve_partition_here(self.broker, topic, partition)
        sm = self.broker.local_partition(topic, partition).sm
        start, hw = sm.log_start_offset, sm.high_watermark
        if offset == HIGH_WATERMARK:
            offset = hw
        if not 0 <= offset <= hw:
            raise OffsetOutOfRange(topic, partition, offset, start, hw)
        if offset <= start:
            return start  # nothing to delete: no need to ask the replicas
        result = await self.broker.delete_records(topic, partition, offset, timeout_s)
        if not result.ok:  # the log ended below it when applied: cannot happen after the check above
            raise OffsetOutOfRange(topic, partition, offset, sm.log_start_offset, sm.high_watermark)
        return max(result.deleted_before, sm.log_start_offset)


__all__ = ["DeleteRecordsService"]
