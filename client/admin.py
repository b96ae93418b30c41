"""AIOAdmin: topics, configs, consumer groups, cluster state, users and ACLs over the broker's HTTP API (the elastic
cluster's operations — brokers, reassignments, decommissions, replication factors, rebalancing — in `admin_cluster`).

Requests go preferably to the metadata leader: any broker would forward a
write, but brokers answer reads from their own replica of the metadata, and
only the leader is sure to have applied this client's last write (read your
writes). If it cannot be reached, other brokers are tried.
Answers are parsed into the frozen dataclasses below; a malformed answer
raises ProtocolError. An unknown topic raises TopicNotFoundError whose
``suggestions`` lists existing topics with similar names.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from raftka.client.admin_cluster import ClusterAdminMixin
from raftka.client.admin_security import UsersAndAcls
from raftka.client.cluster import Cluster, topic_path
from raftka.client.connection import ClientSecurity
from raftka.client.errors import ProtocolError, RaftkaError, TopicNotFoundError
from raftka.client.structs import TopicPartition

__all__ = [
    "AIOAdmin",
    "BrokerDescription",
    "ClusterDescription",
    "GroupDescription",
    "GroupMemberDescription",
    "GroupOffset",
    "GroupSummary",
    "PartitionDescription",
    "RaftStatus",
    "TopicDescription",
]


@dataclass(frozen=True)
class PartitionDescription:
    """One partition; ``in_sync``, ``high_watermark``, ``log_start_offset`` are None when unknown
    (only the partition leader knows them)."""

    partition: int
    leader: int | None
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...] | None
    high_watermark: int | None = None
    log_start_offset: int | None = None


@dataclass(frozen=True)
class TopicDescription:
    name: str
    configs: dict[str, Any]
    partitions: list[PartitionDescription]

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0


@dataclass(frozen=True)
class GroupSummary:
    group: str
    state: str
    generation: int | None
    members: int


@dataclass(frozen=True)
class GroupMemberDescription:
    member_id: str
    assignment: list[TopicPartition]


@dataclass(frozen=True)
class GroupOffset:
    topic: str
    partition: int
    offset: int
    end_offset: int | None
    lag: int | None


@dataclass(frozen=True)
class GroupDescription:
    group: str
    state: str
    generation: int | None
    members: list[GroupMemberDescription]
    offsets: list[GroupOffset]

    @property
    def total_lag(self) -> int:
        return sum(o.lag or 0 for o in self.offsets)


@dataclass(frozen=True)
class BrokerDescription:
    id: int
    url: str | None
    alive: bool | None


@dataclass(frozen=True)
class ClusterDescription:
    brokers: list[BrokerDescription]
    metadata_leader: int | None
    partitions_led: dict[int, int]  # broker id -> number of partitions it leads
    leaderless: int  # partitions without a known leader


@dataclass(frozen=True)
class RaftStatus:
    """``GET /raft`` of one broker (``error`` set instead when it could not be asked)."""

    broker: int
    url: str | None
    groups: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def _require(doc: Any, kind: type, what: str) -> Any:
    if not isinstance(doc, kind):
        raise ProtocolError(f"{what}: unexpected answer {doc!r}")
    return doc


def _partition(raw: Any, where: str) -> PartitionDescription:
    try:
        replicas: list[int] = []
        in_sync: list[int] | None = []
        for r in raw.get("replicas") or []:
            broker = int(r["broker"] if isinstance(r, dict) else r)
            replicas.append(broker)
            flag = r.get("in_sync") if isinstance(r, dict) else None
            if flag is None:
                in_sync = None
            elif flag and in_sync is not None:
                in_sync.append(broker)
        return PartitionDescription(
            partition=int(raw["partition"]),
            leader=raw.get("leader"),
            replicas=tuple(replicas),
            in_sync=None if in_sync is None else tuple(in_sync),
            high_watermark=raw.get("high_watermark"),
            log_start_offset=raw.get("log_start_offset"),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"{where}: malformed partition {raw!r} ({exc})") from None


class AIOAdmin(ClusterAdminMixin, UsersAndAcls):
    def __init__(self, bootstrap_servers: str | Sequence[str] | None = None, *, request_timeout_ms: int = 30_000,
                 username: str | None = None, password: str | None = None, ssl_cafile: str | None = None,
                 ssl_certfile: str | None = None, ssl_keyfile: str | None = None) -> None:
        self._cluster = Cluster(bootstrap_servers, request_timeout_ms=request_timeout_ms,
                                security=ClientSecurity(username, password, ssl_cafile, ssl_certfile, ssl_keyfile))

    @property
    def bootstrap(self) -> list[str]:
        return list(self._cluster.bootstrap)

    async def _read(self, path: str, **kwargs: Any) -> Any:
        return (await self._cluster.request_coordinator("GET", path, idempotent=True, **kwargs)).json()

    async def _write(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._cluster.request_coordinator(method, path, **kwargs)).json()

    async def _explain_missing(self, exc: TopicNotFoundError, topic: str) -> TopicNotFoundError:
        try:
            names = await self.list_topics()
        except RaftkaError:
            names = []
        details = {**exc.details, "topic": topic, "suggestions": difflib.get_close_matches(topic, names, n=3, cutoff=0.6)}
        return TopicNotFoundError(
            exc.message, error_code=exc.error_code, http_status=exc.http_status, broker=exc.broker, details=details
        )

    # -- topics ----------------------------------------------------------------------

    async def topics_overview(self) -> dict[str, tuple[int, int]]:
        """``{topic: (partitions, replication factor)}`` for every topic, from one ``GET /metadata``."""
        await self._cluster.refresh()
        return {
            name: (len(parts), len(parts[0].replicas) if parts else 0)
            for name, parts in sorted(self._cluster.cache.topics.items())
        }

    async def list_topics(self) -> list[str]:
        names = _require(await self._read("/topics"), list, "GET /topics")
        return sorted(str(n) for n in names)

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int | None = None,
        configs: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a topic; replication factor defaults to min(3, brokers) on the broker side."""
        body: dict[str, Any] = {"name": name, "partitions": partitions}
        if replication_factor is not None:
            body["replication_factor"] = replication_factor
        if configs:
            body["configs"] = {k: str(v) for k, v in configs.items()}
        return _require(await self._write("POST", "/topics", json=body), dict, "POST /topics")

    async def delete_topic(self, name: str) -> None:
        try:
            await self._write("DELETE", topic_path(name))
        except TopicNotFoundError as exc:
            raise await self._explain_missing(exc, name) from None

    async def describe_topic(self, name: str) -> TopicDescription:
        """Configs and partitions; offsets and in-sync replicas are asked from each partition's leader."""
        try:
            topic = _require(await self._read(topic_path(name)), dict, f"GET /topics/{name}")
        except TopicNotFoundError as exc:
            raise await self._explain_missing(exc, name) from None
        where = f"GET /topics/{name}"
        partitions = [_partition(p, where) for p in _require(topic.get("partitions"), list, where)]
        partitions = list(await asyncio.gather(*(self._from_leader(name, p) for p in partitions)))
        partitions.sort(key=lambda p: p.partition)
        return TopicDescription(str(topic.get("name", name)), dict(topic.get("configs") or {}), partitions)

    async def _from_leader(self, topic: str, known: PartitionDescription) -> PartitionDescription:
        """The partition as its leader describes it (brokers answer this locally, without forwarding)."""
        if known.high_watermark is not None and known.in_sync is not None:
            return known
        await self._cluster.ensure_metadata()
        url = self._cluster.cache.brokers.get(known.leader) if known.leader is not None else None
        if url is None:
            return known
        try:
            answer = await self._cluster.connection.request(url, "GET", topic_path(topic, known.partition))
        except RaftkaError:
            return known  # the leader is unreachable right now: show what is known
        fresh = _partition(answer.json(), f"GET /topics/{topic}/partitions/{known.partition}")
        return fresh if fresh.high_watermark is not None else known

    async def add_partitions(self, name: str, total: int) -> None:
        """Grow the topic to ``total`` partitions (keys then map to different partitions, as in Kafka)."""
        try:
            await self._write("POST", topic_path(name, None, "/partitions"), json={"count": total})
        except TopicNotFoundError as exc:
            raise await self._explain_missing(exc, name) from None

    async def alter_configs(self, name: str, configs: Mapping[str, Any]) -> None:
        try:
            await self._write("PUT", topic_path(name, None, "/configs"), json={"configs": {k: str(v) for k, v in configs.items()}})
        except TopicNotFoundError as exc:
            raise await self._explain_missing(exc, name) from None

    async def partition_offsets(self, name: str, partition: int) -> tuple[int, int]:
        """(beginning, end) offsets of one partition."""
        doc = _require(await self._read(topic_path(name, partition, "/offsets")), dict, "GET offsets")
        return int(doc["beginning_offset"]), int(doc["end_offset"])

    async def delete_records(self, name: str, partition: int, before_offset: int) -> int:
        """Delete the partition's records below ``before_offset`` (-1: every committed record; Kafka's DeleteRecords)
        on every replica; returns its new beginning offset. Deleting again is harmless, so it is retried."""
        try:
            answer = await self._cluster.request_partition(
                name, partition, "POST", topic_path(name, partition, "/delete-records"),
                json={"before_offset": before_offset}, idempotent=True)
        except TopicNotFoundError as exc:
            raise await self._explain_missing(exc, name) from None
        return int(_require(answer.json(), dict, "POST delete-records")["log_start_offset"])

    # -- groups ------------------------------------------------------------------------

    async def list_groups(self) -> list[GroupSummary]:
        doc = _require(await self._read("/groups"), dict, "GET /groups")
        try:
            return sorted(
                (GroupSummary(g["group"], str(g.get("state", "")), g.get("generation"), int(g.get("members") or 0))
                 for g in doc.get("groups", [])),
                key=lambda g: g.group,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"GET /groups: malformed answer {doc!r} ({exc})") from None

    async def describe_group(self, group: str) -> GroupDescription:
        doc = _require(await self._read("/groups/" + quote(group, safe="")), dict, "GET /groups/{g}")
        try:
            members = [
                GroupMemberDescription(
                    m["member_id"], [TopicPartition(a["topic"], a["partition"]) for a in m.get("assignment", [])]
                )
                for m in doc.get("members", [])
            ]
            offsets = [
                GroupOffset(o["topic"], o["partition"], o["offset"], o.get("end_offset"), o.get("lag"))
                for o in doc.get("offsets", [])
            ]
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"GET /groups/{group}: malformed answer ({exc})") from None
        offsets.sort(key=lambda o: (o.topic, o.partition))
        return GroupDescription(
            str(doc.get("group", group)), str(doc.get("state", "")), doc.get("generation"), members, offsets
        )

    # -- cluster -------------------------------------------------------------------------

    async def describe_cluster(self) -> ClusterDescription:
        """Brokers (GET /brokers) and how partition leadership is spread (GET /metadata)."""
        doc, _ = await asyncio.gather(self._read("/brokers"), self._cluster.refresh())
        _require(doc, dict, "GET /brokers")
        details = {d.get("id"): d for d in doc.get("details", []) if isinstance(d, dict)}
        try:
            brokers = [
                BrokerDescription(int(b), details.get(b, {}).get("url"), details.get(b, {}).get("alive"))
                for b in doc.get("brokers", [])
            ]
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"GET /brokers: malformed answer {doc!r} ({exc})") from None
        led: dict[int, int] = {}
        leaderless = 0
        for parts in self._cluster.cache.topics.values():
            for part in parts:
                if part.leader is None:
                    leaderless += 1
                else:
                    led[part.leader] = led.get(part.leader, 0) + 1
        return ClusterDescription(sorted(brokers, key=lambda b: b.id), doc.get("metadata_leader"), led, leaderless)

    async def replace_broker_disk(self, broker_id: int) -> dict:
        """Register the data directory broker ``broker_id`` runs on now, replacing its old replicas (needed only
        when the cluster heard two directories under that id and would not decide by itself)."""
        return _require(await self._write("POST", f"/brokers/{int(broker_id)}/replace"), dict, "POST replace")

    async def raft_status(self) -> list[RaftStatus]:
        """``GET /raft`` from every broker (Raft state is per broker); unreachable ones carry ``error``."""
        cluster = await self.describe_cluster()

        async def ask(broker: BrokerDescription) -> RaftStatus:
            if not broker.url:
                return RaftStatus(broker.id, None, error="no URL known")
            try:
                answer = await self._cluster.connection.request(broker.url, "GET", "/raft", timeout_s=5)
                doc = answer.json()
                return RaftStatus(broker.id, broker.url, list(doc.get("groups", [])))
            except RaftkaError as exc:
                return RaftStatus(broker.id, broker.url, error=exc.message)
            except AttributeError:
                return RaftStatus(broker.id, broker.url, error="malformed GET /raft answer")

        return list(await asyncio.gather(*(ask(b) for b in cluster.brokers)))

    async def close(self) -> None:
        await self._cluster.close()

    async def __aenter__(self) -> AIOAdmin:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
