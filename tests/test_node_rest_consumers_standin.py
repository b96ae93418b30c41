"""A stand-in broker for the consumer-group tests (no tests here): partition logs and the metadata state kept
in dicts, with the same contracts as the broker's (long-poll fetch, out-of-range errors, generation fencing of
offset commits as the metadata state machine applies it). Also a ``run`` helper for asyncio tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from raftka.node.errors import OffsetOutOfRange, PartitionNotFound, StaleGeneration, TopicNotFound
from raftka.node.groups.coordinator import GenerationRequired, GroupCoordinator
from raftka.node.http.rest_consumers import RestConsumers, owner_broker
from raftka.storage import StoredRecord

TopicPartition = tuple[str, int]


def run(scenario: Callable[[], Awaitable[None]], timeout_s: float = 20.0) -> None:
    """Run ``scenario`` in a fresh event loop; fail if any exception reached the loop's handler."""
    loop_errors: list[dict] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(context))
        async with asyncio.timeout(timeout_s):
            await scenario()

    with asyncio.Runner() as runner:
        runner.run(main())
    assert loop_errors == [], f"exceptions reached the event loop: {loop_errors}"


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class StandInBroker:
    """Partition logs, committed offsets and persisted generations in dicts."""

    def __init__(self, topics: dict[str, int]) -> None:
        self.topics = dict(topics)
        self.logs: dict[TopicPartition, list[StoredRecord]] = {}
        self.log_start: dict[TopicPartition, int] = {}
        self.offsets: dict[str, dict[TopicPartition, int]] = {}
        self.generations: dict[str, tuple[int, dict[str, list[TopicPartition]]]] = {}
        self.generation_log: list[tuple[str, int, dict[str, list[TopicPartition]]]] = []
        self.commit_log: list[tuple[str, dict[TopicPartition, int], str | None, int | None]] = []
        self.fetches = 0
        self._appended = asyncio.Event()

    # --- partition data ---------------------------------------------------------

    def partitions_of(self, topic: str) -> int | None:
        return self.topics.get(topic)

    def produce(self, topic: str, partition: int, *values: bytes, key: bytes | None = None) -> None:
        log = self.logs.setdefault((topic, partition), [])
        start = self.log_start.get((topic, partition), 0) + len(log)
        for i, value in enumerate(values):
            log.append(StoredRecord(start + i, 1_700_000_000_000 + start + i, key, value, [("h", b"v")]))
        self._appended.set()
        self._appended = asyncio.Event()

    def truncate_front(self, topic: str, partition: int, new_start: int) -> None:
        """Retention: drop records below ``new_start``."""
        tp = (topic, partition)
        start = self.log_start.get(tp, 0)
        self.logs[tp] = [r for r in self.logs.get(tp, []) if r.offset >= new_start]
        self.log_start[tp] = max(start, new_start)

    def _check(self, topic: str, partition: int) -> TopicPartition:
        count = self.topics.get(topic)
        if count is None:
            raise TopicNotFound(topic)
        if not 0 <= partition < count:
            raise PartitionNotFound(topic, partition)
        return topic, partition

    async def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        tp = self._check(topic, partition)
        start = self.log_start.get(tp, 0)
        return start, start + len(self.logs.get(tp, []))

    async def fetch(
        self, topic: str, partition: int, offset: int, max_bytes: int, timeout_ms: int
    ) -> tuple[list[StoredRecord], int, int]:
        self.fetches += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            start, end = await self.watermarks(topic, partition)
            if not start <= offset <= end:
                raise OffsetOutOfRange(topic, partition, offset, start, end)
            if offset < end or loop.time() >= deadline:
                break
            try:
                await asyncio.wait_for(self._appended.wait(), deadline - loop.time())
            except TimeoutError:
                pass
        out, size = [], 0
        for record in self.logs.get((topic, partition), [])[offset - start :]:
            if out and size + len(record.value or b"") > max_bytes:
                break
            out.append(record)
            size += len(record.value or b"")
        return out, end, start

    # --- metadata state machine -------------------------------------------------

    async def commit_generation(self, group: str, generation: int, plan: dict[str, list[TopicPartition]],
                                protocol_type: str | None = None) -> None:
        previous = self.generations.get(group, (0, {}))[0]
        assert generation > previous, f"generation {generation} of {group} not above {previous}"
        self.generations[group] = (generation, {m: list(a) for m, a in plan.items()})
        self.generation_log.append((group, generation, plan))

    async def commit(
        self, group: str, offsets: dict[TopicPartition, int], member_id: str | None, generation: int | None
    ) -> None:
        """Apply an offset commit the way the metadata state machine does: fenced by the persisted generation."""
        current, plan = self.generations.get(group, (0, {}))
        if member_id is None:
            if plan:
                raise GenerationRequired(group, current)
        elif generation != current or member_id not in plan:
            raise StaleGeneration(group, generation if generation is not None else -1, current)
        self.commit_log.append((group, dict(offsets), member_id, generation))
        self.offsets.setdefault(group, {}).update(offsets)

    async def committed(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        stored = self.offsets.get(group, {})
        return {tp: stored[tp] for tp in partitions if tp in stored}

    async def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        return dict(self.offsets.get(group, {}))

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        return {tp: (await self.watermarks(*tp))[1] for tp in partitions}


def coordinator_for(broker: StandInBroker, **options) -> GroupCoordinator:
    options = {"session_timeout_range_ms": (10, 60_000), "initial_rebalance_delay_ms": 30, "tick_ms": 5} | options
    return GroupCoordinator(broker.commit_generation, broker.partitions_of, **options)


def rest_consumers_for(broker: StandInBroker, coordinator: GroupCoordinator, **options) -> RestConsumers:
    options = {
        "session_timeout_ms": 1000,
        "rebalance_timeout_ms": 1000,
        "heartbeat_interval_ms": 20,
        "auto_commit_interval_ms": 50,
        "retry_backoff_ms": 10,
        "tick_ms": 10,
    } | options
    return RestConsumers(
        1,
        fetch=broker.fetch,
        watermarks=broker.watermarks,
        committed=broker.committed,
        commit=broker.commit,
        membership=coordinator,
        partitions_of=broker.partitions_of,
        **options,
    )


class StandInFacade:
    """``GroupsFacade`` over the stand-in broker: this broker (id 1) coordinates and owns ``rk1-`` instances;
    requests for other owners (or, with ``coordinator_elsewhere``, for groups) get a canned forwarded answer."""

    def __init__(self, broker: StandInBroker, coordinator: GroupCoordinator, rest_consumers: RestConsumers) -> None:
        self.broker = broker
        self._coordinator = coordinator
        self.rest_consumers = rest_consumers
        self.coordinator_elsewhere = False
        self.forwarded: list[str] = []

    def coordinator(self) -> GroupCoordinator:
        return self._coordinator

    async def forward_to_coordinator(self, request: web.Request) -> web.StreamResponse | None:
        if not self.coordinator_elsewhere:
            return None
        self.forwarded.append(request.path)
        return web.json_response({"forwarded_to": 2})

    async def forward_to_instance_owner(self, request: web.Request, instance_id: str) -> web.StreamResponse | None:
        owner = owner_broker(instance_id)
        if owner is None or owner == 1:
            return None
        self.forwarded.append(request.path)
        return web.json_response({"forwarded_to": owner})

    def partitions_of(self, topic: str) -> int | None:
        return self.broker.partitions_of(topic)

    def check_partitions(self, partitions: list[TopicPartition]) -> None:
        for topic, partition in partitions:
            count = self.partitions_of(topic)
            if count is None:
                raise TopicNotFound(topic)
            if not 0 <= partition < count:
                raise PartitionNotFound(topic, partition)

    async def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        return await self.broker.committed_offsets(group)

    async def commit_offsets(
        self, group: str, offsets: dict[TopicPartition, int], member_id: str | None, generation: int | None,
        *, reset: bool = False,
    ) -> None:
        await self.broker.commit(group, offsets, member_id, generation)  # the stand-in stores any offset

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        return await self.broker.end_offsets(partitions)
