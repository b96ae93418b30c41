"""The elastic cluster's operations, for every front end: brokers join and leave, replicas move, factors change.

Every write runs on the metadata leader (elsewhere it raises `ServedElsewhere`
naming it), is validated here against the leader's metadata and what it sees
of the brokers (alive or not), and becomes one metadata command; the state
machine checks the deterministic part again (`metadata_cluster`), so a race
between two requests still ends in one clear error.  Bad input changes
nothing: an unknown, dead, draining or repeated broker in a replica list, a
factor above the active brokers, a drain that would leave a partition short
of replicas or the metadata group without a live quorum, a second move of a
partition that is moving — each is a 4xx with the reason.

Moves are jobs (`metadata_cluster`); their progress is reported by the
metadata leader's `JobDriver` (`GET /reassignments`,
`GET /brokers/{id}/decommission`).
"""

from __future__ import annotations

import time

from raftka.node.cluster import metadata_cluster as registry
from raftka.node.cluster.broker import Broker
from raftka.node.cluster.join import JoinRequestError, parse_join_request, proof_valid
from raftka.node.cluster.membership import PROVEN_GONE_S
from raftka.node.cluster.metadata import METADATA_GROUP, command
from raftka.node.cluster.placement import (PlacementError, drain_plan, leader_counts, metadata_voter_count,
                                           rebalance_plan, replica_counts, replication_factor_plan)
from raftka.node.cluster.topics import validate_replication_factor
from raftka.node.errors import (BrokerAlreadyRegistered, BrokerNotFound, InvalidReplicaAssignment, InvalidRequest,
                                JoinRefused, NotLeader, ReassignmentInProgress, ReassignmentNotFound,
                                UnsafeClusterChange)
from raftka.node.services.routing import elsewhere, metadata_leader_here
from raftka.raft.host import ReadIndexError
from raftka.raft.replica import broker_of

CLUSTER_READ_INDEX_S = 0.5


