"""Produce, for every front end: partition choice, batch checks, and committing a batch on the partition leader.

The rules live here once:

* a record goes to its explicit partition, else Kafka's murmur2 of its key
  (the partition Kafka's Java client picks), else round robin per topic;
* a batch over the topic's ``max.message.bytes`` is refused (41302) before
  anything is proposed or forwarded; a batch a client sent as bytes must be a
  valid RecordBatch v2 (42206);
* the partition leader proposes the batch through the partition's Raft
  group; the partition state machine's refusals (sequence out of order,
  fenced epoch, corrupt batch) become `ProduceRejected` with raftka's codes;
* a committed batch is counted in the traffic metrics (`traffic`), once, by
  the leader that committed it (not again when an idempotent retry is
  answered with its original offsets).

When the batch belongs on another broker, `append` raises `ServedElsewhere`
(routing.py) after the checks; the front end forwards it or tells the client.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from raftka.client.partitioner import partition_for_key
from raftka.node.cluster.broker import Broker
from raftka.node.cluster.topics import parse_topic_configs
from raftka.node.errors import ApiError, InvalidRequest, RecordTooLarge
from raftka.node.services.routing import serve_partition_here
from raftka.node.services.traffic import TrafficMetrics
from raftka.raft.partition import ProduceError
from raftka.storage import CorruptBatchError, InvalidRecordError, Record, encode_batch, validate_batch
from raftka.storage.errors import StorageError


class ProduceRejected(ApiError):
    """The partition refused the batch: 40907 sequence out of order, 40908 fenced producer epoch,
    42206 corrupt or invalid batch (codes in raftka's range of the REST Proxy scheme)."""

    def __init__(self, error_code: int, message: str, produce_error: ProduceError = ProduceError.INVALID_REQUEST):
        super().__init__(message)
        self.error_code = error_code
        self.http_status = error_code // 100
        self.produce_error = produce_error  # the partition's own verdict (a Kafka error code)


PRODUCE_ERROR_CODES = {
    ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER: 40907,
    ProduceError.INVALID_PRODUCER_EPOCH: 40908,
    ProduceError.CORRUPT_MESSAGE: 42206,
    ProduceError.INVALID_RECORD: 42206,
    ProduceError.INVALID_REQUEST: 42206,
}


@dataclass(frozen=True, slots=True)
class ProduceAck:
    """A committed batch: its partition and offsets; `duplicate` when an idempotent retry matched a stored batch."""

    partition: int
    base_offset: int
    last_offset: int
    duplicate: bool

    def as_dict(self) -> dict:
        return {"partition": self.partition, "base_offset": self.base_offset, "last_offset": self.last_offset,
                "duplicate": self.duplicate}


def encode_records(records: Iterable[Record], producer_id: int | None = None, producer_epoch: int | None = None,
                   base_sequence: int | None = None) -> bytes:
    """One RecordBatch v2 of `records`; the producer fields are -1 when not idempotent."""
    return encode_batch(list(records),
                        producer_id=-1 if producer_id is None else producer_id,
                        producer_epoch=-1 if producer_epoch is None else producer_epoch,
                        base_sequence=-1 if base_sequence is None else base_sequence)


class ProduceService:
    def __init__(self, broker: Broker, traffic: TrafficMetrics):
        self.broker = broker
        self.traffic = traffic
        self._round_robin: dict[str, itertools.count] = defaultdict(itertools.count)  # null-key spreading per topic
        self._limits: dict[str, tuple[object, int]] = {}  # topic -> (its configs, max.message.bytes from them)

    def partition_records(self, topic: str, records: Sequence[tuple[int | None, bytes | None]]) -> dict[int, list[int]]:
        """Record indexes by partition, for records given as (explicit partition or None, key or None)."""
        count = len(self.broker.topic(topic)["partitions"])
        spread = itertools.count(next(self._round_robin[topic]))
        by_partition: dict[int, list[int]] = defaultdict(list)
        for i, (partition, key) in enumerate(records):
            if partition is not None:
                if partition >= count:
                    raise InvalidRequest(f"Record {i}: partition {partition} does not exist; topic '{topic}' has "
                                         f"{count} partitions.")
                p = partition
            elif key is not None:
                p = partition_for_key(key, count)
            else:
                p = next(spread) % count
            by_partition[p].append(i)
        return by_partition

    def max_message_bytes(self, topic: str) -> int:
        configs = self.broker.topic(topic)["configs"]
        known = self._limits.get(topic)
        if known is None or known[0] is not configs:  # the metadata replaces a topic's configs when they change
            known = self._limits[topic] = (
                configs, parse_topic_configs(configs, self.broker.config.topic_defaults).max_message_bytes)
        return known[1]

    async def append(self, topic: str, partition: int, batch: bytes, timeout_s: float, *,
                     validate: bool = False, on_proposing: Callable[[], None] | None = None) -> ProduceAck:
        """Check `batch` (size; with `validate`, its RecordBatch v2 framing and CRC) and commit it on this broker,
        the partition's leader; raises `ServedElsewhere` when another broker must take it. `on_proposing` is
        called just before the batch is handed to the partition's Raft group, with no await in between: a batch
        whose append starts after that call is proposed after this one (how a front end pipelines appends to
        one partition and keeps their order). A committed batch is counted in the traffic metrics here."""
        started = time.monotonic()
        limit = self.max_message_bytes(topic)
        if len(batch) > limit:
            raise RecordTooLarge(f"Batch for {topic}/{partition} is {len(batch)} bytes; max.message.bytes of "
                                 f"'{topic}' is {limit}.")
        if validate:
            try:
                validate_batch(batch)
            except (CorruptBatchError, InvalidRecordError, StorageError, ValueError) as exc:
                raise InvalidRequest(f"Batch is not a valid RecordBatch v2: {exc}") from None
        await serve_partition_here(self.broker, topic, partition)
        if on_proposing is not None:
            on_proposing()
        result = await self.broker.produce(topic, partition, batch, timeout_s)
        if not result.ok:
            raise ProduceRejected(PRODUCE_ERROR_CODES.get(result.error, 42206), result.error_message, result.error)
        if not result.duplicate:
            self.traffic.produced(topic, result.last_offset - result.base_offset + 1, len(batch),
                                  time.monotonic() - started)
        return ProduceAck(partition, result.base_offset, result.last_offset, result.duplicate)


__all__ = ["PRODUCE_ERROR_CODES", "ProduceAck", "ProduceRejected", "ProduceService", "encode_records"]
