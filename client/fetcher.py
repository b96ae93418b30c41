"""Consumer fetching: one long-poll fetch loop per assigned partition, straight to its leader.

Each assigned partition has a ``PartitionState``: its *position* (offset of
the next record ``poll`` returns; None until resolved from the committed
offset or ``auto_offset_reset``), a buffer of fetched records, and the
*fetch offset* (where the next fetch starts: position plus what is buffered).
The partition's fetch loop asks the leader with
``GET /topics/{t}/partitions/{p}/records?offset=&max_bytes=&timeout_ms=`` and
``Accept: application/vnd.raftka.batch``: the broker answers with stored
RecordBatch v2 bytes (possibly starting below the requested offset, possibly
cut off at ``max_bytes``), which ``decode_batches`` checks (CRC-32C) and
decodes here. Fetching pauses while ``max_buffered_records`` are waiting.

Positions move only when ``drain`` hands records to the application, so
records are returned in offset order per partition without gaps. A ``seek``
bumps the partition's *epoch*: answers to fetches started before it are
dropped. Offset out of range (e.g. below the log start after retention)
follows ``auto_offset_reset``: "earliest"/"latest" jump there, "none" surfaces
the error from ``poll`` until the application seeks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from itertools import islice

from raftka.client.cluster import Cluster, topic_path
from raftka.client.connection import BATCH_CONTENT_TYPE, Response
from raftka.client.errors import OffsetOutOfRangeError, ProtocolError, RaftkaError
from raftka.client.retry import Backoff
from raftka.client.structs import ConsumerRecord, TopicPartition
from raftka.storage import StorageError, iter_records, read_batch_header

__all__ = ["RESET_POLICIES", "Fetcher", "PartitionState", "decode_batches"]

logger = logging.getLogger("raftka.client.fetcher")

RESET_POLICIES = ("earliest", "latest", "none")
_HEADER_SIZE = 61  # RecordBatch v2 header


def decode_batches(data: bytes | memoryview, topic: str, partition: int, start_offset: int) -> list[ConsumerRecord]:
    """Records with offset >= start_offset from concatenated batches; a trailing partial batch (cut off
    by max_bytes) is ignored. A corrupt batch raises ProtocolError."""
    view = memoryview(data)
    out: list[ConsumerRecord] = []
    append = out.append
    position = 0
    try:
        while len(view) - position >= _HEADER_SIZE:
            header = read_batch_header(view, position)
            end = position + header.size
            if end > len(view):
                break
            if header.last_offset >= start_offset:
                for r in iter_records(view[position:end], start_offset=start_offset):
                    append(ConsumerRecord(topic, partition, r.offset, r.timestamp, r.key, r.value, r.headers))
            position = end
    except StorageError as exc:
        raise ProtocolError(f"corrupt record batch from the broker for {topic}[{partition}]: {exc}") from exc
    return out


def _int_header(answer: Response, name: str) -> int | None:
    value = answer.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class PartitionState:
    __slots__ = (
        "buffer",
        "epoch",
        "error",
        "fetch_offset",
        "high_watermark",
        "log_start_offset",
        "position",
        "reset",
        "task",
        "tp",
        "wakeup",
    )

    def __init__(self, tp: TopicPartition, reset: str) -> None:
        self.tp = tp
        self.position: int | None = None
        self.reset: str | None = reset  # how to find the position: "committed", "earliest" or "latest"
        self.fetch_offset = 0
        self.buffer: deque[ConsumerRecord] = deque()
        self.epoch = 0
        self.error: RaftkaError | None = None
        self.high_watermark: int | None = None
        self.log_start_offset: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()

    def seek(self, offset: int) -> None:
        self.position = self.fetch_offset = offset
        self.reset = None
        self.buffer.clear()
        self.epoch += 1
        self.error = None
        self.wakeup.set()

    def request_reset(self, strategy: str) -> None:
        self.position = None
        self.reset = strategy
        self.buffer.clear()
        self.epoch += 1
        self.error = None


class Fetcher:
    def __init__(
        self,
        cluster: Cluster,
        *,
        wakeup: asyncio.Event,
        reset_policy: str,
        max_wait_ms: int,
        max_partition_fetch_bytes: int,
        max_buffered_records: int,
        request_timeout_ms: int,
        backoff: Backoff,
    ) -> None:
        if reset_policy not in RESET_POLICIES:
            raise ValueError(f"auto_offset_reset must be one of {', '.join(RESET_POLICIES)}, got {reset_policy!r}")
        self._cluster = cluster
        self._wakeup = wakeup  # set whenever poll() should look again
        self.reset_policy = reset_policy
        self._max_wait_ms = max_wait_ms
        self._max_bytes = max_partition_fetch_bytes
        self._max_buffered = max_buffered_records
        self._timeout_s = max_wait_ms / 1000 + request_timeout_ms / 1000
        self._backoff = backoff
        self.states: dict[TopicPartition, PartitionState] = {}
        self._rotation = 0

    def assign(self, partitions: Iterable[TopicPartition], reset: str) -> None:
        """Fetch exactly these partitions; new ones start unpositioned (resolved via ``reset``)."""
        wanted = dict.fromkeys(partitions)
        for tp in [tp for tp in self.states if tp not in wanted]:
            state = self.states.pop(tp)
            if state.task is not None:
                state.task.cancel()
        for tp in wanted:
            if tp not in self.states:
                self.states[tp] = PartitionState(tp, reset)

    def start(self) -> None:
        """Start fetch loops for partitions that have none (needs the running loop)."""
        for state in self.states.values():
            if state.task is None or state.task.done():
                state.task = asyncio.get_running_loop().create_task(
                    self._run(state), name=f"raftka-fetch-{state.tp.topic}-{state.tp.partition}"
                )

    def drain(self, max_records: int) -> list[ConsumerRecord]:
        """Hand out up to max_records buffered records (offset order per partition) and advance positions."""
        out: list[ConsumerRecord] = []
        states = list(self.states.values())
        if not states:
            return out
        self._rotation = (self._rotation + 1) % len(states)
        for state in states[self._rotation :] + states[: self._rotation]:
            if state.buffer and len(out) < max_records:
                take = min(len(state.buffer), max_records - len(out))
                if take == len(state.buffer):
                    out.extend(state.buffer)
                    state.buffer.clear()
                else:
                    out.extend(islice(state.buffer, take))
                    for _ in range(take):
                        state.buffer.popleft()
                state.position = out[-1].offset + 1
                if not state.buffer:
                    state.position = max(state.position, state.fetch_offset)
            if len(state.buffer) < self._max_buffered:
                state.wakeup.set()
        return out

    def take_error(self) -> RaftkaError | None:
        """The first pending fetch error (each is reported once)."""
        for state in self.states.values():
            if state.error is not None:
                error, state.error = state.error, None
                return error
        return None

    async def close(self) -> None:
        tasks = [s.task for s in self.states.values() if s.task is not None]
        self.states.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, state: PartitionState) -> None:
        topic, partition = state.tp
        path = topic_path(topic, partition, "/records")
        attempt = 0
        while True:
            if state.position is None or len(state.buffer) >= self._max_buffered:
                state.wakeup.clear()
                await state.wakeup.wait()
                continue
            epoch, offset = state.epoch, state.fetch_offset
            try:
                answer = await self._cluster.request_partition(
                    topic,
                    partition,
                    "GET",
                    path,
                    params={"offset": offset, "max_bytes": self._max_bytes, "timeout_ms": self._max_wait_ms},
                    accept=BATCH_CONTENT_TYPE,
                    timeout_s=self._timeout_s,
                )
                records = decode_batches(answer.body, topic, partition, offset)
            except OffsetOutOfRangeError as exc:
                if state.epoch == epoch and not self._reset_out_of_range(state, exc):
                    await asyncio.sleep(self._backoff.delay(attempt := attempt + 1))
                continue
            except RaftkaError as exc:
                attempt += 1
                if state.epoch == epoch and not exc.retriable:
                    state.error = exc
                    self._wakeup.set()
                logger.debug("fetch %s[%d] at %d failed: %s", topic, partition, offset, exc)
                await asyncio.sleep(self._backoff.delay(attempt))
                continue
            attempt = 0
            if state.epoch != epoch:
                continue  # a seek happened meanwhile
            state.high_watermark = _int_header(answer, "X-Raftka-High-Watermark") or state.high_watermark
            state.log_start_offset = _int_header(answer, "X-Raftka-Log-Start") or state.log_start_offset
            if records:
                state.buffer.extend(records)
                state.fetch_offset = records[-1].offset + 1
                self._wakeup.set()
            elif answer.body:
                # Only batches below the offset came back: skip to where the broker says data resumes.
                next_offset = _int_header(answer, "X-Raftka-Next-Offset")
                if next_offset is not None and next_offset > offset:
                    state.fetch_offset = next_offset
                else:
                    await asyncio.sleep(self._backoff.delay(1))

    def _reset_out_of_range(self, state: PartitionState, exc: OffsetOutOfRangeError) -> bool:
        """Apply auto_offset_reset; False when the error must reach the application (policy "none")."""
        self._wakeup.set()
        if self.reset_policy == "none":
            state.error = exc
            return False
        target = exc.earliest if self.reset_policy == "earliest" else exc.latest
        logger.info(
            "%s[%d]: offset %d out of range [%s, %s]; resetting to the %s offset",
            state.tp.topic, state.tp.partition, state.fetch_offset, exc.earliest, exc.latest, self.reset_policy,
        )
        if target is None:
            state.request_reset(self.reset_policy)  # the consumer looks the offset up
        else:
            state.seek(target)
        return True
