"""raftka.node.services — what every front end (HTTP and the Kafka protocol) calls: protocol-neutral operations
over the broker core. Topics admin (`topics`), produce (`produce`), fetch (`fetch`), deleting records
(`delete_records`), consumer groups and offsets (`raftka.node.groups.service`), the elastic cluster's operations
(`cluster`: joins, decommissions, replica moves, replication factors, rebalancing), users, ACLs and the
authorization decision (`security`, over `raftka.node.security`), and the produce/fetch traffic counters
(`traffic`); `routing` says where an operation must run when it is not here (`ServedElsewhere`).
Front ends parse their protocol, call these, and render the answer. The broker's metrics registry lives here
too: every front end's `/metrics` families go into the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftka.node.cluster.broker import Broker
from raftka.node.groups.service import GroupService
from raftka.node.metrics import MetricsRegistry
from raftka.node.services.delete_records import DeleteRecordsService
from raftka.node.services.cluster import ClusterService
from raftka.node.services.fetch import FetchService
from raftka.node.services.produce import ProduceService
from raftka.node.services.security import SecurityService
from raftka.node.services.topics import TopicService
from raftka.node.services.traffic import TrafficMetrics


@dataclass(frozen=True, slots=True)
class BrokerServices:
    """One broker's services, shared by its front ends."""

    broker: Broker
    metrics: MetricsRegistry
    topics: TopicService
    produce: ProduceService
    fetch: FetchService
    delete_records: DeleteRecordsService
    groups: GroupService
    cluster: ClusterService
    security: SecurityService

    @classmethod
    def of(cls, broker: Broker) -> BrokerServices:
        metrics = MetricsRegistry()
        traffic = TrafficMetrics(metrics)
        return cls(broker, metrics, TopicService(broker), ProduceService(broker, traffic),
                   FetchService(broker, traffic), DeleteRecordsService(broker), GroupService(broker),
                   ClusterService(broker), SecurityService(broker, metrics))


__all__ = ["BrokerServices"]
