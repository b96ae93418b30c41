"""AIOProducer: batching, idempotent, leader-direct producer on asyncio (the blocking Producer wraps it).

Path of a record: ``send`` validates and sizes it and takes buffer space;
the partition is chosen (``routing``: by key, or for keyless records one
partition per ``sticky_partition_bytes``) once the topic's partition count is
known (``GET /metadata``); the record joins its partition's open batch
(``accumulator``). The sender task ships ready batches - at most ONE in flight
per partition - as raw RecordBatch v2 bytes to
``POST /topics/{t}/partitions/{p}/batch`` on the partition leader.

Ordering and exactly-once delivery per partition: one batch in flight per
partition keeps batches in send order without any help from the broker, and
the idempotent producer (on by default) makes retries safe: a batch is
numbered (producer id from ``POST /producers``, epoch, base sequence) when it
is first sent and every retry resends the identical bytes, which the broker
acknowledges with the original offsets instead of writing them again. The
cost of one-in-flight is throughput per partition (one round trip per batch);
batches grow while a request is in flight, which recovers most of it.
``acks`` is always "all" (the broker answers after Raft commit).

Errors: retriable errors (NotLeader, timeouts, unreachable brokers, unknown
partition while metadata catches up) are retried with exponential backoff
until ``delivery_timeout_ms`` after the record was sent; then the record's
future fails with ``DeliveryTimeoutError`` whose ``__cause__`` is the last
error. A batch refused as too large is split in halves and retried; one
refused for an unexpected sequence number (the broker lost or never had this
producer's state) is numbered again under a new producer id, unless an
earlier attempt of it may have been written. Other errors fail every record
of the batch with the broker's error (e.g. ``RecordTooLargeError``). A record that is invalid on its own fails in
``send`` itself (TypeError, ValueError, RecordTooLargeError).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from raftka.client.accumulator import BATCH_OVERHEAD, ProducerBatch, RecordAccumulator, record_size
from raftka.client.budget import ByteBudget
from raftka.client.cluster import Cluster, topic_path
from raftka.client.connection import BATCH_CONTENT_TYPE, ClientSecurity
from raftka.client.errors import (
    AuthenticationError,
    AuthorizationError,
    ClientClosedError,
    DeliveryTimeoutError,
    NotLeaderError,
    ProtocolError,
    RaftkaError,
    RecordTooLargeError,
)
from raftka.client.futures import RecordFuture, fail_future, resolve_future
from raftka.client.idempotence import NO_IDENTITY, ProducerIdentity, SequenceTracker
from raftka.client.retry import Backoff, Disposition, classify_produce_error, may_have_been_written
from raftka.client.routing import PartitionChooser
from raftka.client.structs import RecordMetadata, TopicPartition
from raftka.storage import Record, StorageError, encode_batch

__all__ = ["AIOProducer"]

Serializer = Callable[[Any], bytes]
_MAX_INTAKE_DELAY_S = 0.002
HeadersArg = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]] | None


class _Pending(NamedTuple):
    """A validated record waiting for its partition."""

    topic: str
    partition: int | None
    record: Record
    size: int
    sent_at: float  # time.monotonic() of send(): linger and delivery timeout count from here


def _to_bytes(data: Any, what: str) -> bytes | None:
    if data is None or type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes, str or None (or configure a {what}_serializer), got {type(data).__name__}")


def _headers(headers: HeadersArg) -> Sequence[tuple[str, bytes | None]]:
    if not headers:
        return ()  # not a new list per record: fewer objects for the garbage collector to track
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for item in items:
        name, value = item
        if not isinstance(name, str):
            raise TypeError(f"header names must be str, got {type(name).__name__}")
        out.append((name, _to_bytes(value, "header value")))
    return out


class AIOProducer:
    """Asyncio producer. ``await producer.send(topic, value, key=...)`` returns a future of RecordMetadata.

    Use as ``async with AIOProducer(...) as producer:`` or call ``close()``.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | None = None,
        *,
        linger_ms: float = 5,
        batch_size: int = 256 * 1024,
        sticky_partition_bytes: int = 1024 * 1024,
        buffer_memory: int = 64 * 1024 * 1024,
        max_request_size: int = 1024 * 1024,
        max_block_ms: int = 10_000,
        enable_idempotence: bool = True,
        delivery_timeout_ms: int = 120_000,
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        retry_backoff_max_ms: int = 1_000,
        metadata_max_age_ms: int = 30_000,
        key_serializer: Serializer | None = None,
        value_serializer: Serializer | None = None,
        username: str | None = None,
        password: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        for name, value in (
            ("linger_ms", linger_ms),
            ("batch_size", batch_size),
            ("sticky_partition_bytes", sticky_partition_bytes),
            ("max_request_size", max_request_size),
            ("max_block_ms", max_block_ms),
            ("delivery_timeout_ms", delivery_timeout_ms),
            ("request_timeout_ms", request_timeout_ms),
        ):
            if value < 0 or (value == 0 and name not in ("linger_ms", "max_block_ms")):
                raise ValueError(f"{name} must be positive, got {value}")
        self._cluster = Cluster(
            bootstrap_servers,
            request_timeout_ms=request_timeout_ms,
            metadata_max_age_ms=metadata_max_age_ms,
            retry_backoff_ms=retry_backoff_ms,
            security=ClientSecurity(username, password, ssl_cafile, ssl_certfile, ssl_keyfile),
        )
        self._acc = RecordAccumulator(batch_size, linger_ms / 1000)
        self._chooser = PartitionChooser(sticky_partition_bytes)
        self._budget = ByteBudget(buffer_memory)
        self._backoff = Backoff(retry_backoff_ms / 1000, retry_backoff_max_ms / 1000)
        self._max_request_size = max_request_size
        self._max_block_s = max_block_ms / 1000
        self._idempotent = enable_idempotence
        self._delivery_timeout_s = delivery_timeout_ms / 1000
        self._request_timeout_ms = request_timeout_ms
        self._key_serializer = key_serializer
        self._value_serializer = value_serializer

        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._in_flight: dict[TopicPartition, ProducerBatch] = {}
        self._waiting: dict[str, list[tuple[_Pending, Any]]] = {}  # topic -> records awaiting metadata
        self._progress: list[asyncio.Future[None]] = []
        self._tracker: SequenceTracker | None = None
        self._identity_task: asyncio.Task[SequenceTracker] | None = None
        self._intake: deque[tuple[_Pending, concurrent.futures.Future[RecordMetadata]]] = deque()
        self._intake_scheduled = False
        self._intake_delay_s = min(linger_ms / 1000, _MAX_INTAKE_DELAY_S)
        self._closing = False
        self._closed = False

    # -- public API --------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop and fetch metadata (optional: ``send`` starts the producer too)."""
        self._bind()
        await self._cluster.ensure_metadata()

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue a record; returns a future resolving to RecordMetadata(topic, partition, offset).

        Waits only for buffer space (``max_block_ms``). Invalid records raise here.
        """
        pending = self._prepare(topic, value, key, headers, partition, timestamp_ms)
        self._check_open()
        loop = self._bind()
        if not self._budget.try_acquire(pending.size):
            await self._budget.acquire(pending.size, self._max_block_s)
        future: asyncio.Future[RecordMetadata] = loop.create_future()
        if self._enqueue(pending, future):
            await asyncio.sleep(0)  # a batch started or filled up: let the sender run
        return future

    async def send_and_wait(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> RecordMetadata:
        """``send`` and wait for the acknowledgement."""
        return await (await self.send(topic, value, key, **kwargs))

    def send_threadsafe(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> concurrent.futures.Future[RecordMetadata]:
        """``send`` for callers on other threads (the blocking Producer): validates in the calling thread,
        blocks it for buffer space, and hands the record to the loop in bulk."""
        pending = self._prepare(topic, value, key, headers, partition, timestamp_ms)
        self._check_open()
        loop = self._loop
        if loop is None:
            raise RuntimeError("send_threadsafe needs a started producer (await start() on its loop first)")
        self._budget.acquire_blocking(pending.size, self._max_block_s)
        future = RecordFuture()
        self._intake.append((pending, future))
        if not self._intake_scheduled:
            self._intake_scheduled = True
            loop.call_soon_threadsafe(self._schedule_drain)
        return future

    async def flush(self, timeout: float | None = None) -> None:
        """Send everything queued so far now (ignoring linger) and wait until each record is acknowledged
        or failed. TimeoutError after ``timeout`` seconds (records stay queued)."""
        if self._loop is None:
            return
        self._drain_intake()
        async with asyncio.timeout(timeout):
            while self._waiting:
                await self._next_progress()
            mark = self._acc.next_serial
            self._acc.flushing += 1
            self._wake()
            try:
                while any(b.serial < mark for b in itertools.chain(self._acc.batches(), self._in_flight.values())):
                    await self._next_progress()
            finally:
                self._acc.flushing -= 1

    async def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds), then release connections. Records still unsent after the
        timeout fail with ClientClosedError. Idempotent."""
        if self._closed:
            return
        self._closing = True
        try:
            await self.flush(timeout)
        except TimeoutError:
            pass
        finally:
            self._closed = True
            await self._abort(ClientClosedError("producer closed before the record was acknowledged"))
            await self._cluster.close()

    async def partitions_for(self, topic: str) -> list[int]:
        """Partition numbers of ``topic`` (TopicNotFoundError if it does not exist)."""
        self._bind()
        return list(range(len(await self._cluster.topic_partitions(topic))))

    async def __aenter__(self) -> AIOProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- intake --------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
            self._sender = self._loop.create_task(self._run_sender(), name="raftka-producer-sender")
        return self._loop

    def _check_open(self) -> None:
        if self._closing:
            raise ClientClosedError("producer is closed")

    def _prepare(
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: HeadersArg,
        partition: int | None,
        timestamp_ms: int | None,
    ) -> _Pending:
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"topic must be a non-empty str, got {topic!r}")
        if key is not None and self._key_serializer is not None:
            key = self._key_serializer(key)
        if value is not None and self._value_serializer is not None:
            value = self._value_serializer(value)
        key, value = _to_bytes(key, "key"), _to_bytes(value, "value")
        header_list = _headers(headers)
        if partition is not None and (not isinstance(partition, int) or isinstance(partition, bool) or partition < 0):
            raise ValueError(f"partition must be a non-negative int, got {partition!r}")
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        elif not isinstance(timestamp_ms, int) or timestamp_ms < 0:
            raise ValueError(f"timestamp_ms must be a non-negative int, got {timestamp_ms!r}")
        size = record_size(key, value, header_list)
        if size + BATCH_OVERHEAD > self._max_request_size:
            raise RecordTooLargeError(
                f"Record of about {size} bytes is larger than max_request_size ({self._max_request_size} bytes)"
            )
        return _Pending(topic, partition, Record(key, value, header_list, timestamp_ms), size, time.monotonic())

    def _schedule_drain(self) -> None:
        """Collect records from other threads a little later, in bulk: waking the loop for every record
        would cost more than the record. Linger counts from send(), so the wait is part of linger_ms."""
        assert self._loop is not None
        self._loop.call_later(self._intake_delay_s, self._drain_intake)

    def _drain_intake(self) -> None:
        self._intake_scheduled = False
        intake = self._intake
        while intake:
            pending, future = intake.popleft()
            self._enqueue(pending, future)

    def _enqueue(self, pending: _Pending, future: Any) -> bool:
        """Route a record to its batch (or park it until its topic is known); True if the sender was woken."""
        infos = self._cluster.cache.partitions(pending.topic)
        if infos is None:
            waiting = self._waiting.get(pending.topic)
            if waiting is None:
                waiting = self._waiting[pending.topic] = []
                self._spawn(self._resolve_topic(pending.topic))
            waiting.append((pending, future))
            return False
        return self._route(pending, future, len(infos))

    def _route(self, pending: _Pending, future: Any, num_partitions: int) -> bool:
        try:
            partition = self._chooser.choose(
                pending.topic, pending.record.key, pending.partition, num_partitions, pending.size
            )
        except RaftkaError as exc:
            self._budget.release(pending.size)
            fail_future(future, exc)
            return False
        if self._acc.append(TopicPartition(pending.topic, partition), pending.record, pending.size, future, pending.sent_at):
            self._wake()
            return True
        return False

    async def _resolve_topic(self, topic: str) -> None:
        """Wait (up to max_block_ms) until the topic shows up in metadata, then route its waiting records (fail them
        at once when the user may not see the topic, or cannot log in)."""
        deadline = time.monotonic() + self._max_block_s
        attempt = 0
        while True:
            try:
                infos = await self._cluster.topic_partitions(topic)
                break
            except RaftkaError as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                refused = isinstance(exc, (AuthenticationError, AuthorizationError))  # waiting will not help
                if refused or time.monotonic() + delay > deadline:
                    for pending, future in self._waiting.pop(topic, ()):
                        self._budget.release(pending.size)
                        fail_future(future, exc)
                    self._notify_progress()
                    return
                await asyncio.sleep(delay)
        for pending, future in self._waiting.pop(topic, ()):
            self._route(pending, future, len(infos))
        self._notify_progress()

    # -- sender --------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _run_sender(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            wakeup.clear()
            ready, wait = self._acc.ready(time.monotonic(), self._in_flight.keys())
            for tp in ready:
                batch = self._acc.pop(tp)
                self._in_flight[tp] = batch
                self._spawn(self._deliver(batch))
            if wait is None:
                await wakeup.wait()
            else:
                try:
                    async with asyncio.timeout(wait):
                        await wakeup.wait()
                except TimeoutError:
                    pass

    def _next_progress(self) -> asyncio.Future[None]:
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._progress.append(waiter)
        return waiter

    def _notify_progress(self) -> None:
        waiters, self._progress = self._progress, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _deliver(self, batch: ProducerBatch) -> None:
        try:
            await self._deliver_batch(batch)
        finally:
            if self._in_flight.get(batch.tp) is batch:
                del self._in_flight[batch.tp]
            self._wake()
            self._notify_progress()

    async def _deliver_batch(self, batch: ProducerBatch) -> None:
        topic, partition = batch.tp
        path = topic_path(topic, partition, "/batch")
        params = {"timeout_ms": str(self._request_timeout_ms)}
        deadline = batch.created + self._delivery_timeout_s
        attempt = 0
        while True:
            try:
                if batch.payload is None:
                    await self._seal(batch)
                batch.attempts += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeliveryTimeoutError(self._timeout_message(batch))
                answer = await self._cluster.request_partition(
                    topic,
                    partition,
                    "POST",
                    path,
                    data=batch.payload,
                    content_type=BATCH_CONTENT_TYPE,
                    params=params,
                    timeout_s=min(remaining, self._request_timeout_ms / 1000 + 2),
                )
            except DeliveryTimeoutError as exc:
                self._fail_batch(batch, exc)
                return
            except RaftkaError as exc:
                if batch.payload is not None and may_have_been_written(exc):
                    batch.maybe_written = True
                disposition = classify_produce_error(exc, len(batch))
                if disposition is Disposition.CHECK_TOPIC:
                    disposition = await self._recheck_partition(batch)
                if disposition is Disposition.SPLIT:
                    self._split(batch)
                    return
                if disposition is Disposition.RENUMBER and not batch.maybe_written and not batch.renumbered:
                    self._forget_identity(batch.identity)  # not written (4xx): safe to number it afresh, once
                    batch.payload, batch.renumbered = None, True
                    continue
                if disposition is Disposition.RENUMBER:
                    disposition = Disposition.FAIL
                if disposition is Disposition.FAIL:
                    self._fail_batch(batch, exc)
                    return
                attempt += 1
                hinted = isinstance(exc, NotLeaderError) and exc.leader_id is not None and attempt == 1
                delay = 0.0 if hinted else self._backoff.delay(attempt)
                if time.monotonic() + delay >= deadline:
                    timeout = DeliveryTimeoutError(self._timeout_message(batch))
                    timeout.__cause__ = exc
                    self._fail_batch(batch, timeout)
                    return
                if delay:
                    await asyncio.sleep(delay)
                continue
            self._complete_batch(batch, answer.json())
            return

    def _timeout_message(self, batch: ProducerBatch) -> str:
        written = "may or may not have been written" if batch.maybe_written else "was not written"
        return (
            f"{len(batch)} record(s) for {batch.tp.topic}[{batch.tp.partition}] not acknowledged within "
            f"delivery_timeout_ms ({self._delivery_timeout_s * 1000:g} ms, {batch.attempts} attempt(s)); the batch "
            f"{written}"
        )

    async def _recheck_partition(self, batch: ProducerBatch) -> Disposition:
        """Unknown topic/partition: retry if fresh metadata has it (the broker was behind), else fail."""
        try:
            await self._cluster.refresh()
        except RaftkaError:
            return Disposition.RETRY
        infos = self._cluster.cache.partitions(batch.tp.topic)
        return Disposition.RETRY if infos is not None and batch.tp.partition < len(infos) else Disposition.FAIL

    async def _seal(self, batch: ProducerBatch) -> None:
        """Number and encode a batch on its first send; retries reuse the bytes."""
        if self._idempotent:
            tracker = await self._current_tracker()
            batch.identity = tracker.identity
            batch.base_sequence = tracker.assign(batch.tp, len(batch))
        else:
            batch.identity = NO_IDENTITY
        identity: ProducerIdentity = batch.identity
        try:
            batch.payload = encode_batch(
                batch.records,
                producer_id=identity.producer_id,
                producer_epoch=identity.epoch,
                base_sequence=batch.base_sequence,
            )
        except StorageError as exc:
            self._forget_identity(batch.identity)
            raise RaftkaError(f"cannot encode batch: {exc}") from exc

    async def _current_tracker(self) -> SequenceTracker:
        if self._tracker is not None:
            return self._tracker
        if self._identity_task is None or self._identity_task.done():
            self._identity_task = asyncio.get_running_loop().create_task(self._allocate_identity())
        tracker = await asyncio.shield(self._identity_task)
        if self._tracker is None:
            self._tracker = tracker
        return self._tracker

    async def _allocate_identity(self) -> SequenceTracker:
        answer = await self._cluster.request_coordinator("POST", "/producers", json={})
        doc = answer.json()
        pid = doc.get("producer_id") if isinstance(doc, dict) else None
        epoch = doc.get("producer_epoch") if isinstance(doc, dict) else None
        if not isinstance(pid, int) or not isinstance(epoch, int) or pid < 0 or epoch < 0:
            raise ProtocolError(f"POST /producers answered {doc!r}; expected producer_id and producer_epoch")
        return SequenceTracker(ProducerIdentity(pid, epoch))

    def _forget_identity(self, identity: ProducerIdentity | None) -> None:
        """Number later batches under a new producer id (see ``idempotence``)."""
        if identity is not None and self._tracker is not None and self._tracker.identity == identity:
            self._tracker = None

    def _split(self, batch: ProducerBatch) -> None:
        self._forget_identity(batch.identity)
        first, second = batch.split()
        for half in (first, second):
            half.size = BATCH_OVERHEAD + sum(record_size(r.key, r.value, r.headers) for r in half.records)
        self._acc.reenqueue_front([first, second])

    def _fail_batch(self, batch: ProducerBatch, exc: BaseException) -> None:
        self._forget_identity(batch.identity)
        for future in batch.futures:
            fail_future(future, exc)
        self._budget.release(batch.size - BATCH_OVERHEAD)

    def _complete_batch(self, batch: ProducerBatch, doc: Any) -> None:
        base = doc.get("base_offset") if isinstance(doc, dict) else None
        last = doc.get("last_offset") if isinstance(doc, dict) else None
        if not isinstance(base, int) or not isinstance(last, int) or last - base + 1 != len(batch):
            batch.maybe_written = True
            self._fail_batch(
                batch, ProtocolError(f"broker acknowledged {doc!r} for a batch of {len(batch)} record(s)")
            )
            return
        topic, partition = batch.tp
        for index, future in enumerate(batch.futures):
            resolve_future(future, RecordMetadata(topic, partition, base + index))
        self._budget.release(batch.size - BATCH_OVERHEAD)

    async def _abort(self, exc: RaftkaError) -> None:
        """Stop the sender and fail every record not yet acknowledged."""
        in_flight = list(self._in_flight.values())
        tasks = [t for t in (self._sender, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for batch in [*self._acc.drain_all(), *in_flight]:
            batch.maybe_written = batch.maybe_written or batch.payload is not None
            self._fail_batch(batch, exc)
        self._in_flight.clear()
        parked = [item for topic in list(self._waiting) for item in self._waiting.pop(topic)]
        while self._intake:  # handed over by another thread after close began
            parked.append(self._intake.popleft())
        for pending, future in parked:
            self._budget.release(pending.size)
            fail_future(future, exc)
        self._notify_progress()
