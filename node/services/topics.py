"""Topic administration, for every front end: topics, partitions, configs, producer ids, cluster metadata,
and the client listeners (Kafka) each broker registered.

Reads answer from this broker's replica of the metadata once it is known to
be current: on a miss (an unknown topic) and for listings, a read index
against the metadata leader first (`metadata_fresh_here`), so that a miss
costs one round trip and a broker whose copy is not current (a new
incarnation still catching up) sends the reader to the leader instead of
answering "no such topic" or an empty list. A partition's figures (high
watermark, log start, in-sync replicas) only its leader has, so
`led_elsewhere` names the leader a front end gets them from. Writes are metadata
commands (validated here, then replicated by the metadata Raft group): they
run on the metadata leader, and elsewhere raise `ServedElsewhere` naming it.
A new topic is answered once every partition has a leader, so that a
produce right after the create succeeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from raftka.node.cluster.broker import Broker
from raftka.node.cluster.metadata import command
from raftka.node.cluster.topics import (assign_replicas, parse_topic_configs, validate_partition_count,
                                        validate_replication_factor, validate_topic_name)
from raftka.node.errors import (BrokerNotFound, InvalidPartitions, InvalidRequest, NotLeader, StorageUnavailable,
                                 TopicAlreadyExists)
from raftka.node.services.routing import LEADER_WAIT_S, elsewhere, metadata_fresh_here, metadata_leader_here, wait_for
from raftka.raft.core import ProgressState
from raftka.raft.replica import broker_of

TOPIC_READY_WAIT_S = 10.0
LISTENER_NAMES = frozenset({"kafka"})  # client listeners a broker can register besides its HTTP API


class TopicService:
    def __init__(self, broker: Broker):
        self.broker = broker

    # ---------------------------------------------------------------- reads

    def alive(self, b: int) -> bool:
        """Is broker `b` alive, as seen by this broker (see `Broker.alive`)."""
        return self.broker.alive(b)

    async def cluster_metadata(self) -> dict:
        """Brokers, the metadata leader, and every partition's leader and replicas (for routing clients)."""
        broker = self.broker
        await metadata_fresh_here(broker)
        topics = {}
        for name, topic in broker.metadata.topics.items():
            topics[name] = {"partitions": [{"leader": broker.leader_of(name, p), "replicas": replicas}
                                           for p, replicas in enumerate(topic["partitions"])]}
        return {"brokers": {str(b): u for b, u in broker.urls.items()}, "topics": topics,
                "metadata_leader": broker.metadata_leader()}

    def listener_addresses(self, name: str) -> dict[int, tuple[str, int]]:
        """(host, port) of every broker that registered client listener `name` ("kafka") in the metadata."""
        out = {}
        for broker_id in sorted(self.broker.urls):
            address = self.broker.metadata.listener(broker_id, name)
            if address is not None:
                host, _, port = address.rpartition(":")
                out[broker_id] = (host.strip("[]"), int(port))
        return out

    async def names(self) -> list[str]:
        await metadata_fresh_here(self.broker)
        return sorted(self.broker.metadata.topics)

    async def catch_up(self, name: str) -> None:
        """Before answering for a topic this broker's replica does not know: make sure the replica is current
        (a topic just created may not have reached it yet). Raises `ServedElsewhere` when it cannot be."""
        if self.broker.metadata.topic(name) is None:
            await metadata_fresh_here(self.broker)

    def check_topic(self, name: str) -> None:
        """TopicNotFound unless the topic exists."""
        self.broker.topic(name)

    def check_partition(self, name: str, partition: int) -> list[int]:
        """The partition's replicas; TopicNotFound / PartitionNotFound when it does not exist."""
        return self.broker.replicas(name, partition)

    def explicit_configs(self, name: str) -> set[str]:
        """The names of the configs set on the topic (the others have their defaults)."""
        return set(self.broker.topic(name)["configs"])

    def configs(self, name: str) -> dict:
        """The topic's configs under Kafka's names, defaults filled in."""
        return parse_topic_configs(self.broker.topic(name)["configs"], self.broker.config.topic_defaults).to_kafka()

    def describe(self, name: str) -> dict:
        topic = self.broker.topic(name)
        return {"name": name, "configs": self.configs(name), "replication_factor": topic["replication_factor"],
                "partitions": self.describe_partitions(name)}

    def describe_partitions(self, name: str) -> list[dict]:
        return [self._describe_partition(name, p, r) for p, r in enumerate(self.broker.topic(name)["partitions"])]

    def describe_partition(self, name: str, partition: int) -> dict:
        return self._describe_partition(name, partition, self.broker.replicas(name, partition))

    def _describe_partition(self, name: str, p: int, replicas: list[int]) -> dict:
        """Leader and replicas; on the leader also in-sync replicas, high watermark and log start (elsewhere these
        are null: `led_elsewhere` names the broker that has them)."""
        broker = self.broker
        leader = broker.leader_of(name, p)
        doc = {"partition": p, "leader": leader,
               "replicas": [{"broker": b, "leader": b == leader, "in_sync": None} for b in replicas],
               "high_watermark": None, "log_start_offset": None}
        hosted = broker.partitions.get((name, p))
        if hosted is not None and leader == broker.id:
            in_sync = self.in_sync_replicas(hosted.group)
            for r in doc["replicas"]:
                r["in_sync"] = r["broker"] in in_sync
            doc["high_watermark"] = hosted.sm.high_watermark
            doc["log_start_offset"] = hosted.sm.log_start_offset
        return doc

    def in_sync_replicas(self, group_name: str) -> set[int]:
        """Brokers whose replica of the group (led here) is in sync: the leader; and a follower whose broker is
        alive (and still that replica, not a new incarnation) and whose replica holds every committed entry (match index >= commit index), or, under load, was
        sent every committed entry and acknowledged within an election timeout. Quiet traffic does not matter: a
        caught-up follower of a quiesced group stays in sync."""
        node = self.broker.host.group(group_name).node
        in_sync = {self.broker.id}
        for replica, pr in node.progress.items():
            b = broker_of(replica)
            if b == self.broker.id or not self.alive(b) or self.broker.host.replica_lost(replica):
                continue  # a broker back with an empty disk is not the replica it was
            streaming = (pr.state is ProgressState.REPLICATE and pr.next > node.commit
                         and node.now - pr.acked_tick < self.broker.host_config.election_ticks)
            if pr.match >= node.commit or streaming:
                in_sync.add(b)
        return in_sync

    def led_elsewhere(self, name: str, docs: list[dict]) -> dict[int, list[int]]:
        """Of partition descriptions made here, those another broker leads (it has their figures): leader ->
        partitions. A front end fetches the figures from there."""
        wanted: dict[int, list[int]] = {}
        for doc in docs:
            leader = doc["leader"]
            if doc["high_watermark"] is None and leader is not None and leader != self.broker.id \
                    and leader in self.broker.urls:
                wanted.setdefault(leader, []).append(doc["partition"])
        return wanted

    # --------------------------------------------------------------- writes

    def default_partitions(self) -> int:
        return self.broker.config.default_partitions

    def default_replication_factor(self) -> int:
        return self.broker.config.default_replication_factor or (3 if len(self.placeable_brokers()) >= 3 else 1)

    def placeable_brokers(self) -> list[int]:
        """Brokers new replicas go to: the active ones (not draining or decommissioned)."""
        return self.broker.metadata.active_brokers() or sorted(self.broker.urls)

    async def create(self, name: object, partitions: object, replication_factor: object,
                     configs: Mapping[str, object], *, validate_only: bool = False) -> dict:
        """Create a topic (arguments validated here); answers once every partition has a leader. With
        `validate_only`, only checks and answers what would be created."""
        broker = self.broker
        name = validate_topic_name(name)
        partitions = validate_partition_count(partitions)
        brokers = self.placeable_brokers()
        rf = validate_replication_factor(replication_factor, len(brokers))
        parsed = parse_topic_configs(configs, broker.config.topic_defaults)
        if validate_only:
            if broker.metadata.topic(name) is not None:
                raise TopicAlreadyExists(name)
            return {"name": name, "partitions": partitions, "replication_factor": rf, "configs": parsed.to_kafka()}
        assignment = [list(r) for r in assign_replicas(brokers, partitions, rf)]
        await self._write(command("create_topic", name=name, id=broker.new_topic_id(), assignment=assignment,
                                  configs=dict(configs), log_is_raft_log=True))
        await wait_for(lambda: True if all(broker.leader_of(name, p) is not None for p in range(partitions))
                       else None, TOPIC_READY_WAIT_S)
        return {"name": name, "partitions": partitions, "replication_factor": rf, "configs": parsed.to_kafka()}

    async def delete(self, name: str) -> None:
        self.check_topic(name)
        await self._write(command("delete_topic", name=name))

    async def add_partitions(self, name: str, total: object, *, validate_only: bool = False) -> dict:
        """Grow the topic to `total` partitions (never shrink); with `validate_only`, only check."""
        topic = self.broker.topic(name)
        current = len(topic["partitions"])
        total = validate_partition_count(total)
        if total <= current:
            raise InvalidPartitions(f"Topic '{name}' has {current} partitions; the new count must be larger "
                                    f"(got {total}). Partitions can only be added.")
        if validate_only:
            return {"name": name, "partitions": total}
        extra = [list(r) for r in assign_replicas(self.placeable_brokers(), total, topic["replication_factor"])]
        await self._write(command("add_partitions", name=name, from_count=current, assignment=extra[current:]))
        return {"name": name, "partitions": total}

    async def alter_configs(self, name: str, changes: Mapping[str, object], *, remove: Iterable[str] = (),
                            replace: bool = False, validate_only: bool = False) -> dict:
        """Merge `changes` over the topic's configs (or, with `replace`, make them the only ones set), dropping
        `remove` back to their defaults; answers the resulting configs under Kafka's names. With
        `validate_only`, only checks."""
        merged = {**({} if replace else self.broker.topic(name)["configs"]), **changes}
        for key in remove:
            merged.pop(key, None)
        parsed = parse_topic_configs(merged, self.broker.config.topic_defaults)
        if validate_only:
            return {"name": name, "configs": parsed.to_kafka()}
        await self._write(command("alter_configs", name=name, configs=merged))
        return {"name": name, "configs": parsed.to_kafka()}

    async def replace_broker_disk(self, broker_id: object) -> dict:
        """Register the data directory broker `broker_id` runs on now as its incarnation, replacing the old one's
        replicas, even when another directory under that id was heard from lately (`POST /brokers/{id}/replace`)."""
        broker = self.broker
        if not isinstance(broker_id, int) or broker_id not in broker.urls:
            raise BrokerNotFound(broker_id)
        await metadata_leader_here(broker)
        previous = broker.metadata.incarnation(broker_id)
        try:
            incarnation = broker.membership.force_register(broker_id)
        except LookupError as exc:
            raise InvalidRequest(f"Nothing to replace: {exc}.") from None
        return {"broker": broker_id, "incarnation": f"{incarnation:08x}", "previous_incarnation": f"{previous:08x}"}

    async def allocate_producer_id(self) -> int:
        """A new idempotent producer id (its epoch starts at 0)."""
        return (await self._write(command("allocate_producer_id")))["producer_id"]

    async def register_listener(self, broker_id: object, name: object, address: object) -> None:
        """Record that broker `broker_id` serves client listener `name` at `address` ("host:port")."""
        if type(broker_id) is not int or broker_id not in self.broker.urls:
            raise InvalidRequest(f"Unknown broker {broker_id!r}; brokers are {sorted(self.broker.urls)}.")
        if name not in LISTENER_NAMES:
            raise InvalidRequest(f"Unknown listener {name!r}; listeners are {sorted(LISTENER_NAMES)}.")
        host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
        if not sep or not host or not port.isdecimal() or not 0 < int(port) < 65536:
            raise InvalidRequest(f"Listener address must be HOST:PORT, got {address!r}.")
        await self._write(command("register_listener", broker=broker_id, name=name, address=address))

    async def _write(self, cmd: bytes) -> dict:
        await metadata_leader_here(self.broker)
        try:
            return await self.broker.propose_metadata(cmd)
        except NotLeader as exc:  # lost the leadership meanwhile: name the new leader
            raise elsewhere(self.broker, exc.leader_id, "the metadata group") from None
        except StorageUnavailable:  # our disk cannot take it: leadership moves to a broker whose disk can
            broker = self.broker
            leader = await wait_for(lambda: other if (other := broker.metadata_leader()) != broker.id else None,
                                    LEADER_WAIT_S)
            if leader is None:
                raise
            raise elsewhere(broker, leader, "the metadata group") from None


__all__ = ["LISTENER_NAMES", "TOPIC_READY_WAIT_S", "TopicService"]
