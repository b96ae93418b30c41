"""Consumer groups on a broker: the coordinator's life cycle and the broker side of `GroupsFacade`.

The group coordinator runs on the metadata leader: when this broker becomes
it, a fresh `GroupCoordinator` is restored from the persisted generations and
members; when it stops leading, the coordinator stops (pending joins fail with
a retriable error and clients rejoin at the new leader).  Generations and
committed offsets go through the metadata Raft group, whose state machine
fences stale generations and foreign members.

REST Proxy consumer instances live on the broker that created them; their
group membership and commits reach the coordinator locally or over HTTP.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson
from aiohttp import web

from raftka.node.cluster.broker import Broker
from raftka.node.cluster.metadata import command, partition_key
from raftka.node.errors import (ApiError, BrokerNotAvailable, ConsumerInstanceNotFound, OffsetOutOfRange,
                                RebalanceInProgress, StaleGeneration)
from raftka.node.groups.assignor import TopicPartition
from raftka.node.groups.coordinator import GroupCoordinator, JoinResult
from raftka.node.http.forwarding import forward
from raftka.node.http.rest_consumers import RestConsumers, owner_broker

log = logging.getLogger("raftka.node.groups.service")

LEADERSHIP_POLL_S = 0.1
LEASE_WAIT_S = 1.0
GROUP_FORWARD_TIMEOUT_S = 65.0  # a join may wait for the rebalance timeout (30 s) plus the initial delay


class RemoteError(ApiError):
    """An error document relayed from the coordinator broker."""

    def __init__(self, status: int, doc: dict):
        super().__init__(doc.get("message", f"coordinator answered {status}"))
        self.http_status, self.error_code = status, doc.get("error_code", status * 100)
        self.retriable = status >= 500


class BrokerGroups:
    """The broker's implementation of routes_groups.GroupsFacade and rest_consumers.GroupMembership."""

    def __init__(self, broker: Broker, *, initial_rebalance_delay_ms: int = 3000):
        self.broker = broker
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self._coordinator: GroupCoordinator | None = None
        self._coordinator_term: int | None = None  # the metadata leadership term the coordinator serves
        self._watcher: asyncio.Task | None = None
        self.rest_consumers = RestConsumers(
            broker.id, fetch=self._fetch, watermarks=self._watermarks, committed=self._committed_for,
            commit=self.commit_offsets, membership=self, partitions_of=self.partitions_of)
        broker.change_listeners.append(self._on_metadata_change)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.rest_consumers.start()
        self._watcher = asyncio.create_task(self._follow_leadership(), name="group-coordinator")

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        await self.rest_consumers.stop()
        if self._coordinator is not None:
            await self._coordinator.stop()
            self._coordinator = None

    async def _follow_leadership(self) -> None:
        # Start once the lease confirms the leadership (its term's entries applied: fresh metadata);
        # stop only when the Raft leadership of that term ends. A lapsed lease alone (a stalled event
        # loop) must not wipe every group's membership.
        while True:
            term = self.broker.metadata_leader_term()
            if self._coordinator is not None and term != self._coordinator_term:
                coordinator, self._coordinator = self._coordinator, None
                log.info("broker %d: no longer the group coordinator", self.broker.id)
                await coordinator.stop()
            if self._coordinator is None and term is not None and self.broker.is_metadata_leader():
                await self._become_coordinator()
                self._coordinator_term = term
            await asyncio.sleep(LEADERSHIP_POLL_S)

    async def _become_coordinator(self) -> None:
        coordinator = GroupCoordinator(self._commit_generation, self.partitions_of,
                                       initial_rebalance_delay_ms=self.initial_rebalance_delay_ms)
        for name, group in self.broker.metadata.state["groups"].items():
            coordinator.restore(name, group["generation"], group.get("members", []))
        await coordinator.start()
        self._coordinator = coordinator
        log.info("broker %d: now the group coordinator", self.broker.id)

    def _on_metadata_change(self, op: str, cmd: dict) -> None:
        if self._coordinator is not None:
            self._coordinator.on_metadata_change()

    async def _commit_generation(self, group: str, generation: int,
                                 members: dict[str, list[TopicPartition]]) -> None:
        await self.broker.propose_metadata(command("group_generation", group=group, generation=generation,
                                                   members=sorted(members)))

    # -------------------------------------------------------------- facade

    def coordinator(self) -> GroupCoordinator:
        if self._coordinator is None:
            leader = self.broker.metadata_leader()
            raise self.broker.not_leader(leader if leader != self.broker.id else None,
                                         "the consumer group coordinator (metadata group)")
        return self._coordinator

    async def _serving_coordinator(self) -> bool:
        """Is this broker the coordinator *with a valid lease* now?

        The coordinator object survives a lapsed lease (so membership is not wiped
        by a stalled loop), but a paused or partitioned old leader must not answer
        from its possibly stale metadata: wait briefly for the lease, else forward.
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

    async def forward_to_coordinator(self, request: web.Request) -> web.StreamResponse | None:
        if await self._serving_coordinator():
            return None
        leader = await self._coordinator_broker()
        error = self.broker.not_leader(leader, "the consumer group coordinator (metadata group)")
        if leader is None or leader == self.broker.id:
            raise error
        return await forward(request, self.broker.session, self.broker.urls[leader], error,
                             timeout=GROUP_FORWARD_TIMEOUT_S)

    async def forward_to_instance_owner(self, request: web.Request, instance_id: str) -> web.StreamResponse | None:
        owner = owner_broker(instance_id)
        if owner is None or owner == self.broker.id or owner not in self.broker.urls:
            return None
        error = BrokerNotAvailable(f"Broker {owner}, which owns consumer instance '{instance_id}', is not reachable.")
        return await forward(request, self.broker.session, self.broker.urls[owner], error,
                             timeout=GROUP_FORWARD_TIMEOUT_S)

    def partitions_of(self, topic: str) -> int | None:
        t = self.broker.metadata.topic(topic)
        return len(t["partitions"]) if t is not None else None

    async def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        g = self.broker.metadata.group(group) or {"offsets": {}}
        out = {}
        for key, offset in g["offsets"].items():
            topic, _, p = key.rpartition("/")
            out[(topic, int(p))] = offset
        return out

    async def _committed_for(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not await self._serving_coordinator():  # read at the coordinator: its metadata is the freshest
            doc = await self._call_coordinator("GET", f"/groups/{group}/offsets", None)
            return {(o["topic"], o["partition"]): o["offset"] for o in doc["offsets"]
                    if (o["topic"], o["partition"]) in set(partitions)}
        committed = await self.committed_offsets(group)
        return {tp: committed[tp] for tp in partitions if tp in committed}

    async def commit_offsets(self, group: str, offsets: dict[TopicPartition, int], member_id: str | None,
                             generation: int | None, *, reset: bool = False) -> None:
        if self._coordinator is None:
            body = {"offsets": [{"topic": t, "partition": p, "offset": o} for (t, p), o in offsets.items()]}
            if member_id is not None:
                body.update(member_id=member_id, generation=generation)
            if reset:
                body["reset"] = True
            await self._call_coordinator("POST", f"/groups/{group}/offsets", body)
            return
        await self.broker.propose_metadata(command(
            "commit_offsets", group=group, generation=generation, member=member_id, reset=reset,
            offsets={partition_key(t, p): o for (t, p), o in offsets.items()}))

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        async def one(tp):
            try:
                return (await self._watermarks(*tp))[1]
            except ApiError:
                return None
        results = await asyncio.gather(*(one(tp) for tp in partitions))
        return dict(zip(partitions, results))

    # ---------------------------------------------------------- membership

    async def join(self, group, member_id, topics, session_timeout_ms, rebalance_timeout_ms, client_id=None):
        if self._coordinator is not None:
            return await self._coordinator.join(group, member_id, topics, session_timeout_ms, rebalance_timeout_ms,
                                                client_id)
        body = {"topics": list(topics), "session_timeout_ms": session_timeout_ms,
                "rebalance_timeout_ms": rebalance_timeout_ms}
        if member_id is not None:
            body["member_id"] = member_id
        if client_id is not None:
            body["client_id"] = client_id
        doc = await self._call_coordinator("POST", f"/groups/{group}/members", body,
                                           timeout=rebalance_timeout_ms / 1000 + 35)
        return JoinResult(doc["member_id"], doc["generation"],
                          [(a["topic"], a["partition"]) for a in doc["assignment"]])

    async def heartbeat(self, group, member_id, generation):
        if self._coordinator is not None:
            return await self._coordinator.heartbeat(group, member_id, generation)
        await self._call_coordinator("POST", f"/groups/{group}/heartbeat",
                                     {"member_id": member_id, "generation": generation})

    async def leave(self, group, member_id):
        if self._coordinator is not None:
            return await self._coordinator.leave(group, member_id)
        await self._call_coordinator("DELETE", f"/groups/{group}/members/{member_id}", None)

    # ------------------------------------------------------------- helpers

    async def _coordinator_broker(self) -> int | None:
        deadline = asyncio.get_running_loop().time() + 3
        while True:
            leader = self.broker.metadata_leader()
            if leader is not None or asyncio.get_running_loop().time() > deadline:
                return leader
            await asyncio.sleep(0.05)

    async def _call_coordinator(self, method: str, path: str, body: dict | None, timeout: float = 30.0):
        leader = await self._coordinator_broker()
        if leader is None or leader == self.broker.id:
            raise self.broker.not_leader(None, "the consumer group coordinator (metadata group)")
        try:
            async with self.broker.session.request(
                    method, self.broker.urls[leader] + path, data=orjson.dumps(body) if body is not None else None,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                doc = orjson.loads(raw) if raw else {}
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise BrokerNotAvailable(f"Group coordinator (broker {leader}) unreachable: {exc}") from None
        if resp.status >= 400:
            code = doc.get("error_code")
            if code == 40403:
                raise ConsumerInstanceNotFound(path.split("/")[2], doc.get("message", ""))
            if code == 40906:
                raise RebalanceInProgress(path.split("/")[2])
            if code == 40905:
                raise StaleGeneration(path.split("/")[2], -1, doc.get("generation", -1))
            raise RemoteError(resp.status, doc)
        return doc

    async def _fetch(self, topic, partition, offset, max_bytes, timeout_ms):
        """Fetch committed records through this broker's HTTP API (local leader or forwarded)."""
        from raftka.storage import iter_records

        url = (f"{self.broker.urls[self.broker.id]}/topics/{topic}/partitions/{partition}/records"
               f"?offset={offset}&max_bytes={max_bytes}&timeout_ms={timeout_ms}")
        async with self.broker.session.get(url, headers={"Accept": "application/vnd.raftka.batch"},
                                           timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000 + 30)) as resp:
            raw = await resp.read()
            if resp.status == 416:
                doc = orjson.loads(raw)
                raise OffsetOutOfRange(topic, partition, offset, doc["earliest"], doc["latest"])
            if resp.status != 200:
                doc = orjson.loads(raw) if raw else {}
                raise RemoteError(resp.status, doc)
            hw = int(resp.headers["X-Raftka-High-Watermark"])
            start = int(resp.headers["X-Raftka-Log-Start"])
        return list(iter_records(raw, start_offset=offset)), hw, start

    async def _watermarks(self, topic, partition):
        url = f"{self.broker.urls[self.broker.id]}/topics/{topic}/partitions/{partition}/offsets"
        async with self.broker.session.get(url, timeout=aiohttp.ClientTimeout(total=15)) as resp:
            doc = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RemoteError(resp.status, doc)
        return doc["beginning_offset"], doc["end_offset"]


__all__ = ["BrokerGroups"]
