"""Where an operation must run: this broker, or another one named as data (`ServedElsewhere`).

A partition operation runs on the partition's leader (holding its lease); a
metadata write on the metadata group's leader. The services never talk to
other brokers themselves: when the work belongs elsewhere they raise
`ServedElsewhere` with the broker's id and URL. The HTTP front end forwards
the request there; a Kafka front end answers NOT_LEADER_OR_FOLLOWER and lets
the client refresh its metadata. `ServedElsewhere` is a `NotLeader`, so a
front end that cannot forward answers the same retriable 50301 as always.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from raftka.node.cluster.broker import Broker
from raftka.node.cluster.metadata import METADATA_GROUP
from raftka.node.errors import NotLeader, StorageUnavailable
from raftka.raft.host import ReadIndexError

LEADER_WAIT_S = 3.0  # how long a request waits for an election before answering "no leader known"
READ_INDEX_WAIT_S = 1.0  # how long a metadata read waits for this replica to catch up with the leader

T = TypeVar("T")


class ServedElsewhere(NotLeader):
    """The operation must run on broker `leader_id` (at `leader_url`): a leader, or a replica that knows more."""

    def __init__(self, what: str, broker_id: int, url: str):
        super().__init__(what, leader_id=broker_id, leader_url=url)


def elsewhere(broker: Broker, target: int | None, what: str) -> NotLeader:
    """`ServedElsewhere` at `target`, or a plain `NotLeader` when no other broker can be named."""
    if target is None or target == broker.id or target not in broker.urls:
        return broker.not_leader(target, what)
    return ServedElsewhere(what, target, broker.urls[target])


async def wait_for(predicate: Callable[[], T | None], timeout: float) -> T | None:
    """Poll `predicate` until it returns something other than None, or `timeout` seconds pass."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value is not None or asyncio.get_running_loop().time() >= deadline:
            return value
        await asyncio.sleep(0.05)


async def serve_partition_here(broker: Broker, topic: str, partition: int) -> None:
    """Return when this broker should serve the partition itself: it leads with a lease (or it is the preferred
    replica of a partition not hosted yet: the local call then answers NotLeader). Else raise `ServedElsewhere`
    naming the broker to go to, or `NotLeader` when no leader is elected within `LEADER_WAIT_S`
    (`StorageUnavailable` when this broker's replica is stopped by its disk: it says why). A leader whose
    broker's Raft link is down counts as none: after a leader's death the request waits for the election
    instead of failing at once."""
    deadline = asyncio.get_running_loop().time() + LEADER_WAIT_S
    replicas = broker.replicas(topic, partition)
    what = f"partition {topic}/{partition}"
    while True:
        hosted = broker.partitions.get((topic, partition))
        if hosted is not None and broker.host.read_allowed(hosted.group):
            return
        expired = asyncio.get_running_loop().time() >= deadline
        leader = broker.leader_of(topic, partition)
        if leader is not None and leader != broker.id:
            if expired or hosted is None or broker.host.broker_reachable(leader):
                raise elsewhere(broker, leader, what)
            # The leader's broker just closed its link (it died?): wait for the election here rather than
            # forward into a refused connection and send the client into its retry backoff.
        elif hosted is None:
            if replicas[0] == broker.id:
                return
            raise elsewhere(broker, replicas[0], what)  # a replica knows more; it forwards once more if needed
        elif expired:
            reason = broker.host.storage_stop_reason(broker.host.group(hosted.group))
            if reason is not None:
                raise StorageUnavailable(broker.id, reason, what)
            raise broker.not_leader(None, what)
        await asyncio.sleep(0.02)


async def metadata_leader_here(broker: Broker) -> None:
    """Return when this broker leads the metadata group; else raise `ServedElsewhere` naming the leader, or
    `NotLeader` when none is known within `LEADER_WAIT_S`."""
    leader = await broker.wait_metadata_leader(LEADER_WAIT_S)
    if leader != broker.id:
        raise elsewhere(broker, leader, "the metadata group")


async def metadata_fresh_here(broker: Broker) -> None:
    """Return once this broker's metadata replica is as fresh as the metadata leader's was when asked (a read
    index), so that a miss here is a miss there. A replica that cannot be (not yet a member — a broker back
    with an empty disk — or too far behind) raises `ServedElsewhere` naming the leader, or `NotLeader`."""
    if broker.is_metadata_leader():
        return
    if broker.metadata_member():
        try:
            await broker.host.read_index(METADATA_GROUP, READ_INDEX_WAIT_S)
            return
        except ReadIndexError:
            pass
    raise elsewhere(broker, broker.metadata_leader(), "the metadata group (this broker's copy is not current)")


__all__ = ["LEADER_WAIT_S", "READ_INDEX_WAIT_S", "ServedElsewhere", "elsewhere", "metadata_fresh_here",
           "metadata_leader_here", "serve_partition_here", "wait_for"]
