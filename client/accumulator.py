"""Per-partition record batching for the producer: ``linger_ms``, ``batch_size``, readiness, flush.

Pure bookkeeping (time is passed in). Each partition has a FIFO of batches;
only the oldest may be sent, and the producer sends at most one batch per
partition at a time (``busy``), which keeps records in send order without
relying on the broker to reorder. A batch is *ready* when it is full (its
bytes reached ``batch_size``, or a newer batch exists behind it), when its
``linger`` has passed since its first record, or while a flush or close is in
progress. A record larger than ``batch_size`` travels alone in its own batch.

While a partition's batch is in flight, new records keep filling the next
batch, so batches grow by themselves under load and shrink to one record
when idle - no tuning needed for either extreme.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterator, Sequence
from typing import Any

from raftka.client.structs import TopicPartition
from raftka.storage import Record

__all__ = ["BATCH_OVERHEAD", "ProducerBatch", "RecordAccumulator", "record_size"]

BATCH_OVERHEAD = 61  # RecordBatch v2 header
_RECORD_OVERHEAD = 21  # worst-case varints (length, timestamp delta, offset delta, key/value lengths, headers)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """Upper estimate of a record's encoded size in a batch."""
    size = _RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
    for name, hvalue in headers:
        size += 10 + len(name) * 4 + (len(hvalue) if hvalue else 0)  # *4: UTF-8 worst case
    return size


class ProducerBatch:
    """Records bound for one partition, sent (and retried) as one RecordBatch.

    ``futures[i]`` is completed with record i's metadata or error. Once the batch
    is first sent, ``payload`` (the encoded bytes, with the identity and
    sequence in its header) is fixed: retries resend exactly these bytes.
    """

    __slots__ = (
        "attempts",
        "base_sequence",
        "created",
        "futures",
        "identity",
        "maybe_written",
        "payload",
        "records",
        "renumbered",
        "serial",
        "size",
        "tp",
    )

    def __init__(self, tp: TopicPartition, serial: int, created: float) -> None:
        self.tp = tp
        self.serial = serial  # creation order; split halves keep their parent's
        self.created = created
        self.records: list[Record] = []
        self.futures: list[Any] = []
        self.size = BATCH_OVERHEAD
        self.payload: bytes | None = None
        self.identity: Any = None
        self.base_sequence = -1
        self.attempts = 0
        self.maybe_written = False
        self.renumbered = False

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: Record, size: int, future: Any) -> None:
        self.records.append(record)
        self.futures.append(future)
        self.size += size

    def split(self) -> tuple[ProducerBatch, ProducerBatch]:
        """Two batches with the first and second half of the records (unsent: no payload)."""
        middle = len(self.records) // 2
        halves = []
        for part in (slice(0, middle), slice(middle, None)):
            half = ProducerBatch(self.tp, self.serial, self.created)
            half.records = self.records[part]
            half.futures = self.futures[part]
            half.size = BATCH_OVERHEAD + (self.size - BATCH_OVERHEAD) * len(half.records) // len(self.records)
            halves.append(half)
        return halves[0], halves[1]


class RecordAccumulator:
    def __init__(self, batch_size: int, linger_s: float) -> None:
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.flushing = 0  # > 0 while a flush/close wants everything sent now
        self._queues: dict[TopicPartition, deque[ProducerBatch]] = {}
        self._serial = 0

    @property
    def next_serial(self) -> int:
        """Serial the next new batch gets: batches below it existed before this moment."""
        return self._serial

    def append(self, tp: TopicPartition, record: Record, size: int, future: Any, now: float) -> bool:
        """Add a record; True when the sender should look again (a new batch started or one filled up)."""
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._queues[tp] = deque()
        batch = queue[-1] if queue else None
        wake = False
        if batch is None or (batch.records and batch.size + size > self.batch_size):
            batch = ProducerBatch(tp, self._serial, now)
            self._serial += 1
            queue.append(batch)
            wake = True
        batch.add(record, size, future)
        return wake or batch.size >= self.batch_size

    def reenqueue_front(self, batches: Sequence[ProducerBatch]) -> None:
        """Put batches back at the head of their partition's queue, in the given order (split retries)."""
        for batch in reversed(batches):
            self._queues.setdefault(batch.tp, deque()).appendleft(batch)

    def ready(self, now: float, busy: Container[TopicPartition]) -> tuple[list[TopicPartition], float | None]:
        """Partitions whose head batch may be sent now, and the seconds until the next linger expires
        (None: nothing is waiting for time)."""
        ready: list[TopicPartition] = []
        wait: float | None = None
        for tp, queue in self._queues.items():
            if tp in busy:
                continue
            head = queue[0]
            due = head.created + self.linger_s
            if self.flushing or len(queue) > 1 or head.size >= self.batch_size or now >= due:
                ready.append(tp)
            elif wait is None or due - now < wait:
                wait = due - now
        return ready, wait

    def pop(self, tp: TopicPartition) -> ProducerBatch:
        queue = self._queues[tp]
        batch = queue.popleft()
        if not queue:
            del self._queues[tp]
        return batch

    def batches(self) -> Iterator[ProducerBatch]:
        for queue in self._queues.values():
            yield from queue

    def drain_all(self) -> list[ProducerBatch]:
        """Remove and return every batch (used when aborting)."""
        out = list(self.batches())
        self._queues.clear()
        return out

    def __bool__(self) -> bool:
        return bool(self._queues)
