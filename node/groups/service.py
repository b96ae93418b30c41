"""Consumer groups on a broker, for every front end: the coordinator's life cycle and committed offsets.

The group coordinator runs on the metadata leader: when this broker becomes
it, a fresh `GroupCoordinator` is restored from the persisted generations and
members; when it stops leading, the coordinator stops (pending joins fail with
a retriable error and clients rejoin at the new leader).  Generations and
committed offsets go through the metadata Raft group, whose state machine
fences stale generations and foreign members.

`coordinator()` raises `NotLeader` naming the metadata leader when another
broker coordinates; reaching that broker is the front end's business.
"""

from __future__ import annotations

import asyncio
import logging

from raftka.node.cluster.broker import Broker
from raftka.node.cluster.metadata import command, partition_key
from raftka.node.errors import GroupNotFound, PartitionNotFound, TopicNotFound
from raftka.node.groups.assignor import TopicPartition
from raftka.node.groups.coordinator import GroupCoordinator

log = logging.getLogger("raftka.node.groups.service")

LEADERSHIP_POLL_S = 0.1  # while this broker leads the metadata group but its lease is not yet confirmed
LEADERSHIP_IDLE_S = 2.0  # otherwise it looks again when a leadership changes, or after this
LEASE_WAIT_S = 1.0
COORDINATOR_WAIT_S = 3.0
COORDINATOR = "the consumer group coordinator (metadata group)"


class GroupService:
    def __init__(self, broker: Broker, *, initial_rebalance_delay_ms: int = 3000):
        self.broker = broker
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self._coordinator: GroupCoordinator | None = None
        self._coordinator_term: int | None = None  # the metadata leadership term the coordinator serves
        self._watcher: asyncio.Task | None = None
        broker.change_listeners.append(self._on_metadata_change)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._watcher = asyncio.create_task(self._follow_leadership(), name="group-coordinator")

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        if self._coordinator is not None:
            await self._coordinator.stop()
            self._coordinator = None

    async def _follow_leadership(self) -> None:
        # Start once the lease confirms the leadership (its term's entries applied: fresh metadata);
        # stop only when the Raft leadership of that term ends. A lapsed lease alone (a stalled event
        # loop) must not wipe every group's membership.
        host = self.broker.host
        while True:
            version = host.leadership_version
            term = self.broker.metadata_leader_term()
            if self._coordinator is not None and term != self._coordinator_term:
                coordinator, self._coordinator = self._coordinator, None
                log.info("broker %d: no longer the group coordinator", self.broker.id)
                await coordinator.stop()
            if self._coordinator is None and term is not None and self.broker.is_metadata_leader():
                await self._become_coordinator()
                self._coordinator_term = term
            if self._coordinator is None and term is not None:
                await asyncio.sleep(LEADERSHIP_POLL_S)
            else:
                await host.leadership_change(version, LEADERSHIP_IDLE_S)

    async def _become_coordinator(self) -> None:
        coordinator = GroupCoordinator(self._commit_generation, self.partitions_of,
                                       initial_rebalance_delay_ms=self.initial_rebalance_delay_ms)
        for name, group in self.broker.metadata.state["groups"].items():
            coordinator.restore(name, group["generation"], group.get("members", []), group.get("protocol_type"))
        await coordinator.start()
        self._coordinator = coordinator
        log.info("broker %d: now the group coordinator", self.broker.id)

    def _on_metadata_change(self, op: str, cmd: dict) -> None:
        if self._coordinator is not None:
            self._coordinator.on_metadata_change()

    async def _commit_generation(self, group: str, generation: int, members: dict[str, list[TopicPartition]],
                                 protocol_type: str | None) -> None:
        await self.broker.propose_metadata(command("group_generation", group=group, generation=generation,
                                                   members=sorted(members), protocol_type=protocol_type))

    # ---------------------------------------------------------- coordinator

    @property
    def local_coordinator(self) -> GroupCoordinator | None:
        """The coordinator when this broker runs it (its lease may have lapsed), else None."""
        return self._coordinator

    def coordinator(self) -> GroupCoordinator:
        if self._coordinator is None:
            leader = self.broker.metadata_leader()
            raise self.broker.not_leader(leader if leader != self.broker.id else None, COORDINATOR)
        return self._coordinator

    async def serving_coordinator(self) -> bool:
        """Is this broker the coordinator *with a valid lease* now?

        The coordinator object survives a lapsed lease (so membership is not wiped
        by a stalled loop), but a paused or partitioned old leader must not answer
        from its possibly stale metadata: wait briefly for the lease, else False.
        """
        if self._coordinator is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEASE_WAIT_S
        while not self.broker.is_metadata_leader():
            if self._coordinator is None or loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def coordinator_broker(self) -> int | None:
        """The broker running the coordinator (the metadata leader), waiting a little for an election."""
        return await self.broker.wait_metadata_leader(COORDINATOR_WAIT_S)

    # -------------------------------------------------------------- offsets

    def partitions_of(self, topic: str) -> int | None:
        t = self.broker.metadata.topic(topic)
        return len(t["partitions"]) if t is not None else None

    async def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        """All committed (next-to-read) offsets of `group`, from this broker's metadata replica."""
        g = self.broker.metadata.group(group) or {"offsets": {}}
        out = {}
        for key, offset in g["offsets"].items():
            topic, _, p = key.rpartition("/")
            out[(topic, int(p))] = offset
        return out

    def check_partitions(self, partitions: list[TopicPartition]) -> None:
        """TopicNotFound / PartitionNotFound unless every (topic, partition) exists."""
        for topic, partition in partitions:
            count = self.partitions_of(topic)
            if count is None:
                raise TopicNotFound(topic)
            if not 0 <= partition < count:
                raise PartitionNotFound(topic, partition)

    async def commit(self, group: str, offsets: dict[TopicPartition, int], member_id: str | None,
                     generation: int | None, *, reset: bool = False) -> None:
        """Commit on the coordinator (this broker): the partitions must exist; the coordinator refuses a stale
        member or generation at once, and the metadata group's state machine refuses it for sure. Committed
        offsets only grow unless `reset` (an explicit seek or reset) stores lower ones."""
        self.check_partitions(list(offsets))
        self.coordinator().check_commit(group, member_id, generation)
        await self.commit_offsets_here(group, offsets, member_id, generation, reset=reset)

    async def delete(self, group: str) -> None:
        """Delete a group without live members, and its committed offsets (on the coordinator)."""
        coordinator = self.coordinator()
        known = any(s.group == group for s in coordinator.list_groups())
        if not known and self.broker.metadata.group(group) is None:
            raise GroupNotFound(group)
        coordinator.forget(group)
        await self.broker.propose_metadata(command("delete_group", group=group))

    async def commit_offsets_here(self, group: str, offsets: dict[TopicPartition, int], member_id: str | None,
                                  generation: int | None, *, reset: bool = False) -> None:
        """Commit through the metadata group (this broker leads it); its state machine refuses stale generations."""
        await self.broker.propose_metadata(command(
            "commit_offsets", group=group, generation=generation, member=member_id, reset=reset,
            offsets={partition_key(t, p): o for (t, p), o in offsets.items()}))


__all__ = ["GroupService"]
