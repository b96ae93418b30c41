"""raftka.node.services — what every front end (HTTP today, the Kafka protocol next) calls: protocol-neutral
operations over the broker core. Topics admin (`topics`), produce (`produce`), fetch (`fetch`), and consumer
groups and offsets (`raftka.node.groups.service`), users, ACLs and the authorization decision
(`raftka.node.services.security`); `routing` says where an operation must run when it is not
here (`ServedElsewhere`). Front ends parse their protocol, call these, and render the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftka.node.cluster.broker import Broker
from raftka.node.groups.service import GroupService
from raftka.node.services.fetch import FetchService
from raftka.node.services.produce import ProduceService
from raftka.node.services.security import SecurityService
from raftka.node.services.topics import TopicService


@dataclass(frozen=True, slots=True)
class BrokerServices:
    """One broker's services, shared by its front ends."""

    broker: Broker
    topics: TopicService
    produce: ProduceService
    fetch: FetchService
    groups: GroupService
    security: SecurityService

    @classmethod
    def of(cls, broker: Broker) -> BrokerServices:
        return cls(broker, TopicService(broker), ProduceService(broker), FetchService(broker), GroupService(broker),
                   SecurityService(broker))


__all__ = ["BrokerServices"]
