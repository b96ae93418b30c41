"""Idempotent-producer state of one partition: per producer id, its epoch and last 5 batches.

The partition state machine asks `ProducerTable.check` before appending a batch that carries a
producer id (>= 0) and calls `record` after appending it. The rules follow Kafka (>= 2.5):

* epoch lower than the known one -> `ProducerFencedError` (INVALID_PRODUCER_EPOCH);
* same epoch and the batch's sequence range (first, last) equals one of the last 5 appended
  batches -> a duplicate: `check` returns that batch, whose offsets are the original ones;
* same epoch and first sequence = last sequence + 1 (wrapping from 2**31-1 to 0) -> append;
* higher epoch -> append only if the batch starts at sequence 0 (the state then restarts);
* unknown producer id -> append, whatever the first sequence (Kafka >= 2.5 semantics, KIP-360):
  a producer whose state was evicted keeps working instead of failing forever;
* anything else -> `OutOfOrderSequenceError` naming the expected and the received sequence.

The table holds at most `max_producers` ids; appending for a new id beyond that evicts the id
that appended least recently. Everything here is derived only from the applied batches (never
from time, retention or local configuration other than the group-wide `max_producers`), so
every replica computes the same table; it is saved in the partition checkpoint (`to_json`) and
shipped in the snapshot stream.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

INT32_MAX = (1 << 31) - 1
CACHED_BATCHES = 5  # Kafka's max.in.flight.requests.per.connection limit for idempotence


class ProducerStateError(Exception):
    """A batch's producer epoch or sequence does not fit the producer's state."""


class ProducerFencedError(ProducerStateError):
    """The batch comes from an older epoch of the producer id than one already seen."""


class OutOfOrderSequenceError(ProducerStateError):
    """The batch's first sequence is neither the next expected one nor a recent duplicate."""


class CachedBatch(NamedTuple):
    """One appended batch of a producer: its sequence range and the offsets it got."""

    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int


def last_sequence(first_seq: int, record_count: int) -> int:
    """Sequence of the last record of a batch; sequences wrap from 2**31-1 to 0 as in Kafka."""
    return (first_seq + record_count - 1) % (INT32_MAX + 1)


def next_sequence(seq: int) -> int:
    return 0 if seq == INT32_MAX else seq + 1


class _Producer:
    __slots__ = ("epoch", "batches")

    def __init__(self, epoch: int, batches: deque[CachedBatch]):
        self.epoch = epoch
        self.batches = batches


class ProducerTable:
    """Producer id -> (epoch, last 5 batches), ordered from least to most recently appended."""

    def __init__(self, max_producers: int):
        if max_producers < 1:
            raise ValueError(f"max_producers must be >= 1, got {max_producers}")
        self.max_producers = max_producers
        self._producers: dict[int, _Producer] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def check(self, producer_id: int, epoch: int, first_seq: int, last_seq: int) -> CachedBatch | None:
        """None if the batch may be appended, the original batch if it is a duplicate; raises otherwise."""
        producer = self._producers.get(producer_id)
        if producer is None:
            return None
        if epoch < producer.epoch:
            raise ProducerFencedError(
                f"producer {producer_id} epoch {epoch} is fenced: epoch {producer.epoch} has already written")
        if epoch > producer.epoch:
            if first_seq != 0:
                raise OutOfOrderSequenceError(
                    f"producer {producer_id} new epoch {epoch} must start at sequence 0, got {first_seq}")
            return None
        for batch in producer.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return batch
        expected = next_sequence(producer.batches[-1].last_seq)
        if first_seq != expected:
            raise OutOfOrderSequenceError(
                f"producer {producer_id} epoch {epoch}: expected sequence {expected}, got {first_seq}")
        return None

    def record(self, producer_id: int, epoch: int, batch: CachedBatch) -> None:
        """Remember an appended batch (after `check` allowed it)."""
        producer = self._producers.pop(producer_id, None)
        if producer is None or producer.epoch != epoch:
            producer = _Producer(epoch, deque(maxlen=CACHED_BATCHES))
        producer.batches.append(batch)
        self._producers[producer_id] = producer  # re-inserted: now the most recently appended
        while len(self._producers) > self.max_producers:
            del self._producers[next(iter(self._producers))]

    def to_json(self) -> list:
        """[[producer_id, epoch, [[first_seq, last_seq, base_offset, last_offset], ...]], ...], oldest first."""
        return [[pid, p.epoch, [list(b) for b in p.batches]] for pid, p in self._producers.items()]

    @classmethod
    def from_json(cls, doc: object, max_producers: int) -> ProducerTable:
        """Inverse of to_json; raises ValueError naming what is malformed."""
        table = cls(max_producers)
        if not isinstance(doc, list):
            raise ValueError(f"producer state must be a list, got {type(doc).__name__}")
        for item in doc:
            try:
                pid, epoch, batches = item
                cached = deque((CachedBatch(*map(_int, b)) for b in batches), maxlen=CACHED_BATCHES)
                if not cached or len(cached) != len(batches):
                    raise ValueError(f"1 to {CACHED_BATCHES} batches expected")
                table._producers[_int(pid)] = _Producer(_int(epoch), cached)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"malformed producer entry {item!r}: {exc}") from None
        while len(table._producers) > max_producers:
            del table._producers[next(iter(table._producers))]
        return table


def _int(value: object) -> int:
    if type(value) is not int:
        raise ValueError(f"{value!r} is not an integer")
    return value
