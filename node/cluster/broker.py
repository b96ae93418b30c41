"""The broker: one RaftHost, the metadata group, the partition groups it hosts, and leader routing.

`Broker` is the core the services (`raftka.node.services`) build on; it knows
no front end. Its only HTTP is the client session used to ask peers which
groups they lead (and that the HTTP front end borrows to forward).  Its jobs:

* settle who it is (see `settle`: bootstrap, join, back after a disk loss),
  start the Raft host and the metadata group (every broker follows it: a few
  as voters, the others as learners), keep its peers' addresses in line with
  the metadata's broker registry (brokers join and leave); `hosting` keeps
  the partition groups hosted here in line with the metadata whenever a topic
  changes (create → add groups, delete → remove groups and their data; a
  partition that cannot be opened is recorded and retried with backoff, while
  every other group proceeds), and `membership` keeps each group's Raft
  membership in line (a broker back with an empty disk is registered as a new
  incarnation and its replicas replaced);
* never host a replica whose state was lost under a live incarnation (its
  directory vanished, or its state machine is behind its own journal): it
  would vote as the replica it was; `hosted_groups` remembers what this
  directory hosts;
* propose metadata commands and produce batches, and serve committed reads
  under the leader lease (a hosted partition, `hosting.NotifyingPartition`,
  wakes long-polling fetches when data is applied);
* know who leads what: groups hosted here know their leader; for the others a
  background poller (`leaders`) asks every peer which groups it leads
  (`GET /raft/leaders`, answered with changes since the poller's last version only).

Its HTTP session to peers speaks TLS when the brokers do (`tls`, re-read on SIGHUP) and signs every request
with the cluster secret (`peer_signer`, see `raftka.node.security.peer`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

import aiohttp

from raftka.node.cluster.health import BrokerHealth
from raftka.node.cluster.hosted_groups import HostedGroups
from raftka.node.cluster.hosting import HostedPartition, PartitionHosting
from raftka.node.cluster.identity import BrokerIdentity, IdentityError, bootstrap_identity, check_data_dir
from raftka.node.cluster.jobs import JobDriver
from raftka.node.cluster.leaders import LeaderPoller
from raftka.node.cluster.membership import MembershipReconciler
from raftka.node.cluster.metadata import METADATA_GROUP, MetadataStateMachine
from raftka.node.cluster.metadata_cluster import DECOMMISSIONED
from raftka.node.cluster.placement import choose_metadata_voters, metadata_voter_count
from raftka.node.cluster.settle import Seed, settle_identity
from raftka.node.config import BrokerConfig
from raftka.node.errors import ApiError, NotLeader, PartitionNotFound, RequestTimedOut, StorageUnavailable, TopicNotFound
from raftka.node.security.peer import PeerSigner
from raftka.node.security.tls import BrokerTls
from raftka.raft import canary
from raftka.raft.core import NotLeaderError, Role
from raftka.raft.host import GroupStateLost, HostConfig, ProposalDroppedError, RaftHost, StorageUnavailableError
from raftka.raft.journal import Journal
from raftka.raft.membership import Membership
from raftka.raft.partition import DeleteRecordsResult, ProduceResult, encode_delete_records, encode_produce
from raftka.raft.replica import broker_of, replica_id

log = logging.getLogger("raftka.node.cluster.broker")

BOOTSTRAP_LOG_INTERVAL_S = 5.0
JOINING_CLUSTER_ID = "joining"  # the transport's cluster id until a joining broker learns the real one


class MetadataRejected(ApiError):
    """A metadata command the state machine refused (topic exists, stale generation, ...)."""

    def __init__(self, error_code: int, message: str):
        super().__init__(message)
        self.error_code, self.http_status = error_code, error_code // 100


class Broker:
    def __init__(self, config: BrokerConfig):
        # Before touching the data dir: refuse another broker's, or one made with another secret (None: empty).
        self.identity: BrokerIdentity | None = check_data_dir(config.data_dir, config.broker_id, config.cluster_secret)
        self.config = config
        self.id = config.broker_id
        self.data_dir = str(config.data_dir)
        self.urls = {p.broker_id: p.http_url for p in config.peers}  # every broker's HTTP URL (see refresh_peers)
        self.seed = Seed(dict(self.urls), {p.broker_id: p.raft_address for p in config.peers})
        tick_ms = max(10, min(50, config.heartbeat_ms // 2))
        self.host_config = HostConfig(tick_ms=tick_ms,
                                      heartbeat_ticks=max(1, config.heartbeat_ms // tick_ms),
                                      election_ticks=max(3, config.election_timeout_ms // tick_ms),
                                      min_free_bytes=config.min_free_bytes,
                                      learner_catchup_bytes_per_sec=config.reassignment_max_bytes_per_sec,
                                      inline_sync_max_ms=config.inline_fsync_max_us / 1000,
                                      leader_sync_delay_ms=config.leader_fsync_delay_ms)
        if self.identity is not None:
            cluster_id = self.identity.cluster_id
        else:
            cluster_id = JOINING_CLUSTER_ID if config.join else bootstrap_identity(config).cluster_id
        self.host = RaftHost(self.id, self.data_dir, listen=(config.raft_listen.host, config.raft_listen.port),
                             peers=dict(self.seed.raft), secret=config.cluster_secret, config=self.host_config,
                             cluster_id=cluster_id)
        self.metadata: MetadataStateMachine | None = None  # opened once the data directory is claimed (start)
        self.partitions: dict[tuple[str, int], HostedPartition] = {}
        self.partitions_by_group: dict[str, HostedPartition] = {}  # the same, by Raft group name
        self.topology_version = 0  # bumped by every metadata change of topics, assignments or incarnations
        self.hosted_groups = HostedGroups(self.data_dir)
        self.hosting = PartitionHosting(self)  # opens and removes the partition replicas the metadata assigns here
        self.health = BrokerHealth(self)  # /health, /raft and the metrics
        self.leaders = LeaderPoller(self)  # who leads the groups not hosted here, as the peers report
        self._tasks: list[asyncio.Task] = []
        self.session: aiohttp.ClientSession | None = None
        self.peer_signer = PeerSigner(self.id, config.cluster_secret)
        self.tls = BrokerTls(config.security.tls) if config.security.tls is not None else None
        self.change_listeners: list = []  # called after topics change (e.g. the group coordinator)
        self._proposing: set[str] = set()  # keys of propose_metadata_soon commands in flight

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # signed with the cluster secret from the first request on: a broker that joins a cluster with
        # authentication on is let in as Broker:<id> (its requests prove the secret; no user needed)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30, connect=2), middlewares=(self.peer_signer.sign_request,),
            connector=aiohttp.TCPConnector(ssl=self.tls.client if self.tls is not None else True))
        await self.host.start()
        try:
            await self._settle_identity()
            self.metadata = MetadataStateMachine(os.path.join(self.data_dir, "metadata"),
                                                 on_change=self._on_metadata_change)
            if self.metadata.membership_of(self.id) == DECOMMISSIONED and \
                    self.metadata.incarnation(self.id) == self.identity.incarnation:
                raise IdentityError(f"refusing to start: broker {self.id} was decommissioned from cluster "
                                    f"{self.identity.cluster_id}; its data directory cannot rejoin. To add this broker "
                                    "back, empty its data directory and start it with --join (any live broker).")
            self.refresh_peers()
            self._host_group(METADATA_GROUP, self._metadata_bootstrap_membership(), self.metadata, critical=True)
        except BaseException:
            await self.host.stop()
            await self.session.close()
            raise
        self.membership = MembershipReconciler(self)
        self.jobs = JobDriver(self)
        self.hosting.reconcile_soon()
        self._tasks = [asyncio.create_task(self.hosting.run_forever(), name="reconcile"),
                       asyncio.create_task(self.leaders.run_forever(), name="leader-poller"),
                       asyncio.create_task(self.hosting.retention_forever(), name="retention"),
                       asyncio.create_task(self.membership.run_forever(), name="membership"),
                       asyncio.create_task(self.jobs.run_forever(), name="jobs"),
                       asyncio.create_task(self._announce_forever(), name="announce")]

    # ------------------------------------------------------------- identity

    async def _settle_identity(self) -> None:
        """Claim the data directory (see `settle`), then wait for the peers if the cluster has not formed yet."""
        self.identity, self.seed = await settle_identity(self)
        self.host.set_cluster_id(self.identity.cluster_id)
        self.host.set_peers(self.seed.raft)
        self.urls.update(self.seed.urls)
        self.host.replica = replica_id(self.id, self.identity.incarnation)
        self.host.announce(self.identity.incarnation, self._formed(), self._announced_addresses())
        if not self._formed():
            others = [b for b in self.urls if b != self.id]
            await self._await_peers(lambda: True if all(
                self.host.peer_announcements.get(b) is not None and self.host.peer_announcements[b].incarnation
                is not None for b in others) else None, "every broker to start")

    async def _await_peers(self, decide, what: str):
        loop = asyncio.get_running_loop()
        next_log = loop.time() + BOOTSTRAP_LOG_INTERVAL_S
        while (decision := decide()) is None:
            if loop.time() >= next_log:
                next_log = loop.time() + BOOTSTRAP_LOG_INTERVAL_S
                silent = sorted(b for b in self.urls if b != self.id and b not in self.host.peer_announcements)
                log.info("broker %d: waiting for peers to tell %s (not heard from: %s)", self.id, what, silent)
            await asyncio.sleep(0.05)
        return decision

    def _announced_addresses(self) -> dict:
        """What this broker's heartbeats tell the others besides its incarnation (the metadata leader registers it)."""
        me = self.config.self_peer
        return {"http_url": me.http_url, "raft_host": me.host, "raft_port": me.raft_port, "rack": self.config.rack}

    def _metadata_bootstrap_membership(self) -> Membership | None:
        """The metadata group's first membership, for a broker that bootstraps the cluster: the first
        `--metadata-voters` of the bootstrap brokers vote, the others follow (None: a later broker, it is added)."""
        if self.identity.incarnation != 0:
            return None
        peers = sorted(self.identity.peer_ids or self.config.peer_ids)
        count = metadata_voter_count(self.config.metadata_voters, len(peers))
        return Membership.of(peers[:count], peers[count:])

    def refresh_peers(self) -> None:
        """Every broker's addresses: the metadata's registry (the seed until the registry exists), except that a
        broker this one's own --peers lists is reached at the address given there (an operator's view of the
        network wins: NAT, per-host proxies); decommissioned brokers are dropped."""
        md = self.metadata
        if md is None or md.cluster_id is None:
            source = self.seed
        else:
            live = {b for b in md.brokers() if md.membership_of(b) != DECOMMISSIONED}
            registry = Seed.from_registry(md.brokers())
            configured = {p.broker_id: p for p in self.config.peers} if self.config.join is None else {}
            urls = {**self.seed.urls, **registry.urls, **{b: p.http_url for b, p in configured.items()}}
            raft = {**self.seed.raft, **registry.raft, **{b: p.raft_address for b, p in configured.items()}}
            source = Seed({b: u for b, u in urls.items() if b in live}, {b: a for b, a in raft.items() if b in live})
        urls = {**source.urls, self.id: self.config.self_peer.http_url}
        if urls != self.urls:
            self.urls.clear()
            self.urls.update(urls)
        self.host.set_peers(source.raft)

    def alive(self, broker: int) -> bool:
        """Heard from (Raft traffic) within an election timeout, as seen by this broker."""
        return broker == self.id or self.host.peer_silence_s(broker) < self.host_config.election_timeout_s

    def membership_state(self) -> str:
        """This broker's membership in the cluster: active, draining or decommissioned."""
        return self.metadata.membership_of(self.id) or "active"

    def _formed(self) -> bool:
        """Has the cluster formed as far as this directory knows (a later incarnation, or a metadata term)?"""
        if self.identity.incarnation != 0:
            return True
        group = self.host.groups.get(METADATA_GROUP)
        if group is not None:
            return group.node.log.term > 0
        return Journal.stored_term(self.host.hard_states, METADATA_GROUP,
                                   self.host.group_directory(METADATA_GROUP)) > 0

    async def _announce_forever(self) -> None:
        while not self.host.announcement.formed:
            await asyncio.sleep(0.1)
            if self._formed():
                self.host.announce(self.identity.incarnation, True)

    def _host_group(self, name: str, members: list[int] | None, sm, *, critical: bool = False) -> None:
        """add_group, unless this directory hosted the group before and its state is gone (GroupStateLost)."""
        hosted = self.hosted_groups.read()
        try:
            self.hosted_groups.check_not_lost(name, hosted, self.host.group_directory(name))
        except GroupStateLost:
            sm.close()
            raise
        self.host.add_group(name, members, sm, critical=critical)
        if name not in hosted:  # after the journal exists, before it can say anything (pump)
            self.hosted_groups.write(hosted | {name})

    def desired_membership(self, group: str) -> tuple[frozenset[int], frozenset[int]] | None:
        """(voters, learners) as replica ids that group `group` should have now, per this broker's metadata."""
        md = self.metadata
        if group == METADATA_GROUP:
            voters = self.metadata_voters()
            if not voters:
                return None
            learners = [b for b in md.registered_brokers() if b not in voters]
            return frozenset(md.replica(b) for b in voters), frozenset(md.replica(b) for b in learners)
        hosted = self.partitions_by_group.get(group)
        if hosted is None or md.topic(hosted.topic) is None:
            return None
        return frozenset(md.replica(b) for b in md.goal(hosted.topic, hosted.partition)), frozenset()

    def metadata_voters(self) -> list[int]:
        """The brokers that should hold the metadata group's voter seats now ([] before the registry exists)."""
        md = self.metadata
        if md.cluster_id is None:
            return []
        candidates = md.active_brokers()
        current = {broker_of(r) for r in self.host.group(METADATA_GROUP).node.voters}
        racks = {b: e.get("rack") for b, e in md.brokers().items()}
        return choose_metadata_voters(current, candidates, metadata_voter_count(self.config.metadata_voters,
                                                                                len(candidates)),
                                      alive=[b for b in candidates if self.alive(b)], racks=racks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self.host.stop()
        if self.session:
            await self.session.close()

    # ------------------------------------------------------------- metadata

    def metadata_leader(self) -> int | None:
        """Where to send metadata work: the leader this broker's replica knows, else what the peers report."""
        leader = self.host.leader_of(METADATA_GROUP)
        return leader if leader is not None else self.leaders.remote_leaders.get(METADATA_GROUP)

    def live_metadata_leader(self) -> int | None:
        """The metadata leader as far as this broker can vouch for it (`/health`): itself only under its lease,
        another broker only while that leader is heard from; else what the peers report (None: none known)."""
        if self.host.group(METADATA_GROUP).node.role is Role.LEADER:
            return self.id if self.host.read_allowed(METADATA_GROUP) else None
        leader = self.host.live_leader_of(METADATA_GROUP)
        return leader if leader is not None else self.leaders.remote_leaders.get(METADATA_GROUP)

    def metadata_member(self) -> bool:
        """Is this broker's metadata replica a member of the metadata group (not a new incarnation still waiting)?"""
        node = self.host.group(METADATA_GROUP).node
        return node.membership is not None and node.id in node.membership.members

    async def wait_metadata_leader(self, timeout: float) -> int | None:
        """The metadata group's leader, waiting up to `timeout` seconds for an election; None if none by then."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            leader = self.metadata_leader()
            if leader is not None or asyncio.get_running_loop().time() >= deadline:
                return leader
            await asyncio.sleep(0.05)

    def is_metadata_leader(self) -> bool:
        return self.host.read_allowed(METADATA_GROUP)

    def metadata_leader_term(self) -> int | None:
        """The term in which this broker is the metadata group's Raft leader (lease or not), else None."""
        node = self.host.group(METADATA_GROUP).node
        return node.log.term if node.role is Role.LEADER else None

    async def propose_metadata(self, cmd: bytes, timeout: float = 10.0) -> dict:
        """Replicate a metadata command here (this broker must lead the metadata group)."""
        try:
            async with asyncio.timeout(timeout):
                result = await self.host.propose(METADATA_GROUP, cmd)
        except NotLeaderError as exc:
            raise self.not_leader(exc.leader, "the metadata group") from None
        except StorageUnavailableError as exc:
            raise self.storage_unavailable(exc, "the metadata group") from None
        except asyncio.TimeoutError:
            raise RequestTimedOut(f"Metadata change not committed within {timeout:.0f} s; retry.") from None
        if "error" in result:
            raise MetadataRejected(result["error"], result["message"])
        return result

    def propose_metadata_soon(self, key: str, cmd: bytes) -> None:
        """Propose a metadata command in the background, unless the one under `key` is still in flight (a failure
        is logged; the background loops that use this try again on their next round)."""
        if key in self._proposing:
            return
        self._proposing.add(key)

        async def propose() -> None:
            try:
                await self.propose_metadata(cmd)
            except Exception as exc:
                log.info("metadata command %s: %s", key, exc)
            finally:
                self._proposing.discard(key)

        asyncio.create_task(propose())

    def seated_voters(self) -> set[int]:
        """Brokers holding a voter seat of the metadata group now (as this replica's configuration says)."""
        return {broker_of(r) for r in self.host.group(METADATA_GROUP).node.voters}

    def topic(self, name: str) -> dict:
        topic = self.metadata.topic(name)
        if topic is None:
            raise TopicNotFound(name)
        return topic

    def replicas(self, topic: str, partition: int) -> list[int]:
        assignment = self.topic(topic)["partitions"]
        if not 0 <= partition < len(assignment):
            raise PartitionNotFound(topic, partition)
        return assignment[partition]

    def group_name(self, topic: str, partition: int) -> str:
        return f"{self.topic(topic)['id']}/{partition}"

    def new_topic_id(self) -> str:
        return uuid.uuid4().hex[:12]

    def _on_metadata_change(self, op: str, cmd: dict) -> None:
        self.topology_version += 1  # topics, assignments or incarnations changed (see MembershipReconciler)
        self.hosting.reconcile_soon()
        self.refresh_peers()
        for listener in self.change_listeners:
            listener(op, cmd)

    # ------------------------------------------------------------ routing

    def not_leader(self, leader: int | None, what: str) -> NotLeader:
        return NotLeader(what, leader_id=leader, leader_url=self.urls.get(leader) if leader is not None else None)

    def storage_unavailable(self, exc: StorageUnavailableError, what: str) -> StorageUnavailable:
        leader = exc.leader
        return StorageUnavailable(self.id, exc.reason, what, leader, self.urls.get(leader) if leader else None)

    def leader_of(self, topic: str, partition: int) -> int | None:
        """Best knowledge of a partition's leader: hosted group, peers' reports, else None."""
        replicas = self.replicas(topic, partition)
        group = self.group_name(topic, partition)
        if group in self.host.groups:
            leader = self.host.leader_of(group)
            if leader is not None:
                return leader
        leader = self.leaders.remote_leaders.get(group)
        return leader if leader in replicas else None

    def local_partition(self, topic: str, partition: int) -> HostedPartition:
        """The partition if this broker leads it with a valid lease, else NotLeader with a hint."""
        self.replicas(topic, partition)
        hosted = self.partitions.get((topic, partition))
        if hosted is not None and canary.enabled("follower-reads"):
            return hosted
        if hosted is None or not self.host.read_allowed(hosted.group):
            leader = self.leader_of(topic, partition)
            raise self.not_leader(leader if leader != self.id else None, f"partition {topic}/{partition}")
        return hosted

    # ------------------------------------------------------- produce / fetch

    async def produce(self, topic: str, partition: int, batch: bytes, timeout: float) -> ProduceResult:
        """Replicate one RecordBatch to the partition (leader only); returns the state machine's result."""
        return await self._propose_partition(topic, partition, encode_produce(batch), timeout, "Produce to",
                                             "retry with the idempotent producer")

    async def delete_records(self, topic: str, partition: int, before_offset: int,
                             timeout: float) -> DeleteRecordsResult:
        """Delete the partition's records below `before_offset` through its Raft group (leader only); returns the
        state machine's result."""
        return await self._propose_partition(topic, partition, encode_delete_records(before_offset), timeout,
                                             "Deleting records of", "deleting again is harmless")

    async def _propose_partition(self, topic: str, partition: int, command: bytes, timeout: float, action: str,
                                 retry_advice: str):
        hosted = self.local_partition(topic, partition)
        try:
            async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for: one loop step less
                result = await self.host.propose(hosted.group, command)
        except NotLeaderError as exc:
            raise self.not_leader(exc.leader, f"partition {topic}/{partition}") from None
        except StorageUnavailableError as exc:  # nothing was appended: a definite, retriable failure
            raise self.storage_unavailable(exc, f"partition {topic}/{partition}") from None
        except asyncio.TimeoutError:
            raise RequestTimedOut(f"{action} {topic}/{partition} not committed within {timeout:.1f} s; the "
                                  f"outcome is unknown ({retry_advice}).") from None
        except ApiError:
            raise
        except ProposalDroppedError as exc:  # definitely not applied: safe to call it a failure
            log.info("%s %s/%d dropped: %s", action.lower(), topic, partition, exc)
            raise NotLeader(f"partition {topic}/{partition} (the command was not committed: {exc})") from None
        except Exception as exc:  # snapshot-covered or group closed: it may have been applied
            raise RequestTimedOut(f"{action} {topic}/{partition}: outcome unknown ({exc}); {retry_advice}."
                                  ) from None
        return result
