"""REST Proxy v2 consumer instances: server-side consumers living on the broker that created them.

An instance id is the ``name`` given at creation (Confluent: "the name is used
in URLs"), unique in its group across the cluster; without a name it is
``rk<broker id>-<uuid4 hex>``, which names its owner (``owner_broker``). Other
brokers find a named instance's owner by asking their peers, and forward.
Everything the instance needs from the cluster is injected:
``fetch``/``watermarks`` (partition leaders), ``committed``/``commit``
(offsets in the metadata group) and ``membership`` (the group coordinator,
local or behind HTTP).

Behaviour, following Confluent's REST Proxy v2 over a Kafka consumer:

* ``subscribe`` (a topic list, or ``topic_pattern``: a regular expression
  that must match whole topic names, re-evaluated as topics come and go)
  returns at once; the instance joins the group in the
  background and keeps its session alive with heartbeats (due every
  ``heartbeat_interval_ms``, sent by ``records`` calls and a background task).
  A rebalance revokes everything (Kafka's eager protocol): positions are
  dropped, with auto-commit they are committed first, and ``records``
  returns nothing until the instance has joined again. ``assign`` (manual
  partitions) and ``subscribe`` exclude each other; ``unsubscribe`` clears both.
* ``records`` polls every assigned partition from its position: the
  committed offset, else ``auto.offset.reset`` (also applied when a position
  falls outside the log, e.g. after retention; with ``none`` that is an error
  instead, as in Kafka). It returns as soon as any partition has records
  (Confluent waits for the whole timeout), or, with ``fetch.min.bytes``, once
  that many bytes of keys and values came together; after at most
  ``timeout_ms`` otherwise; ``max_bytes`` bounds the keys and values returned
  (at least one record always comes through). Positions move past the records
  returned.
* ``commit_offsets`` with explicit offsets takes, as Confluent's v2 does, the
  offset of the last record consumed and stores offset + 1 (the next one to
  read, as everywhere in raftka); without offsets it commits the current
  positions. An offset's ``metadata`` string is accepted and not stored
  (reading committed offsets answers ``""``). Commits of a subscribed instance carry its member id and
  generation, so a stale one is refused (409). ``auto.commit.enable``
  (default true) commits positions every ``auto_commit_interval_ms`` on
  ``records``, before a rebalance, on unsubscribe and on delete.
* Instances idle for ``instance_timeout_ms`` (Confluent's
  ``consumer.instance.timeout.ms``, 5 minutes) are deleted like ``delete``
  (commit if auto-commit, leave the group).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from raftka.node.cluster.topics import validate_topic_name
from raftka.node.errors import (
    ApiError,
    NoCommittedOffset,
    ConsumerAlreadyExists,
    ConsumerAlreadySubscribed,
    ConsumerInstanceNotFound,
    InvalidConsumerConfig,
    InvalidRequest,
    OffsetOutOfRange,
    PartitionNotFound,
    RebalanceInProgress,
    StaleGeneration,
    TopicNotFound,
)
from raftka.node.groups.assignor import TopicPartition
from raftka.node.groups.coordinator import JoinResult, validate_group_name
from raftka.node.http.codecs import EmbeddedFormat
from raftka.raft.wake_grid import sleep_on_grid

__all__ = [
    "MAX_REQUEST_TIMEOUT_MS",
    "GroupMembership",
    "InstanceConfig",
    "PolledRecords",
    "RestConsumers",
    "owner_broker",
    "parse_instance_config",
]

log = logging.getLogger(__name__)

Fetch = Callable[[str, int, int, int, int], Awaitable[tuple[Sequence[Any], int, int]]]
"""``(topic, partition, offset, max_bytes, timeout_ms) -> (records, high_watermark, log_start)``; records
have ``offset``, ``timestamp``, ``key``, ``value``, ``headers``; raises ``OffsetOutOfRange`` like the fetch API."""
Watermarks = Callable[[str, int], Awaitable[tuple[int, int]]]
"""``(topic, partition) -> (log_start_offset, high_watermark)``."""
Committed = Callable[[str, list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]
"""``(group, partitions) -> {partition: committed offset}`` (partitions without a commit are left out)."""
Commit = Callable[[str, dict[TopicPartition, int], str | None, int | None], Awaitable[None]]
"""``(group, {partition: next offset}, member_id, generation)``; member id and generation None = manual assignment."""

MAX_REQUEST_TIMEOUT_MS = 30_000  # a forwarded long poll must end within the forwarder's 35 s timeout
_DEFAULT_REQUEST_TIMEOUT_MS = 1000  # Confluent's consumer.request.timeout.ms
_GENERATED_ID = re.compile(r"rk(\d{1,10})-[0-9a-f]{32}")
_NAME = re.compile(r"[a-zA-Z0-9._-]{1,64}")
_CONFIG_FIELDS = ("name", "id", "format", "auto.offset.reset", "auto.commit.enable", "fetch.min.bytes",
                  "consumer.request.timeout.ms")  # "id": Confluent's older spelling of "name"
_FORMATS = {"binary": EmbeddedFormat.BINARY, "json": EmbeddedFormat.JSON}
_SCHEMA_FORMATS = ("avro", "jsonschema", "protobuf")
_RESETS = ("earliest", "latest", "none")
_INT32_MAX = 2**31 - 1


class GroupMembership(Protocol):
    """What an instance needs from the group coordinator; ``GroupCoordinator`` itself fits."""

    async def join(
        self,
        group: str,
        member_id: str | None,
        topics: list[str],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        client_id: str | None = None,
    ) -> JoinResult: ...

    async def heartbeat(self, group: str, member_id: str, generation: int) -> None: ...

    async def leave(self, group: str, member_id: str) -> None: ...


def owner_broker(instance_id: str) -> int | None:
    """The broker that owns ``instance_id`` when raftka generated the id (no name given), else None."""
    match = _GENERATED_ID.fullmatch(instance_id)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    name: str | None = None
    format: EmbeddedFormat = EmbeddedFormat.BINARY
    auto_offset_reset: str = "latest"
    auto_commit: bool = True
    request_timeout_ms: int = _DEFAULT_REQUEST_TIMEOUT_MS  # ``records`` timeout when the request gives none
    fetch_min_bytes: int = -1  # ``records`` waits for this many bytes of keys and values; -1: for any record


def parse_instance_config(doc: object) -> InstanceConfig:
    """Validate the body of ``POST /consumers/{group}``; JSON null means "default"."""
    if not isinstance(doc, Mapping):
        raise InvalidConsumerConfig("The consumer config must be a JSON object.")
    unknown = sorted(set(doc) - set(_CONFIG_FIELDS))
    if unknown:
        raise InvalidConsumerConfig(
            f"Unknown consumer config {', '.join(map(repr, unknown))}; supported: {', '.join(_CONFIG_FIELDS)}."
        )
    values = {key: value for key, value in doc.items() if value is not None}
    config = InstanceConfig()
    name = values.get("name", values.get("id", config.name))
    if name is not None and (type(name) is not str or not _NAME.fullmatch(name)):
        raise InvalidConsumerConfig(f"'name' must be 1 to 64 of a-z, A-Z, 0-9, '.', '_' and '-', got {name!r}.")
    if name is not None and _GENERATED_ID.fullmatch(name):
        raise InvalidConsumerConfig(f"'name' {name!r} has the form of the ids raftka generates; choose another.")
    fmt = values.get("format", "binary")
    if fmt in _SCHEMA_FORMATS:
        raise InvalidConsumerConfig(f"Format '{fmt}' needs a schema registry, which raftka does not have; use binary or json.")
    if fmt not in _FORMATS:
        raise InvalidConsumerConfig(f"'format' must be 'binary' or 'json', got {fmt!r}.")
    reset = values.get("auto.offset.reset", config.auto_offset_reset)
    if reset not in _RESETS:
        raise InvalidConsumerConfig(f"'auto.offset.reset' must be 'earliest', 'latest' or 'none', got {reset!r}.")
    auto_commit = values.get("auto.commit.enable", config.auto_commit)
    if isinstance(auto_commit, str) and auto_commit.lower() in ("true", "false"):
        auto_commit = auto_commit.lower() == "true"
    if type(auto_commit) is not bool:
        raise InvalidConsumerConfig(f"'auto.commit.enable' must be 'true' or 'false', got {auto_commit!r}.")
    timeout = _config_int(values, "consumer.request.timeout.ms", config.request_timeout_ms, 0, MAX_REQUEST_TIMEOUT_MS)
    min_bytes = _config_int(values, "fetch.min.bytes", config.fetch_min_bytes, -1, _INT32_MAX)
    return InstanceConfig(name, _FORMATS[fmt], reset, auto_commit, timeout, min_bytes)


def _config_int(values: Mapping[str, object], key: str, default: int, low: int, high: int) -> int:
    """An integer config, given as a JSON number or a decimal string (as Kafka's configs are)."""
    value = values.get(key, default)
    if type(value) is str and re.fullmatch(r"-?[0-9]{1,19}", value):
        value = int(value)
    if type(value) is not int or not low <= value <= high:
        raise InvalidConsumerConfig(f"'{key}' must be an integer from {low} to {high}, got {value!r}.")
    return value


@dataclass(frozen=True, slots=True)
class PolledRecords:
    """Result of ``records``: the instance's format and ``(topic, partition, records)`` per partition."""

    format: EmbeddedFormat
    batches: list[tuple[str, int, list[Any]]]


@dataclass(eq=False)
class _Instance:
    group: str
    instance_id: str
    config: InstanceConfig
    last_used: float
    topics: tuple[str, ...] = ()  # subscription (for a pattern: the topics it matches now)
    pattern: re.Pattern[str] | None = None  # ``topic_pattern`` subscription
    manual: bool = False  # partitions given by ``assign``
    assignment: tuple[TopicPartition, ...] = ()
    positions: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to return
    member_id: str | None = None
    generation: int | None = None
    join_settled: asyncio.Event = field(default_factory=asyncio.Event)  # the latest join succeeded or failed for good
    join_task: asyncio.Task[None] | None = None
    join_error: ApiError | None = None  # a join refused for good (bad subscription); raised by ``records``
    last_heartbeat: float = 0.0
    last_auto_commit: float = 0.0
    last_committed: dict[TopicPartition, int] = field(default_factory=dict)
    rotation: int = 0  # which partition a poll starts with, so none starves under ``max_bytes``
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    owner: str | None = None  # the principal that created it (None: anyone may use it)

    def fencing(self) -> tuple[str | None, int | None]:
        """Member id and generation a commit must carry (None, None in manual mode).

        Only asked while the instance holds partitions, so a subscribed instance has both then.
        """
        return (self.member_id, self.generation) if self.topics else (None, None)


def _record_size(record: Any) -> int:
    return len(record.key or b"") + len(record.value or b"")


def _within(records: list[Any], budget: int) -> list[Any]:
    """The longest prefix of ``records`` whose keys and values fit in ``budget`` bytes."""
    size = 0
    for i, record in enumerate(records):
        size += _record_size(record)
        if size > budget:
            return records[:i]
    return records


class RestConsumers:
    """All REST consumer instances hosted by one broker."""

    def __init__(
        self,
        broker_id: int,
        *,
        fetch: Fetch,
        watermarks: Watermarks,
        committed: Committed,
        commit: Commit,
        membership: GroupMembership,
        partitions_of: Callable[[str], int | None],
        topic_names: Callable[[], Iterable[str]],
        may_read: Callable[[str, str], bool] = lambda owner, topic: True,
        clock: Callable[[], float] = time.monotonic,
        instance_timeout_ms: int = 300_000,
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 30_000,
        heartbeat_interval_ms: int = 3000,
        auto_commit_interval_ms: int = 5000,
        retry_backoff_ms: int = 200,
        tick_ms: int = 500,
    ) -> None:
        self._broker_id = broker_id
        self._fetch_records = fetch
        self._watermarks = watermarks
        self._committed = committed
        self._commit = commit
        self._membership = membership
        self._partitions_of = partitions_of
        self._topic_names = topic_names
        self._may_read = may_read  # (owner principal, topic): a pattern subscription matches only those
        self._clock = clock
        self._instance_timeout = instance_timeout_ms / 1000
        self._session_timeout_ms = session_timeout_ms
        self._rebalance_timeout_ms = rebalance_timeout_ms
        self._heartbeat_interval = heartbeat_interval_ms / 1000
        self._auto_commit_interval = auto_commit_interval_ms / 1000
        self._retry_backoff = retry_backoff_ms / 1000
        self._tick = tick_ms / 1000
        self._instances: dict[tuple[str, str], _Instance] = {}
        self._maintenance: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task that heartbeats and expires idle instances."""
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain_forever(), name="rest-consumers")

    async def stop(self) -> None:
        """Close every instance (commit if auto-commit, leave its group) and stop the background task."""
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
            self._maintenance = None
        await asyncio.gather(*(self._close(inst) for inst in list(self._instances.values())))

    # --- instances ------------------------------------------------------------

    def create(self, group: str, config: InstanceConfig, owner: str | None = None) -> str:
        """Create an instance in ``group`` for the principal `owner`; returns its id: the config's name, else a
        generated one."""
        validate_group_name(group)
        instance_id = config.name or f"rk{self._broker_id}-{uuid.uuid4().hex}"
        if (group, instance_id) in self._instances:
            raise ConsumerAlreadyExists(group, instance_id)
        self._instances[(group, instance_id)] = _Instance(group, instance_id, config, self._clock(), owner=owner)
        return instance_id

    @property
    def broker_id(self) -> int:
        return self._broker_id

    def has(self, group: str, instance_id: str) -> bool:
        """Does this broker host the instance?"""
        return (group, instance_id) in self._instances

    def check_owner(self, group: str, instance_id: str, principal: str) -> None:
        """ConsumerInstanceNotFound unless `principal` created the instance (or the broker acts for itself)."""
        owner = self._instance(group, instance_id).owner
        if owner is not None and principal != owner and not principal.startswith("Broker:"):
            raise ConsumerInstanceNotFound(group, instance_id)

    def config(self, group: str, instance_id: str) -> InstanceConfig:
        return self._instance(group, instance_id).config

    async def delete(self, group: str, instance_id: str) -> None:
        await self._close(self._instance(group, instance_id))

    # --- subscription and assignment -----------------------------------------

    async def subscribe(self, group: str, instance_id: str, topics: Iterable[str]) -> None:
        """Subscribe to ``topics`` (replacing an earlier subscription); joining happens in the background."""
        inst = self._subscribable(group, instance_id)
        wanted = tuple(sorted({validate_topic_name(topic) for topic in topics}))
        if not wanted:
            raise InvalidRequest("'topics' must name at least one topic.")
        inst.pattern = None
        self._set_topics(inst, wanted)

    async def subscribe_pattern(self, group: str, instance_id: str, pattern: str) -> None:
        """Subscribe to every topic whose whole name matches the regular expression ``pattern``, now and as topics
        are created and deleted (as Kafka's pattern subscription)."""
        inst = self._subscribable(group, instance_id)
        try:
            compiled = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise InvalidRequest(f"'topic_pattern' {pattern!r} is not a valid regular expression: {exc}.") from None
        inst.pattern = compiled
        self._set_topics(inst, self._matching(compiled, inst.owner))

    def _subscribable(self, group: str, instance_id: str) -> _Instance:
        inst = self._instance(group, instance_id)
        if inst.manual:
            raise ConsumerAlreadySubscribed(
                f"Consumer instance '{instance_id}' has manually assigned partitions; subscribing and assigning "
                "exclude each other (delete the subscription first)."
            )
        return inst

    def _matching(self, pattern: re.Pattern[str], owner: str | None) -> tuple[str, ...]:
        """The topics the pattern matches that the instance's owner may read (as Kafka matches a pattern against
        the topics the client may see)."""
        return tuple(sorted(topic for topic in self._topic_names() if pattern.fullmatch(topic)
                            and (owner is None or self._may_read(owner, topic))))

    def _set_topics(self, inst: _Instance, topics: tuple[str, ...]) -> None:
        """Join (again) when the subscribed topics change; a pattern matching nothing yet waits for a topic."""
        if topics != inst.topics or inst.join_error is not None:
            inst.topics = topics
            if topics:
                self._start_join(inst)
            else:
                inst.assignment = ()
                inst.positions.clear()

    def subscription(self, group: str, instance_id: str) -> list[str]:
        return list(self._instance(group, instance_id).topics)

    async def unsubscribe(self, group: str, instance_id: str) -> None:
        """Drop the subscription or the manual assignment (committing first with auto-commit)."""
        inst = self._instance(group, instance_id)
        await self._stop_joining(inst)
        await self._auto_commit_now(inst)
        await self._leave(inst)
        inst.topics, inst.pattern, inst.manual, inst.assignment = (), None, False, ()
        inst.positions.clear()
        inst.join_settled.clear()
        inst.join_error = None

    async def assign(self, group: str, instance_id: str, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly ``partitions`` (no group membership); positions of partitions kept stay."""
        inst = self._instance(group, instance_id)
        if inst.topics or inst.pattern is not None:
            shown = list(inst.topics) if inst.pattern is None else f"topic_pattern {inst.pattern.pattern!r}"
            raise ConsumerAlreadySubscribed(
                f"Consumer instance '{instance_id}' is subscribed to {shown}; subscribing and assigning "
                "exclude each other (delete the subscription first)."
            )
        wanted = tuple(sorted(set(self._check_partitions(partitions))))
        await self._auto_commit_now(inst)
        inst.manual, inst.assignment = bool(wanted), wanted
        inst.positions = {tp: offset for tp, offset in inst.positions.items() if tp in wanted}

    def assignments(self, group: str, instance_id: str) -> list[TopicPartition]:
        return list(self._instance(group, instance_id).assignment)

    # --- reading --------------------------------------------------------------

    async def records(
        self, group: str, instance_id: str, timeout_ms: int | None = None, max_bytes: int = 64 * 1024 * 1024
    ) -> PolledRecords:
        """Poll the assigned partitions (see module docstring); positions move past what is returned."""
        inst = self._instance(group, instance_id)
        loop = asyncio.get_running_loop()
        timeout = inst.config.request_timeout_ms if timeout_ms is None else timeout_ms
        deadline = loop.time() + timeout / 1000
        empty = PolledRecords(inst.config.format, [])
        async with inst.lock:
            if inst.topics:
                await self._heartbeat(inst)
                if not inst.join_settled.is_set():
                    try:
                        async with asyncio.timeout_at(deadline):
                            await inst.join_settled.wait()
                    except TimeoutError:
                        return empty
                if inst.join_error is not None:
                    raise inst.join_error
            if inst.config.auto_commit and self._clock() - inst.last_auto_commit >= self._auto_commit_interval:
                await self._auto_commit_now(inst)
            partitions = inst.assignment
            if not partitions:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                return empty
            await self._resolve_positions(inst, partitions)
            batches, size = [], 0
            while True:
                fetched = await self._poll(inst, partitions, deadline, max_bytes - size)
                for (topic, partition), start, records in fetched:
                    # Only if nothing (rebalance, seek) moved the position while the fetch was out.
                    if records and inst.positions.get((topic, partition)) == start:
                        inst.positions[(topic, partition)] = records[-1].offset + 1
                        batches.append((topic, partition, records))
                        size += sum(map(_record_size, records))
                if not fetched or size >= min(inst.config.fetch_min_bytes, max_bytes) or loop.time() >= deadline:
                    break  # fetch.min.bytes -1 (the default) or 0: the first records are enough
            inst.last_used = self._clock()
            return PolledRecords(inst.config.format, batches)

    # --- offsets and positions ------------------------------------------------

    async def commit_offsets(
        self, group: str, instance_id: str, last_consumed: Mapping[TopicPartition, int] | None = None
    ) -> None:
        """Commit ``last_consumed`` (offset of the last record consumed; stored + 1), or all positions if None."""
        inst = self._instance(group, instance_id)
        if last_consumed is None:
            await self._commit_positions(inst, force=True)
            return
        self._check_partitions(last_consumed)
        for (topic, partition), offset in last_consumed.items():
            if type(offset) is not int or offset < -1:
                raise InvalidRequest(f"Offset for {topic}/{partition} must be an integer >= -1, got {offset!r}.")
        if inst.topics and inst.generation is None:
            raise RebalanceInProgress(group)  # (re)joining: no generation to fence the commit with yet
        member_id, generation = inst.fencing()
        await self._commit(group, {tp: offset + 1 for tp, offset in last_consumed.items()}, member_id, generation)

    async def committed_offsets(
        self, group: str, instance_id: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The group's committed (next-to-read) offsets of ``partitions``; ones never committed are left out."""
        self._instance(group, instance_id)
        return await self._committed(group, list(dict.fromkeys(self._check_partitions(partitions))))

    def seek(self, group: str, instance_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Set the next offset ``records`` returns for assigned partitions."""
        inst = self._instance(group, instance_id)
        self._check_assigned(inst, offsets)
        for (topic, partition), offset in offsets.items():
            if type(offset) is not int or offset < 0:
                raise InvalidRequest(f"Position for {topic}/{partition} must be an integer >= 0, got {offset!r}.")
        inst.positions.update(offsets)

    async def seek_to_beginning(self, group: str, instance_id: str, partitions: Iterable[TopicPartition]) -> None:
        await self._seek_to_edge(group, instance_id, partitions, beginning=True)

    async def seek_to_end(self, group: str, instance_id: str, partitions: Iterable[TopicPartition]) -> None:
        await self._seek_to_edge(group, instance_id, partitions, beginning=False)

    # --- internals ------------------------------------------------------------

    def _instance(self, group: str, instance_id: str) -> _Instance:
        inst = self._instances.get((group, instance_id))
        if inst is None:
            raise ConsumerInstanceNotFound(group, instance_id)
        inst.last_used = self._clock()
        return inst

    def _check_partitions(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        checked = []
        for topic, partition in partitions:
            count = self._partitions_of(topic)
            if count is None:
                raise TopicNotFound(topic)
            if type(partition) is not int or not 0 <= partition < count:
                raise PartitionNotFound(topic, partition)
            checked.append((topic, partition))
        return checked

    @staticmethod
    def _check_assigned(inst: _Instance, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        wanted = list(partitions)
        missing = [tp for tp in wanted if tp not in inst.assignment]
        if missing:
            shown = ", ".join(f"{topic}/{partition}" for topic, partition in missing)
            raise InvalidRequest(
                f"Partition(s) {shown} are not assigned to consumer instance '{inst.instance_id}' "
                f"(assigned: {[f'{t}/{p}' for t, p in inst.assignment]})."
            )
        return wanted

    async def _seek_to_edge(
        self, group: str, instance_id: str, partitions: Iterable[TopicPartition], *, beginning: bool
    ) -> None:
        inst = self._instance(group, instance_id)
        wanted = self._check_assigned(inst, partitions)
        edges = await asyncio.gather(*(self._watermarks(topic, partition) for topic, partition in wanted))
        for tp, (log_start, high_watermark) in zip(wanted, edges, strict=True):
            inst.positions[tp] = log_start if beginning else high_watermark

    async def _resolve_positions(self, inst: _Instance, partitions: tuple[TopicPartition, ...]) -> None:
        missing = [tp for tp in partitions if tp not in inst.positions]
        if not missing:
            return
        committed = await self._committed(inst.group, missing)
        for tp in missing:
            if tp in inst.positions or tp not in inst.assignment:
                continue  # sought, or revoked, while the lookup was out
            if tp in committed:
                inst.positions[tp] = committed[tp]
            elif inst.config.auto_offset_reset == "none":
                raise NoCommittedOffset(inst.group, *tp)
            else:
                log_start, high_watermark = await self._watermarks(*tp)
                inst.positions.setdefault(tp, log_start if inst.config.auto_offset_reset == "earliest" else high_watermark)

    async def _fetch_partition(
        self, inst: _Instance, tp: TopicPartition, start: int, max_bytes: int, timeout_ms: int
    ) -> tuple[TopicPartition, int, list[Any]]:
        try:
            records, _, _ = await self._fetch_records(tp[0], tp[1], start, max_bytes, timeout_ms)
        except OffsetOutOfRange as exc:
            if inst.config.auto_offset_reset == "none":
                raise
            reset = exc.earliest if inst.config.auto_offset_reset == "earliest" else exc.latest
            log.info("consumer %s: position %d of %s/%d out of range, reset to %d", inst.instance_id, start, *tp, reset)
            if inst.positions.get(tp) == start:
                inst.positions[tp] = reset
            return tp, start, []
        return tp, start, [record for record in records if record.offset >= start]

    async def _poll(
        self, inst: _Instance, partitions: tuple[TopicPartition, ...], deadline: float, max_bytes: int
    ) -> list[tuple[TopicPartition, int, list[Any]]]:
        """One pass without waiting, then long-poll all partitions until the first has records.

        A partition whose fetch fails is left out of this poll; if every one fails, the first error is raised.
        """
        loop = asyncio.get_running_loop()
        shift = inst.rotation % len(partitions)
        inst.rotation += 1
        fetched: list[tuple[TopicPartition, int, list[Any]]] = []
        healthy: list[TopicPartition] = []
        failures: list[Exception] = []
        budget = max_bytes
        for tp in partitions[shift:] + partitions[:shift]:
            start = inst.positions.get(tp)
            if start is None:
                continue
            try:
                result = await self._fetch_partition(inst, tp, start, budget, 0)
            except OffsetOutOfRange:
                raise  # only with auto.offset.reset none: the client must decide
            except Exception as exc:  # noqa: BLE001 - see docstring
                failures.append(exc)
                continue
            healthy.append(tp)
            records = result[2] if not fetched else _within(result[2], budget)  # only the first may overshoot
            if records:
                fetched.append((tp, start, records))
                budget -= sum(map(_record_size, records))
                if budget <= 0:
                    break
        while not fetched and healthy and (remaining := deadline - loop.time()) > 0:
            tasks = {
                asyncio.create_task(self._fetch_partition(inst, tp, start, max_bytes, int(remaining * 1000))): tp
                for tp in healthy
                if (start := inst.positions.get(tp)) is not None
            }
            if not tasks:
                break
            done, pending = await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if (exc := task.exception()) is not None:
                    if isinstance(exc, OffsetOutOfRange):
                        raise exc  # only with auto.offset.reset none
                    failures.append(exc)
                    healthy.remove(tasks[task])
                    continue
                tp, start, records = task.result()
                records = records if not fetched else _within(records, budget)
                if records:
                    fetched.append((tp, start, records))
                    budget -= sum(map(_record_size, records))
            if not done:
                break
        if not fetched and failures and not healthy:
            raise failures[0]
        return fetched

    async def _heartbeat(self, inst: _Instance) -> None:
        now = self._clock()
        if inst.generation is None or now - inst.last_heartbeat < self._heartbeat_interval:
            return
        inst.last_heartbeat = now
        member_id, generation = inst.member_id, inst.generation
        try:
            await self._membership.heartbeat(inst.group, member_id, generation)
        except (RebalanceInProgress, StaleGeneration):
            if inst.member_id == member_id and inst.generation == generation:
                self._start_join(inst)
        except ConsumerInstanceNotFound:
            if inst.member_id == member_id and inst.generation == generation:
                inst.member_id = None
                self._start_join(inst)
        except Exception as exc:  # noqa: BLE001 - coordinator unreachable: keep going, the session may still hold
            log.warning("consumer %s: heartbeat failed: %r", inst.instance_id, exc)

    def _start_join(self, inst: _Instance) -> None:
        if inst.closed:
            return
        if inst.join_task is not None:
            inst.join_task.cancel()
        inst.join_settled.clear()
        inst.join_error = None
        inst.join_task = asyncio.get_running_loop().create_task(self._join(inst), name=f"join-{inst.instance_id}")

    async def _join(self, inst: _Instance) -> None:
        if inst.member_id is not None:
            await self._auto_commit_now(inst)  # before giving the partitions up
        inst.assignment, inst.generation = (), None
        inst.positions.clear()
        inst.last_committed = {}
        while True:
            try:
                result = await self._membership.join(
                    inst.group,
                    inst.member_id,
                    list(inst.topics),
                    self._session_timeout_ms,
                    self._rebalance_timeout_ms,
                    client_id=inst.instance_id,
                )
            except ConsumerInstanceNotFound as exc:
                if inst.member_id is not None:
                    inst.member_id = None  # evicted meanwhile: join afresh
                    continue
                log.warning("consumer %s: join failed, retrying: %s", inst.instance_id, exc.message)
                await asyncio.sleep(self._retry_backoff)
                continue
            except ApiError as exc:
                if not exc.retriable:
                    log.warning("consumer %s: join refused: %s", inst.instance_id, exc.message)
                    inst.join_error = exc
                    inst.join_settled.set()
                    return
                log.info("consumer %s: join failed, retrying: %s", inst.instance_id, exc.message)
                await asyncio.sleep(self._retry_backoff)
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. the coordinator's broker is unreachable
                log.warning("consumer %s: join failed, retrying: %r", inst.instance_id, exc)
                await asyncio.sleep(self._retry_backoff)
                continue
            break
        inst.member_id, inst.generation, inst.assignment = result.member_id, result.generation, tuple(result.assignment)
        inst.last_heartbeat = self._clock()
        inst.join_settled.set()

    async def _stop_joining(self, inst: _Instance) -> None:
        if inst.join_task is not None:
            inst.join_task.cancel()
            await asyncio.gather(inst.join_task, return_exceptions=True)
            inst.join_task = None

    async def _leave(self, inst: _Instance) -> None:
        member_id, inst.member_id, inst.generation = inst.member_id, None, None
        if member_id is None:
            return
        try:
            await self._membership.leave(inst.group, member_id)
        except Exception as exc:  # noqa: BLE001 - the session expires anyway
            log.info("consumer %s: leaving group %s failed: %r", inst.instance_id, inst.group, exc)

    async def _commit_positions(self, inst: _Instance, *, force: bool) -> None:
        offsets = {tp: offset for tp, offset in inst.positions.items() if tp in inst.assignment}
        if not offsets or (offsets == inst.last_committed and not force):
            return
        member_id, generation = inst.fencing()
        await self._commit(inst.group, offsets, member_id, generation)
        inst.last_committed = offsets

    async def _auto_commit_now(self, inst: _Instance) -> None:
        if not inst.config.auto_commit:
            return
        inst.last_auto_commit = self._clock()
        try:
            await self._commit_positions(inst, force=False)
        except Exception as exc:  # noqa: BLE001 - as Kafka's auto-commit: log, the next one may succeed
            log.warning("consumer %s: auto-commit failed: %r", inst.instance_id, exc)

    async def _close(self, inst: _Instance) -> None:
        if inst.closed:
            return
        inst.closed = True
        self._instances.pop((inst.group, inst.instance_id), None)
        await self._stop_joining(inst)
        await self._auto_commit_now(inst)
        await self._leave(inst)

    async def _maintain_forever(self) -> None:
        while True:
            await sleep_on_grid(self._tick)
            try:
                now = self._clock()
                instances = list(self._instances.values())
                expired = [inst for inst in instances if now - inst.last_used > self._instance_timeout]
                for inst in expired:
                    log.info("consumer %s of group %s expired after being idle", inst.instance_id, inst.group)
                for inst in instances:  # pattern subscriptions follow topics being created and deleted
                    if inst.pattern is not None and inst not in expired:
                        self._set_topics(inst, self._matching(inst.pattern, inst.owner))
                await asyncio.gather(
                    *(self._close(inst) for inst in expired),
                    *(self._heartbeat(inst) for inst in instances if inst.topics and inst not in expired),
                )
            except Exception:  # a bug here must not end heartbeats and expiry for good
                log.exception("REST consumer maintenance failed")
