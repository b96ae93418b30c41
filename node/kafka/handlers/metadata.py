"""Metadata: every broker's Kafka address, the controller (the metadata leader), topics, partitions and leaders.

Brokers are those that registered a Kafka listener (this one always, from its
own configuration). A partition whose leader is unknown, or has no Kafka
listener, answers LEADER_NOT_AVAILABLE so that clients retry; the replicas are
also given as the in-sync replicas (Raft followers that are behind catch up
before they can lead). Leader epochs are -1: clients then skip epoch-based
truncation checks, which Raft makes unnecessary (a committed record is never
truncated). Topics are never created by a Metadata request: create them first
(CreateTopics, the HTTP API or `raftka topics create`). Asked for all topics,
Metadata lists those the client may DESCRIBE; a named topic it may not
describe answers TOPIC_AUTHORIZATION_FAILED, whether or not it exists.
"""

from __future__ import annotations

from typing import Any

from kafka.protocol.metadata import MetadataResponse

from raftka.node.cluster.topics import validate_topic_name
from raftka.node.errors import ApiError
from raftka.node.kafka.access import denied, visible
from raftka.node.kafka.errors import ErrorCode
from raftka.node.security.acl import Operation, Resource, ResourceType

_Broker = MetadataResponse.MetadataResponseBroker
_Topic = MetadataResponse.MetadataResponseTopic
_Partition = _Topic.MetadataResponsePartition


def kafka_brokers(server: Any) -> dict[int, tuple[str, int]]:
    """(host, port) of every broker with a Kafka listener; this one from its configuration."""
    addresses = server.services.topics.listener_addresses("kafka")
    addresses[server.broker.id] = (server.advertised.host, server.advertised.port)
    return addresses


def controller_id(server: Any, addresses: dict[int, tuple[str, int]]) -> int:
    """The metadata leader when clients can reach it over Kafka; else this broker, which relays admin writes."""
    leader = server.broker.metadata_leader()
    return leader if leader in addresses else server.broker.id


async def metadata(conn: Any, request: Any) -> Any:
    server, body, version = conn.server, request.body, request.api_version
    topics = server.services.topics
    addresses = kafka_brokers(server)
    if body.topics is None or (version == 0 and not body.topics):
        try:
            names = await topics.names()
        except ApiError:  # this broker's copy cannot be confirmed current: answer from it, clients refresh later
            names = sorted(server.broker.metadata.topics)
        names = visible(conn, ResourceType.TOPIC, names)
    else:
        names = [t.name for t in body.topics]
    answered = []
    for name in names:
        refused = await denied(conn, Operation.DESCRIBE, Resource.topic(name)) if isinstance(name, str) else None
        answered.append(await _topic(server, name, addresses) if refused is None else
                        _Topic(error_code=refused, name=name, is_internal=False, partitions=[]))
    return MetadataResponse(
        version=version, throttle_time_ms=0,
        brokers=[_Broker(node_id=b, host=h, port=p, rack=None) for b, (h, p) in sorted(addresses.items())],
        cluster_id=server.cluster_id, controller_id=controller_id(server, addresses), topics=answered)


async def _topic(server: Any, name: str | None, addresses: dict[int, tuple[str, int]]) -> Any:
    broker = server.broker
    try:
        validate_topic_name(name)
    except ApiError:
        return _Topic(error_code=ErrorCode.INVALID_TOPIC_EXCEPTION, name=name, is_internal=False, partitions=[])
    try:
        await server.services.topics.catch_up(name)
    except ApiError:
        pass  # this broker's copy cannot be confirmed current: answer from it, clients refresh later
    topic = broker.metadata.topic(name)
    if topic is None:
        return _Topic(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name, is_internal=False, partitions=[])
    partitions = []
    for index, replicas in enumerate(topic["partitions"]):
        leader = broker.leader_of(name, index)
        known = leader is not None and leader in addresses
        partitions.append(_Partition(
            error_code=ErrorCode.NONE if known else ErrorCode.LEADER_NOT_AVAILABLE, partition_index=index,
            leader_id=leader if known else -1, leader_epoch=-1, replica_nodes=list(replicas),
            isr_nodes=list(replicas), offline_replicas=[]))
    return _Topic(error_code=ErrorCode.NONE, name=name, is_internal=False, partitions=partitions)


__all__ = ["controller_id", "kafka_brokers", "metadata"]
