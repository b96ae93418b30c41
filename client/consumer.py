"""AIOConsumer: group-managed or manually assigned consumer on asyncio (the blocking Consumer wraps it).

* ``subscribe(topics, on_assign=, on_revoke=)``: the broker's group coordinator
  assigns partitions (see ``group``). Rebalances run inside ``poll``: commit
  consumed positions (if auto-commit), ``on_revoke(partitions)``, rejoin,
  ``on_assign(partitions)``, then resume from the committed offsets.
* ``assign(partitions)``: manual mode, no group membership; positions start
  at the group's committed offsets when a ``group_id`` is set, else at
  ``auto_offset_reset``.
* ``poll`` returns records in offset order per partition, fetched directly
  from partition leaders (see ``fetcher``).
* Committed offset = the next offset to read (Kafka semantics). The broker
  keeps committed offsets grow-only; commits of explicit offsets, and of
  positions moved by ``seek*``, ask it to store them even if lower.
  ``enable_auto_commit`` commits the positions of records returned by earlier
  ``poll`` calls - from inside ``poll`` every ``auto_commit_interval_ms`` (also
  while a long ``poll`` waits for records), on
  rebalance and on ``close`` - so a record is committed only after the
  application asked for more: at-least-once.
* Iterating (``async for record in consumer``) hands out one record at a
  time; records poll returned to the iterator but not yet handed out are given
  back (positions rewound) before any commit, so they are never committed
  unseen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from raftka.client.cluster import Cluster, topic_path
from raftka.client.connection import ClientSecurity
from raftka.client.errors import (
    ClientClosedError,
    IllegalStateError,
    NoOffsetForPartitionError,
    ProtocolError,
    RaftkaError,
    RetriableError,
)
from raftka.client.fetcher import Fetcher
from raftka.client.group import GroupMember
from raftka.client.loop_thread import call_user
from raftka.client.retry import Backoff
from raftka.client.structs import ConsumerRecord, TopicPartition

__all__ = ["AIOConsumer", "PartitionsCallback"]

logger = logging.getLogger("raftka.client.consumer")

PartitionsCallback = Callable[[set[TopicPartition]], Any]
Deserializer = Callable[[bytes], Any]


def _as_tp(item: Any) -> TopicPartition:
    if isinstance(item, TopicPartition):
        return item
    try:
        topic, partition = item
    except (TypeError, ValueError):
        raise TypeError(f"expected a TopicPartition or (topic, partition), got {item!r}") from None
    if not isinstance(topic, str) or not isinstance(partition, int) or partition < 0:
        raise TypeError(f"expected a TopicPartition or (topic, partition), got {item!r}")
    return TopicPartition(topic, partition)


class AIOConsumer:
    def __init__(
        self,
        *topics: str,
        group_id: str | None = None,
        bootstrap_servers: str | Sequence[str] | None = None,
        auto_offset_reset: str = "latest",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5_000,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int = 30_000,
        max_poll_interval_ms: int = 300_000,
        max_poll_records: int = 500,
        fetch_max_wait_ms: int = 500,
        max_partition_fetch_bytes: int = 1024 * 1024,
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        metadata_max_age_ms: int = 30_000,
        consumer_timeout_ms: int | None = None,
        key_deserializer: Deserializer | None = None,
        value_deserializer: Deserializer | None = None,
        username: str | None = None,
        password: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        if max_poll_records < 1:
            raise ValueError("max_poll_records must be >= 1")
        if heartbeat_interval_ms >= session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be lower than session_timeout_ms")
        self._cluster = Cluster(
            bootstrap_servers,
            request_timeout_ms=request_timeout_ms,
            metadata_max_age_ms=metadata_max_age_ms,
            retry_backoff_ms=retry_backoff_ms,
            security=ClientSecurity(username, password, ssl_cafile, ssl_certfile, ssl_keyfile),
        )
        self._backoff = Backoff(retry_backoff_ms / 1000, 1.0)
        self._wakeup = asyncio.Event()
        self._fetcher = Fetcher(
            self._cluster,
            wakeup=self._wakeup,
            reset_policy=auto_offset_reset,
            max_wait_ms=fetch_max_wait_ms,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            max_buffered_records=max_poll_records,
            request_timeout_ms=request_timeout_ms,
            backoff=self._backoff,
        )
        self._group = (
            GroupMember(
                self._cluster,
                group_id,
                wakeup=self._wakeup,
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms,
                heartbeat_interval_ms=heartbeat_interval_ms,
                max_poll_interval_ms=max_poll_interval_ms,
                request_timeout_ms=request_timeout_ms,
                backoff=self._backoff,
            )
            if group_id is not None
            else None
        )
        self.group_id = group_id
        self._auto_commit = enable_auto_commit and group_id is not None
        self._auto_commit_s = auto_commit_interval_ms / 1000
        self._next_auto_commit = time.monotonic() + self._auto_commit_s
        self._last_committed: dict[TopicPartition, int] = {}
        self._max_poll_records = max_poll_records
        self._consumer_timeout_s = None if consumer_timeout_ms is None else consumer_timeout_ms / 1000
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._subscription: list[str] | None = None
        self._on_assign: PartitionsCallback | None = None
        self._on_revoke: PartitionsCallback | None = None
        self._iter_pending: deque[ConsumerRecord] = deque()
        self._rebalanced_at = 0.0  # monotonic time the last rebalance finished
        self._sought: set[TopicPartition] = set()  # moved by the application since their last commit
        self._closed = False
        if topics:
            self.subscribe(list(topics))

    # -- subscription / assignment -------------------------------------------------

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> None:
        """Join the group for these topics at the next ``poll``; callbacks get sets of TopicPartition."""
        self._check_open()
        if isinstance(topics, str):
            topics = [topics]
        if not topics or not all(isinstance(t, str) and t for t in topics):
            raise ValueError(f"subscribe needs a non-empty list of topic names, got {topics!r}")
        if self._group is None:
            raise IllegalStateError("subscribe() needs a group_id; use assign() to read without a group")
        if self._subscription is None and self._fetcher.states:
            raise IllegalStateError("this consumer uses assign(); call unsubscribe() before subscribe()")
        self._subscription = list(dict.fromkeys(topics))
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._group.request_rejoin("subscription changed")

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions, without group membership."""
        self._check_open()
        if self._subscription is not None:
            raise IllegalStateError("this consumer is subscribed; call unsubscribe() before assign()")
        tps = [_as_tp(p) for p in partitions]
        self._fetcher.assign(tps, reset="committed" if self._group is not None else self._fetcher.reset_policy)
        self._sought &= set(tps)

    async def unsubscribe(self) -> None:
        """Drop the subscription or manual assignment (leaving the group, committing first if auto)."""
        self._give_back_pending()
        if self._subscription is not None and self._group is not None and self._group.joined:
            await self._revoke()
            await self._group.leave()
        self._subscription = None
        self._fetcher.assign([], reset="committed")

    def assignment(self) -> set[TopicPartition]:
        return set(self._fetcher.states)

    def subscription(self) -> list[str] | None:
        return None if self._subscription is None else list(self._subscription)

    # -- poll --------------------------------------------------------------------

    async def poll(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records fetched so far (at most max_records), waiting up to timeout_ms for some to arrive.

        Also runs rebalances, positions new partitions and auto-commits.
        """
        self._check_open()
        self._give_back_pending()
        if self._group is not None:
            self._group.last_poll = time.monotonic()
        limit = max_records or self._max_poll_records
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0, timeout_ms) / 1000
        while True:
            self._wakeup.clear()
            if self._auto_commit and time.monotonic() >= self._next_auto_commit:
                await self._auto_commit_now()
            if self._subscription is not None and self._group is not None and self._group.needs_join:
                await self._rebalance()
            try:
                await self._resolve_positions()
            except RetriableError as exc:
                logger.debug("positions not resolved yet: %s", exc)
                await asyncio.sleep(min(self._backoff.delay(1), max(0.0, deadline - loop.time())))
            self._fetcher.start()
            error = self._fetcher.take_error()
            if error is not None:
                raise error
            records = self._fetcher.drain(limit)
            if records:
                return self._deserialize(records)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if self._auto_commit:  # wake for the next auto-commit too: a long wait must not hold it back
                remaining = min(remaining, max(0.0, self._next_auto_commit - time.monotonic()))
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def getone(self) -> ConsumerRecord:
        """The next record (waits as long as it takes)."""
        return await self.__anext__()

    def __aiter__(self) -> AIOConsumer:
        return self

    async def __anext__(self) -> ConsumerRecord:
        """Next record; StopAsyncIteration after ``consumer_timeout_ms`` without one (time spent joining
        the group does not count)."""
        if self._iter_pending:
            return self._iter_pending.popleft()
        idle_since = time.monotonic()
        while True:
            give_up = self._iteration_deadline(idle_since)
            wait_ms = 1000 if give_up is None else max(0, int((give_up - time.monotonic()) * 1000))
            records = await self.poll(wait_ms)
            if records:
                self._iter_pending.extend(records)
                return self._iter_pending.popleft()
            give_up = self._iteration_deadline(idle_since)
            if give_up is not None and time.monotonic() >= give_up:
                raise StopAsyncIteration

    def _iteration_deadline(self, idle_since: float) -> float | None:
        if self._consumer_timeout_s is None:
            return None
        return max(idle_since, self._rebalanced_at) + self._consumer_timeout_s

    def take_pending(self) -> ConsumerRecord | None:
        """Next record already fetched for the iterator, or None (lets the blocking iterator skip the loop hop).
        Safe from the thread driving this consumer: only that thread's calls touch this buffer."""
        try:
            return self._iter_pending.popleft()
        except IndexError:
            return None

    def _give_back_pending(self) -> None:
        """Rewind positions over records the iterator fetched but has not handed out."""
        if not self._iter_pending:
            return
        first: dict[TopicPartition, int] = {}
        for record in self._iter_pending:
            first.setdefault(TopicPartition(record.topic, record.partition), record.offset)
        self._iter_pending.clear()
        for tp, offset in first.items():
            state = self._fetcher.states.get(tp)
            if state is not None and state.position is not None and state.position > offset:
                state.seek(offset)

    def _deserialize(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        kd, vd = self._key_deserializer, self._value_deserializer
        if kd is None and vd is None:
            return records
        return [
            r._replace(
                key=kd(r.key) if kd is not None and r.key is not None else r.key,
                value=vd(r.value) if vd is not None and r.value is not None else r.value,
            )
            for r in records
        ]

    # -- group -------------------------------------------------------------------

    async def _rebalance(self) -> None:
        assert self._group is not None and self._subscription is not None
        if self._group.joined or self._fetcher.states:
            await self._revoke()
        assignment = await self._group.join(self._subscription)
        self._fetcher.assign(assignment, reset="committed")
        self._last_committed.clear()
        self._sought.clear()
        now = time.monotonic()
        self._rebalanced_at, self._next_auto_commit = now, now + self._auto_commit_s
        if self._on_assign is not None:
            await call_user(self._on_assign, set(assignment))

    async def _revoke(self) -> None:
        revoked = set(self._fetcher.states)
        if self._auto_commit:
            await self._auto_commit_now()
        if self._on_revoke is not None:
            await call_user(self._on_revoke, revoked)
        self._fetcher.assign([], reset="committed")

    # -- positions -----------------------------------------------------------------

    async def _resolve_positions(self) -> None:
        unpositioned = [s for s in self._fetcher.states.values() if s.position is None]
        if not unpositioned:
            return
        from_group = [s for s in unpositioned if s.reset == "committed"]
        if from_group:
            assert self._group is not None
            committed = await self._group.committed([s.tp for s in from_group])
            for state in from_group:
                offset = committed.get(state.tp)
                if offset is not None:
                    state.seek(offset)
                else:
                    state.reset = self._fetcher.reset_policy
        by_strategy = [s for s in unpositioned if s.position is None]
        for state in by_strategy:
            if state.reset == "none":
                raise NoOffsetForPartitionError(
                    f"No committed offset for {state.tp.topic}[{state.tp.partition}] and auto_offset_reset='none'"
                )
        if by_strategy:
            ends = await asyncio.gather(*(self._offsets(s.tp) for s in by_strategy))
            for state, (beginning, end) in zip(by_strategy, ends, strict=True):
                if state.position is None:  # not sought meanwhile
                    state.seek(beginning if state.reset == "earliest" else end)

    async def _offsets(self, tp: TopicPartition) -> tuple[int, int]:
        answer = await self._cluster.request_partition(
            tp.topic, tp.partition, "GET", topic_path(tp.topic, tp.partition, "/offsets"), idempotent=True
        )
        doc = answer.json()
        try:
            beginning, end = doc["beginning_offset"], doc["end_offset"]
        except (TypeError, KeyError):
            raise ProtocolError(f"GET offsets of {tp.topic}[{tp.partition}] answered {doc!r}") from None
        if not isinstance(beginning, int) or not isinstance(end, int):
            raise ProtocolError(f"GET offsets of {tp.topic}[{tp.partition}] answered {doc!r}")
        return beginning, end

    def _state(self, tp: Any) -> Any:
        tp = _as_tp(tp)
        state = self._fetcher.states.get(tp)
        if state is None:
            raise IllegalStateError(f"{tp.topic}[{tp.partition}] is not assigned to this consumer")
        return state

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        """Make the next poll return records of ``partition`` from ``offset`` on."""
        self._give_back_pending()
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative int, got {offset!r}")
        state = self._state(partition)
        state.seek(offset)
        self._sought.add(state.tp)
        self._wakeup.set()

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Move to the log start of the given partitions (default: all assigned), resolved at the next poll."""
        self._give_back_pending()
        for state in [self._state(p) for p in partitions] or list(self._fetcher.states.values()):
            state.request_reset("earliest")
            self._sought.add(state.tp)
        self._wakeup.set()

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Move to the log end of the given partitions (default: all assigned), resolved at the next poll."""
        self._give_back_pending()
        for state in [self._state(p) for p in partitions] or list(self._fetcher.states.values()):
            state.request_reset("latest")
            self._sought.add(state.tp)
        self._wakeup.set()

    async def position(self, partition: TopicPartition | tuple[str, int]) -> int:
        """Offset of the next record poll will return for ``partition``."""
        self._give_back_pending()
        state = self._state(partition)
        if state.position is None:
            await self._resolve_positions()
        return state.position

    async def committed(self, partition: TopicPartition | tuple[str, int]) -> int | None:
        """The group's committed offset (next offset to read) for ``partition``, None if none."""
        if self._group is None:
            raise IllegalStateError("committed() needs a group_id")
        tp = _as_tp(partition)
        return (await self._group.committed([tp]))[tp]

    async def beginning_offsets(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> dict[TopicPartition, int]:
        tps = [_as_tp(p) for p in partitions]
        results = await asyncio.gather(*(self._offsets(tp) for tp in tps))
        return {tp: r[0] for tp, r in zip(tps, results, strict=True)}

    async def end_offsets(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> dict[TopicPartition, int]:
        """Offset the next produced record will get (= high watermark), per partition."""
        tps = [_as_tp(p) for p in partitions]
        results = await asyncio.gather(*(self._offsets(tp) for tp in tps))
        return {tp: r[1] for tp, r in zip(tps, results, strict=True)}

    async def lag(self, partition: TopicPartition | tuple[str, int]) -> int:
        """Records between this consumer's position and the partition's end."""
        tp = _as_tp(partition)
        position = await self.position(tp)
        return max(0, (await self.end_offsets([tp]))[tp] - position)

    async def lags(self) -> dict[TopicPartition, int]:
        """``lag`` of every assigned partition."""
        tps = sorted(self._fetcher.states)
        ends = await self.end_offsets(tps)
        return {tp: max(0, ends[tp] - await self.position(tp)) for tp in tps}

    # -- commit ----------------------------------------------------------------------

    async def commit(
        self,
        offsets: Mapping[TopicPartition | tuple[str, int], int] | None = None,
        asynchronous: bool = False,
    ) -> asyncio.Task[None] | None:
        """Commit ``offsets`` (next offsets to read) or, by default, the positions of all records returned
        so far. ``asynchronous=True`` returns a task instead of waiting. CommitFailedError if the group
        rebalanced meanwhile."""
        self._check_open()
        self._give_back_pending()
        if self._group is None:
            raise IllegalStateError("commit() needs a group_id")
        reset = False
        if offsets is None:
            to_commit = self._consumed_positions()
        else:
            to_commit = {_as_tp(tp): o for tp, o in offsets.items()}
            bad = [o for o in to_commit.values() if not isinstance(o, int) or o < 0]
            if bad:
                raise ValueError(f"offsets must be non-negative ints, got {bad[0]!r}")
            reset = True
        if asynchronous:
            return asyncio.get_running_loop().create_task(self._commit(to_commit, reset=reset))
        await self._commit(to_commit, reset=reset)
        return None

    def _consumed_positions(self) -> dict[TopicPartition, int]:
        return {tp: s.position for tp, s in self._fetcher.states.items() if s.position is not None}

    async def _commit(self, offsets: dict[TopicPartition, int], *, reset: bool = False) -> None:
        """Commit; ``reset`` lets offsets move back (explicit offsets, or positions after a seek)."""
        if not offsets:
            return
        assert self._group is not None
        reset = reset or bool(self._sought & offsets.keys())
        await self._group.commit(offsets, with_membership=self._subscription is not None, reset=reset)
        self._last_committed.update(offsets)
        self._sought -= offsets.keys()

    async def _auto_commit_now(self) -> None:
        """Auto-commit: positions that changed since the last commit; failures are logged, not raised
        (the records are then delivered again after a rebalance: at-least-once)."""
        self._next_auto_commit = time.monotonic() + self._auto_commit_s
        changed = {tp: o for tp, o in self._consumed_positions().items() if self._last_committed.get(tp) != o}
        try:
            await self._commit(changed)
        except RaftkaError as exc:
            logger.warning("auto-commit of %s failed: %s", changed, exc)

    # -- lifecycle -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("consumer is closed")

    async def close(self) -> None:
        """Commit consumed positions (if auto-commit), leave the group, close connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._give_back_pending()
        try:
            if self._auto_commit and (self._subscription is None or (self._group and self._group.joined)):
                await self._auto_commit_now()
            if self._group is not None:
                await self._group.leave()
        finally:
            await self._fetcher.close()
            await self._cluster.close()

    async def __aenter__(self) -> AIOConsumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
