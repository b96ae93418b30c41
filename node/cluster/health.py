"""How a broker and its Raft groups stand, as ``/health``, ``/raft`` and the metrics report it.

`BrokerHealth` reads the broker's state and changes none of it: the status of
each group hosted here (`group_statuses`, ``GET /raft`` and the jobs' progress
polls), the groups without a leader for two election timeouts
(`leaderless_groups`), followers whose broker came back with an empty disk
(`lost_replicas`), and why the broker is not fully serving, in words
(`problems`: ``/health`` says "degraded" when there are any).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftka.node.cluster.metadata import METADATA_GROUP
from raftka.node.cluster.metadata_cluster import DECOMMISSIONED, DRAINING
from raftka.raft.core import Role

if TYPE_CHECKING:
    from raftka.node.cluster.broker import Broker


class BrokerHealth:
    def __init__(self, broker: "Broker"):
        self.broker = broker

    def _partition_names(self) -> dict[str, str]:
        """Raft group name -> "topic/partition" for the partitions hosted here."""
        return {h.group: f"{h.topic}/{h.partition}" for h in self.broker.partitions.values()}

    def leaderless_groups(self) -> list[str]:
        """Hosted groups that have known no leader for two election timeouts (a quorum is missing)."""
        limit = 2 * self.broker.host_config.election_ticks
        out = []
        for name, group in list(self.broker.host.groups.items()):
            node = group.node
            if node.leader is None and node.role is not Role.LEADER and \
                    node.now - max(node.heard_from_leader, 0) > limit:
                out.append(name)
        return out

    def group_statuses(self, names: set[str] | None = None) -> list[dict]:
        """`RaftHost.status` of the groups hosted here (all, or those named), with partition and log details."""
        hosted = self.broker.partitions_by_group
        groups = self.broker.host.status(names)
        leaderless = set(self.leaderless_groups())
        for g in groups:
            g["leaderless"] = g["group"] in leaderless  # no leader for two election timeouts: a quorum is missing
            h = hosted.get(g["group"])
            g["partition"] = None if h is None else f"{h.topic}/{h.partition}"  # None: the metadata group
            if h is not None:  # this replica's log (the leader's high watermark is the partition's)
                g.update(high_watermark=h.sm.high_watermark, log_start_offset=h.sm.log_start_offset,
                         size_bytes=h.sm.log.size_bytes, replica_bytes=h.sm.replica_bytes)
        return groups

    def lost_replicas(self) -> list[tuple[str, int]]:
        """(group, replica) of followers, in groups led here, whose broker came back with an empty disk."""
        host = self.broker.host
        return [(name, r) for name, g in list(host.groups.items()) if g.node.role is Role.LEADER
                for r in g.node.progress if host.replica_lost(r)]

    def problems(self) -> list[str]:
        """Why this broker is not fully serving, in words (empty: all is well); `/health` says "degraded"."""
        broker = self.broker
        names = {**self._partition_names(), METADATA_GROUP: "the metadata group"}
        problems = []
        state = broker.membership_state()
        if state == DECOMMISSIONED:
            return ["this broker was decommissioned: it hosts no replicas and is no longer a member of the cluster; "
                    "shut it down"]
        if state == DRAINING:
            problems.append("this broker is being decommissioned: its replicas are moving to other brokers")
        if not broker.metadata_member():
            problems.append("this broker's data directory is new (incarnation "
                            f"{broker.identity.incarnation:08x}): its metadata replica waits to be added and catch "
                            "up; requests are forwarded to the metadata leader meanwhile")
        leaderless = self.leaderless_groups()
        if leaderless:
            problems.append(f"no leader (a quorum of replicas is missing) for {len(leaderless)} group(s): "
                            + ", ".join(sorted(names.get(g, g) for g in leaderless)[:20]))
        for group, reason in sorted(broker.hosting.lost_groups.items()):
            problems.append(f"not hosting {group}: {reason}")
        for failure in broker.hosting.partition_problems():
            problems.append(f"cannot open partition {failure['partition']} (attempt {failure['attempts']}, next try "
                            f"in {failure['retry_in_s']} s): {failure['error']}")
        lost = self.lost_replicas()
        if lost:
            problems.append(f"{len(lost)} replica(s) lost with their broker's disk, being replaced: "
                            + ", ".join(sorted(f"{names.get(g, g)} on broker {r & ((1 << 31) - 1)}"
                                               for g, r in lost)[:20]))
        storage = broker.host.storage_status()
        if storage["status"] != "ok":  # a full or failing disk: the broker lives on, its replicas stand aside
            problems.append(f"storage {storage['status']}: {storage['reason']}; {storage['stopped_groups']} "
                            "replica(s) on this broker stopped until the disk can be written again")
        return problems