class ClusterService:
    def __init__(self, broker: Broker):
        self.broker = broker

    # ------------------------------------------------------------------- reads

    async def describe(self) -> dict:
        """`GET /cluster`: the cluster id and the broker registry, for brokers that start (best effort fresh)."""
        broker = self.broker
        if broker.metadata_member() and not broker.is_metadata_leader():
            try:
                await broker.host.read_index(METADATA_GROUP, CLUSTER_READ_INDEX_S)
            except ReadIndexError:
                pass  # answer from this replica: a starting broker asks several
        md = broker.metadata
        return {"cluster_id": md.cluster_id or broker.identity.cluster_id, "formed": md.cluster_id is not None,
                "brokers": {str(b): e for b, e in sorted(md.brokers().items())},
                "metadata_leader": broker.metadata_leader()}

    async def brokers(self) -> dict:
        """`GET /brokers`: every broker with its addresses, liveness, membership, replicas, leaderships and metadata
        role ("brokers" lists the ids of those not decommissioned)."""
        broker = self.broker
        md = broker.metadata  # this replica's view (no read index: the console asks every 2 s)
        assignment = self._assignment()
        replicas = replica_counts(assignment)
        leaders: dict[int, int] = {}
        for topic, p in assignment:
            leader = broker.leader_of(topic, p)
            if leader is not None:
                leaders[leader] = leaders.get(leader, 0) + 1
        node = broker.host.group(METADATA_GROUP).node
        seats = {broker_of(r): ("voter" if r in node.voters else "learner")
                 for r in (node.membership.members if node.membership else ())}
        known = md.brokers() or {b: {} for b in broker.urls}
        details = []
        for b in sorted(set(known) | set(broker.urls)):
            entry = known.get(b, {})
            status = entry.get("membership", registry.ACTIVE)
            details.append({
                "id": b, "url": broker.urls.get(b, entry.get("http_url")),
                "raft_address": f"{entry['raft_host']}:{entry['raft_port']}" if "raft_host" in entry else None,
                "rack": entry.get("rack"), "alive": broker.alive(b) if status != registry.DECOMMISSIONED else False,
                "membership": status, "incarnation": f"{entry.get('incarnation', 0):08x}",
                "replicas": replicas.get(b, 0), "leaders": leaders.get(b, 0), "metadata_role": seats.get(b, "none"),
                "kafka": md.listener(b, "kafka"),
            })
        return {"brokers": [d["id"] for d in details if d["membership"] != registry.DECOMMISSIONED],
                "metadata_leader": broker.metadata_leader(), "cluster_id": md.cluster_id or broker.identity.cluster_id,
                "details": details}

    def _assignment(self, goals: bool = False) -> dict[tuple[str, int], list[int]]:
        md = self.broker.metadata
        return {(name, p): (md.goal(name, p) if goals else list(replicas))
                for name, topic in md.topics.items() for p, replicas in enumerate(topic["partitions"])}

    async def reassignments(self) -> dict:
        """`GET /reassignments`: every move in progress with its state and per-replica progress."""
        await metadata_leader_here(self.broker)
        views = await self._views()
        return {"reassignments": sorted(views.values(), key=lambda v: v["id"])}

    async def _views(self, fresh: bool = False) -> dict[str, dict]:
        """The job driver's views (`fresh`: after a change made here, a new round first)."""
        jobs = self.broker.jobs
        if fresh or set(jobs.views) != set(self.broker.metadata.reassignments()):
            await jobs.run_round()  # a new leader, or jobs started or changed since the last round
        return jobs.views

    async def decommission_status(self, broker_id: object) -> dict:
        """`GET /brokers/{id}/decommission`: the drain's progress."""
        b = self._registered(broker_id)
        await metadata_leader_here(self.broker)
        md = self.broker.metadata
        entry = md.brokers()[b]
        views = [v for v in (await self._views(fresh=True)).values()
                 if md.reassignment(v["topic"], v["partition"]) and
                 md.reassignment(v["topic"], v["partition"]).get("decommission") == b]
        drain = entry.get("drain") or {}
        remaining = registry.replicas_on(md.state, b)
        return {"broker": b, "membership": entry.get("membership", registry.ACTIVE),
                "started_ms": drain.get("started_ms"), "partitions_total": drain.get("partitions"),
                "partitions_remaining": len(remaining), "metadata_voter": b in self.broker.seated_voters(),
                "done": entry.get("membership") == registry.DECOMMISSIONED and b not in self._metadata_members(),
                "bytes_copied": sum(v["bytes_copied"] for v in views),
                "bytes_total": sum(v["bytes_total"] for v in views),
                "reassignments": sorted(views, key=lambda v: v["id"])}

    def _metadata_members(self) -> set[int]:
        membership = self.broker.host.group(METADATA_GROUP).node.membership
        return {broker_of(r) for r in membership.members} if membership is not None else set()

    # ------------------------------------------------------------------ checks

    def _registered(self, broker_id: object) -> int:
        if self.broker.metadata.cluster_id is None:  # the first metadata leader records the brokers right away
            raise NotLeader("the broker registry (the cluster is forming)")
        if type(broker_id) is not int or self.broker.metadata.membership_of(broker_id) is None:
            raise BrokerNotFound(broker_id)
        return broker_id

    def _takers(self) -> list[int]:
        """Brokers that can take new replicas now: active and alive."""
        return [b for b in self.broker.metadata.active_brokers() if self.broker.alive(b)]

    def _racks(self) -> dict[int, str | None]:
        return {b: e.get("rack") for b, e in self.broker.metadata.brokers().items()}

    def _check_replicas(self, replicas: object, current: list[int]) -> list[int]:
        md = self.broker.metadata
        if not isinstance(replicas, list) or not replicas or any(type(b) is not int for b in replicas):
            raise InvalidReplicaAssignment(f"replicas must be a non-empty list of broker ids, got {replicas!r}.")
        repeated = sorted({b for b in replicas if replicas.count(b) > 1})
        if repeated:
            raise InvalidReplicaAssignment(f"Broker(s) {repeated} listed more than once in replicas {replicas}.")
        for b in replicas:
            status = md.membership_of(b)
            if status is None:
                raise InvalidReplicaAssignment(f"Broker {b} is not a member of this cluster (brokers "
                                               f"{md.registered_brokers()}).")
            if status != registry.ACTIVE and b not in current:
                raise InvalidReplicaAssignment(f"Broker {b} is {status}: it takes no new replicas.")
            if not self.broker.alive(b) and b not in current:
                raise InvalidReplicaAssignment(f"Broker {b} is down (not heard from): a replica there could not copy "
                                               "the partition.")
        return replicas

    def _not_moving(self, keys) -> None:
        moving = [f"{t}/{p}" for t, p in keys if self.broker.metadata.reassignment(t, p) is not None]
        if moving:
            raise ReassignmentInProgress(f"Partition(s) {', '.join(moving[:10])} are being reassigned already; wait "
                                         "for the move to finish or cancel it first.")

    # ------------------------------------------------------------------ writes

    async def join(self, doc: object) -> dict:
        """`POST /brokers`: register a broker that joins (see `join` for the request and its proof)."""
        broker = self.broker
        try:
            request = parse_join_request(doc)
        except JoinRequestError as exc:
            raise InvalidRequest(f"Malformed join request: {exc}.") from None
        await metadata_leader_here(broker)
        md = broker.metadata
        if broker.config.cluster_secret is None:
            raise JoinRefused("This cluster runs without a cluster secret, so no broker can join it: restart its "
                              "broker with --cluster-secret first.")
        if md.cluster_id is None:
            raise NotLeader("the broker registry (the cluster is forming)")
        if not proof_valid(broker.config.cluster_secret, md.cluster_id, request):
            raise JoinRefused(f"The join request's proof does not match cluster {md.cluster_id}: start the broker "
                              "with this cluster's secret (--cluster-secret).")
        b, incarnation = request["id"], request["incarnation"]
        entry = md.brokers().get(b)
        if entry is not None and entry.get("membership") != registry.DECOMMISSIONED \
                and entry["incarnation"] != incarnation:
            heard = broker.host.incarnations_heard.get(b, {}).get(entry["incarnation"])
            if b == broker.id or (heard is not None and time.monotonic() - heard < PROVEN_GONE_S):
                raise BrokerAlreadyRegistered(f"Broker {b} is a live member of this cluster: give the new broker "
                                              "another --id, or stop the running one first.")
        await self._write(command("register_broker", broker=b, incarnation=incarnation, http_url=request["http_url"],
                                  raft_host=request["raft_host"], raft_port=request["raft_port"],
                                  rack=request["rack"]))
        return await self.describe()

    async def reassign(self, topic: str, partition: int, replicas: object) -> tuple[int, dict]:
        """Move a partition to `replicas` (preferred leader first): (202, job) — or (200, ...) when only the order
        changes (a new preferred leader, nothing to copy) or nothing does."""
        await metadata_leader_here(self.broker)
        current = self.broker.replicas(topic, partition)
        self._not_moving([(topic, partition)])
        target = self._check_replicas(replicas, current)
        if target == current:
            return 200, {"topic": topic, "partition": partition, "replicas": current, "message": "Nothing to move."}
        result = await self._write(command("start_reassignments", moves=[
            {"topic": topic, "partition": partition, "target": target}], reason="reassignment", now_ms=_now_ms()))
        if not result["jobs"]:
            return 200, {"topic": topic, "partition": partition, "replicas": target,
                         "message": "Same replicas in another order: the preferred leader changed, nothing moves."}
        return 202, await self._job_view(topic, partition)

    async def _job_view(self, topic: str, partition: int) -> dict:
        views = await self._views(fresh=True)
        return views.get(f"{topic}/{partition}") or {"topic": topic, "partition": partition, "state": "complete"}

    async def cancel_reassignment(self, topic: str, partition: int) -> dict:
        await metadata_leader_here(self.broker)
        self.broker.replicas(topic, partition)
        if self.broker.metadata.reassignment(topic, partition) is None:
            raise ReassignmentNotFound(topic, partition)
        await self._write(command("cancel_reassignment", topic=topic, partition=partition))
        return await self._job_view(topic, partition)

    async def set_replication_factor(self, topic: str, factor: object) -> tuple[int, dict]:
        """`PATCH /topics/{t}`: every partition moves to `factor` replicas (202 and the jobs; 200 if unchanged)."""
        broker = self.broker
        await metadata_leader_here(broker)
        doc = broker.topic(topic)
        factor = validate_replication_factor(factor, len(broker.metadata.active_brokers()))
        keys = [(topic, p) for p in range(len(doc["partitions"]))]
        self._not_moving(keys)
        takers = self._takers()
        if factor > len(takers):
            raise UnsafeClusterChange(f"Replication factor {factor} needs {factor} live brokers that take replicas; "
                                      f"only {takers} are.")
        try:
            plan = replication_factor_plan({k: doc["partitions"][k[1]] for k in keys}, factor, takers, self._racks(),
                                           self._assignment())
        except PlacementError as exc:
            raise UnsafeClusterChange(str(exc)) from None
        if not plan and doc["replication_factor"] == factor:
            return 200, {"name": topic, "replication_factor": factor, "reassignments": []}
        moves = [{"topic": t, "partition": p, "target": target} for (t, p), target in sorted(plan.items())]
        await self._write(command("set_replication_factor", name=topic, factor=factor, moves=moves, now_ms=_now_ms()))
        views = await self._views(fresh=True)
        return 202, {"name": topic, "replication_factor": factor,
                     "reassignments": [views[f"{t}/{p}"] for t, p in sorted(plan) if f"{t}/{p}" in views]}

    async def decommission(self, broker_id: object) -> dict:
        """`POST /brokers/{id}/decommission`: drain every replica (and a metadata voter seat) off the broker."""
        broker = self.broker
        b = self._registered(broker_id)
        await metadata_leader_here(broker)
        md = broker.metadata
        status = md.membership_of(b)
        if status != registry.ACTIVE:
            raise UnsafeClusterChange(f"Broker {b} is {status} already.")
        remaining = [x for x in md.active_brokers() if x != b]
        if not remaining:
            raise UnsafeClusterChange(f"Broker {b} is the last active broker; it cannot be decommissioned.")
        takers = [x for x in self._takers() if x != b]
        voters = metadata_voter_count(broker.config.metadata_voters, len(remaining))
        if len(takers) < voters // 2 + 1:
            raise UnsafeClusterChange(
                f"Decommissioning broker {b} would leave the metadata group without a quorum of live voters: "
                f"{voters} voter seats among brokers {remaining}, of which only {takers} are alive.")
        assignment = self._assignment()
        on_broker = sorted(k for k, replicas in assignment.items() if b in replicas)
        self._not_moving(on_broker)
        if not broker.alive(b):
            lone = [f"{t}/{p}" for t, p in on_broker if len(assignment[(t, p)]) == 1]
            if lone:
                raise UnsafeClusterChange(f"Broker {b} is down and holds the only replica of {', '.join(lone[:10])}: "
                                          "that data cannot be moved; bring the broker back first.")
        for key in on_broker:
            free = [x for x in takers if x not in assignment[key]]
            if not free:
                rf = len(assignment[key])
                raise UnsafeClusterChange(
                    f"Decommissioning broker {b} would leave partition {key[0]}/{key[1]} with {rf - 1} of its {rf} "
                    f"replicas: no other live broker can take one (it is on {assignment[key]}; live active brokers: "
                    f"{takers}). Add a broker, or lower the topic's replication factor first.")
        try:
            plan = drain_plan({k: assignment[k] for k in on_broker}, b, takers, self._racks())
        except PlacementError as exc:
            raise UnsafeClusterChange(str(exc)) from None
        moves = [{"topic": t, "partition": p, "target": target} for (t, p), target in sorted(plan.items())]
        await self._write(command("decommission_broker", broker=b, moves=moves, now_ms=_now_ms()))
        return await self.decommission_status(b)

    async def recommission(self, broker_id: object) -> dict:
        b = self._registered(broker_id)
        await metadata_leader_here(self.broker)
        await self._write(command("recommission_broker", broker=b))
        return await self.decommission_status(b)

    async def rebalance(self, dry_run: bool) -> dict:
        """`POST /cluster/rebalance`: spread replicas and preferred leaders evenly over live active brokers (racks
        respected); with `dry_run` only the plan."""
        broker = self.broker
        await metadata_leader_here(broker)
        md = broker.metadata
        assignment = self._assignment()
        moving = {(j["topic"], j["partition"]) for j in md.reassignments().values()}
        takers = self._takers()
        plan = rebalance_plan(assignment, takers, self._racks(), moving)
        after = {**assignment, **plan}
        changes = [{"topic": t, "partition": p, "replicas_before": assignment[(t, p)], "replicas_after": target,
                    "moves_data": sorted(target) != sorted(assignment[(t, p)])}
                   for (t, p), target in sorted(plan.items())]
        before_r, after_r = replica_counts(assignment, takers), replica_counts(after, takers)
        before_l, after_l = leader_counts(assignment, takers), leader_counts(after, takers)
        doc = {"dry_run": dry_run, "changes": changes,
               "brokers": [{"id": b, "rack": md.brokers().get(b, {}).get("rack"), "replicas_before": before_r[b],
                            "replicas_after": after_r[b], "preferred_leaders_before": before_l[b],
                            "preferred_leaders_after": after_l[b]} for b in sorted(takers)],
               "reassignments": []}
        if dry_run or not changes:
            return doc
        moves = [{"topic": c["topic"], "partition": c["partition"], "target": c["replicas_after"]} for c in changes]
        result = await self._write(command("start_reassignments", moves=moves, reason="rebalance", now_ms=_now_ms()))
        doc["reassignments"] = result["jobs"]
        return doc

    async def balance_leaders(self) -> dict:
        """`POST /cluster/leaders/balance`: each partition's leadership goes to its preferred (first) replica."""
        broker = self.broker
        await metadata_leader_here(broker)
        transfers = []
        for (topic, p), replicas in sorted(self._assignment(goals=True).items()):
            leader = broker.leader_of(topic, p)
            if leader is not None and leader != replicas[0] and broker.metadata.reassignment(topic, p) is None:
                transfers.append({"topic": topic, "partition": p, "from": leader, "to": replicas[0]})
        result = await self._write(command("balance_leaders"))
        return {"epoch": result["epoch"], "transfers": transfers}

    async def _write(self, cmd: bytes) -> dict:
        try:
            return await self.broker.propose_metadata(cmd)
        except NotLeader as exc:
            raise elsewhere(self.broker, exc.leader_id, "the metadata group") from None


def _now_ms() -> int:
    return int(time.time() * 1000)


__all__ = ["ClusterService"]
