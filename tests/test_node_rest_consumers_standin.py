"""A stand-in broker for the consumer-group tests (no tests here): partition logs kept in lists, with the
broker's contracts (long-poll fetch, out-of-range errors), and group generations and committed offsets kept
by the real metadata state machine (raftka.node.cluster.metadata), applied in-process without Raft: commits are
fenced by generation, grow-only unless ``reset``, and rejected as the broker rejects them. Also a ``run``
helper for asyncio tests."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import Awaitable, Callable

from aiohttp import web

from raftka.node.cluster.broker import MetadataRejected
from raftka.node.cluster.metadata import MetadataStateMachine, command, partition_key
from raftka.node.errors import OffsetOutOfRange, PartitionNotFound, TopicNotFound
from raftka.node.groups.coordinator import GroupCoordinator
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
    """Partition logs in lists; generations and committed offsets in a real metadata state machine.

    ``generations`` and ``generation_log`` record what the coordinator persisted (with its plans),
    ``commit_log`` the commits the state machine accepted."""

    def __init__(self, topics: dict[str, int]) -> None:
        self.topics = dict(topics)
        self.logs: dict[TopicPartition, list[StoredRecord]] = {}
        self.log_start: dict[TopicPartition, int] = {}
        self._metadata_dir = tempfile.TemporaryDirectory(prefix="standin-metadata-")
        self.metadata = MetadataStateMachine(self._metadata_dir.name)
        self._index = itertools.count(1)
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

    def _apply(self, op: str, **fields) -> None:
        """Apply one metadata command as the metadata group would; a refusal raises what the broker raises."""
        for topic, count in self.topics.items():  # topics the test added meanwhile exist in the metadata too
            if self.metadata.topic(topic) is None:
                self.metadata.apply(next(self._index), 1, command(
                    "create_topic", name=topic, id=topic, assignment=[[1]] * count, configs={}))
        result = self.metadata.apply(next(self._index), 1, command(op, **fields))
        if "error" in result:
            raise MetadataRejected(result["error"], result["message"])

    async def commit_generation(self, group: str, generation: int, plan: dict[str, list[TopicPartition]],
                                protocol_type: str | None = None) -> None:
        self.restore_generation(group, generation, plan, protocol_type)
        self.generation_log.append((group, generation, plan))

    def restore_generation(self, group: str, generation: int, plan: dict[str, list[TopicPartition]],
                           protocol_type: str | None = None) -> None:
        """Persist a generation (as a coordinator that ran before would have)."""
        self._apply("group_generation", group=group, generation=generation, members=sorted(plan),
                    protocol_type=protocol_type)
        self.generations[group] = (generation, {m: list(a) for m, a in plan.items()})

    async def commit(
        self, group: str, offsets: dict[TopicPartition, int], member_id: str | None, generation: int | None,
        *, reset: bool = False,
    ) -> None:
        """An offset commit through the metadata state machine: fenced by the persisted generation,
        grow-only per partition unless ``reset``."""
        self._apply("commit_offsets", group=group, generation=generation, member=member_id, reset=reset,
                    offsets={partition_key(t, p): o for (t, p), o in offsets.items()})
        self.commit_log.append((group, dict(offsets), member_id, generation))

    @property
    def offsets(self) -> dict[str, dict[TopicPartition, int]]:
        """Committed offsets per group, as the metadata state holds them."""
        out = {}
        for group, state in self.metadata.state["groups"].items():
            stored = {}
            for key, offset in state["offsets"].items():
                topic, _, partition = key.rpartition("/")
                stored[(topic, int(partition))] = offset
            out[group] = stored
        return out

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
        topic_names=lambda: list(broker.topics),
        **options,
    )


class StandInFacade:
    """``GroupsFacade`` over the stand-in broker: this broker (id 1) coordinates and hosts the instances created
    here; requests for instances of broker 2 (or, with ``coordinator_elsewhere``, for groups) get a canned
    forwarded answer."""

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

    async def forward_to_instance_owner(
        self, request: web.Request, group: str, instance_id: str
    ) -> web.StreamResponse | None:
        owner = await self.instance_elsewhere(request, group, instance_id)
        if owner is None or self.rest_consumers.has(group, instance_id):
            return None
        self.forwarded.append(request.path)
        return web.json_response({"forwarded_to": owner})

    async def instance_elsewhere(self, request: web.Request, group: str, instance_id: str) -> int | None:
        """Broker 2 hosts generated ``rk2-`` ids and instances named ``elsewhere-...``."""
        owner = owner_broker(instance_id) or (2 if instance_id.startswith("elsewhere-") else None)
        return None if owner == 1 else owner

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
        await self.broker.commit(group, offsets, member_id, generation, reset=reset)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        return await self.broker.end_offsets(partitions)
