"""The HTTP side of consumer groups on a broker: `GroupsFacade` for the routes, and REST consumer instances.

Requests for the group coordinator are forwarded to the metadata leader
when it is another broker; a REST consumer instance lives on the broker that
created it (any other broker finds it: a generated id names its broker, a
named instance is asked of the peers and remembered), and its membership, commits and fetches reach the coordinator
and the partition leaders through this broker's HTTP API (locally when this
broker serves them, else over HTTP). The coordinator itself and committed
offsets are the protocol-neutral `GroupService`.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
from aiohttp import web

from raftka.node.errors import (ApiError, BrokerNotAvailable, ConsumerInstanceNotFound, OffsetOutOfRange,
                                RebalanceInProgress, StaleGeneration)
from raftka.node.groups.assignor import TopicPartition
from raftka.node.groups.coordinator import GroupCoordinator, JoinResult
from raftka.node.groups.service import COORDINATOR
from raftka.node.http.forwarding import FORWARDED_HEADER, forward, hops
from raftka.node.http.rest_consumers import RestConsumers, owner_broker
from raftka.node.security.acl import Operation, Resource
from raftka.node.services import BrokerServices
from raftka.storage import iter_records

GROUP_FORWARD_TIMEOUT_S = 65.0  # a join may wait for the rebalance timeout (30 s) plus the initial delay
INSTANCE_SEARCH_TIMEOUT_S = 2.0  # asking a peer whether it hosts a named consumer instance


def _instance_not_found(response: web.Response) -> bool:
    if response.status != 404 or not response.body:
        return False
    try:
        return orjson.loads(response.body).get("error_code") == 40403
    except (orjson.JSONDecodeError, AttributeError):
        return False


class RemoteError(ApiError):
    """An error document relayed from the coordinator broker."""

    def __init__(self, status: int, doc: dict):
        super().__init__(doc.get("message", f"coordinator answered {status}"))
        self.http_status, self.error_code = status, doc.get("error_code", status * 100)
        self.retriable = status >= 500


class HttpGroups:
    """The broker's implementation of routes_groups.GroupsFacade and rest_consumers.GroupMembership."""

    def __init__(self, services: BrokerServices):
        self.broker = services.broker
        self.groups = services.groups
        self.rest_consumers = RestConsumers(
            self.broker.id, fetch=self._fetch, watermarks=self._watermarks, committed=self._committed_for,
            commit=self.commit_offsets, membership=self, partitions_of=self.partitions_of,
            topic_names=lambda: list(self.broker.metadata.topics),  # this replica's view, as a Kafka client's
            may_read=lambda owner, topic: services.security.allowed(owner, "*", Operation.READ,
                                                                    Resource.topic(topic)))
        self._instance_owners: dict[tuple[str, str], int] = {}  # named instances found on peers

    async def start(self) -> None:
        await self.rest_consumers.start()

    async def stop(self) -> None:
        await self.rest_consumers.stop()

    # -------------------------------------------------------------- facade

    def coordinator(self) -> GroupCoordinator:
        return self.groups.coordinator()

    def partitions_of(self, topic: str) -> int | None:
        return self.groups.partitions_of(topic)

    def check_partitions(self, partitions: list[TopicPartition]) -> None:
        self.groups.check_partitions(partitions)

    async def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        return await self.groups.committed_offsets(group)

    async def forward_to_coordinator(self, request: web.Request) -> web.StreamResponse | None:
        if await self.groups.serving_coordinator():
            return None
        leader = await self.groups.coordinator_broker()
        error = self.broker.not_leader(leader, COORDINATOR)
        if leader is None or leader == self.broker.id:
            raise error
        return await forward(request, self.broker.session, self.broker.urls[leader], error,
                             timeout=GROUP_FORWARD_TIMEOUT_S)

    async def forward_to_instance_owner(self, request: web.Request, group: str,
                                        instance_id: str) -> web.StreamResponse | None:
        """Forward to the broker hosting the instance: named by a generated id, else remembered from an earlier
        search, else searched for among the peers. None: this broker hosts it, or nobody does (a 404 here)."""
        if self.rest_consumers.has(group, instance_id):
            return None
        key = (group, instance_id)
        remembered = self._instance_owners.get(key) if hops(request) == 0 else None
        if remembered is not None:
            response = await self._forward_to_owner(request, remembered, instance_id)
            if not _instance_not_found(response):
                if request.method == "DELETE" and request.path.rstrip("/").endswith(f"/instances/{instance_id}"):
                    self._instance_owners.pop(key, None)
                return response
            self._instance_owners.pop(key, None)  # deleted (or moved) since: search again
        owner = await self.instance_elsewhere(request, group, instance_id)
        if owner is None:
            return None
        return await self._forward_to_owner(request, owner, instance_id)

    async def instance_elsewhere(self, request: web.Request, group: str, instance_id: str) -> int | None:
        """The other broker hosting the instance: from a generated id, else by asking every peer (never from a
        request that was itself forwarded: the broker that forwarded it already asked)."""
        owner = owner_broker(instance_id)
        if owner is not None:
            return owner if owner != self.broker.id and owner in self.broker.urls else None
        if hops(request) > 0:
            return None
        peers = [b for b in self.broker.urls if b != self.broker.id]
        found = await asyncio.gather(*(self._hosts_instance(b, group, instance_id) for b in peers))
        owner = next((b for b, hosted in zip(peers, found) if hosted), None)
        if owner is not None:
            self._instance_owners[(group, instance_id)] = owner
        return owner

    async def _hosts_instance(self, broker: int, group: str, instance_id: str) -> bool:
        url = f"{self.broker.urls[broker]}/consumers/{group}/instances/{instance_id}"
        try:
            async with self.broker.session.get(url, headers={FORWARDED_HEADER: "1"},
                                               timeout=aiohttp.ClientTimeout(total=INSTANCE_SEARCH_TIMEOUT_S)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def _forward_to_owner(self, request: web.Request, owner: int, instance_id: str) -> web.StreamResponse:
        error = BrokerNotAvailable(f"Broker {owner}, which owns consumer instance '{instance_id}', is not reachable.")
        return await forward(request, self.broker.session, self.broker.urls[owner], error,
                             timeout=GROUP_FORWARD_TIMEOUT_S)

    async def _committed_for(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not await self.groups.serving_coordinator():  # read at the coordinator: its metadata is the freshest
            doc = await self._call_coordinator("GET", f"/groups/{group}/offsets", None)
            return {(o["topic"], o["partition"]): o["offset"] for o in doc["offsets"]
                    if (o["topic"], o["partition"]) in set(partitions)}
        committed = await self.groups.committed_offsets(group)
        return {tp: committed[tp] for tp in partitions if tp in committed}

    async def commit_offsets(self, group: str, offsets: dict[TopicPartition, int], member_id: str | None,
                             generation: int | None, *, reset: bool = False) -> None:
        if self.groups.local_coordinator is None:
            body = {"offsets": [{"topic": t, "partition": p, "offset": o} for (t, p), o in offsets.items()]}
            if member_id is not None:
                body.update(member_id=member_id, generation=generation)
            if reset:
                body["reset"] = True
            await self._call_coordinator("POST", f"/groups/{group}/offsets", body)
            return
        await self.groups.commit_offsets_here(group, offsets, member_id, generation, reset=reset)

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
        if (coordinator := self.groups.local_coordinator) is not None:
            return await coordinator.join(group, member_id, topics, session_timeout_ms, rebalance_timeout_ms,
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
        if (coordinator := self.groups.local_coordinator) is not None:
            return await coordinator.heartbeat(group, member_id, generation)
        await self._call_coordinator("POST", f"/groups/{group}/heartbeat",
                                     {"member_id": member_id, "generation": generation})

    async def leave(self, group, member_id):
        if (coordinator := self.groups.local_coordinator) is not None:
            return await coordinator.leave(group, member_id)
        await self._call_coordinator("DELETE", f"/groups/{group}/members/{member_id}", None)

    # ------------------------------------------------------------- helpers

    async def _call_coordinator(self, method: str, path: str, body: dict | None, timeout: float = 30.0):
        leader = await self.groups.coordinator_broker()
        if leader is None or leader == self.broker.id:
            raise self.broker.not_leader(None, COORDINATOR)
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


__all__ = ["HttpGroups"]
