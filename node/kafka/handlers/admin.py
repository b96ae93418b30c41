"""Admin over Kafka: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs,
IncrementalAlterConfigs, DescribeCluster — adapters over `TopicService`.

Writes are metadata commands proposed by the metadata leader (the controller
named in Metadata and DescribeCluster). A broker that does not lead the
metadata group relays the whole request to the leader's Kafka listener
(`forwarding.ControllerRelay`) and relays the answer; when it cannot, every
item answers NOT_CONTROLLER and the client retries after refreshing its
metadata. Validation (names, counts, replication factor, config names and
bounds) is the service's; its errors become Kafka's per-item codes.

Topic configs are raftka's (retention.ms, retention.bytes, segment.bytes,
max.message.bytes, cleanup.policy); any other name answers INVALID_CONFIG.
Replica assignments chosen by the client are not supported
(INVALID_REPLICA_ASSIGNMENT): raftka spreads replicas and leaders itself.
Broker configs are described as empty and cannot be altered (they are
command-line settings). Authorization as in Kafka, per item: CreateTopics needs
CREATE on the cluster or on the topic, DeleteTopics DELETE on the topic,
CreatePartitions ALTER, DescribeConfigs DESCRIBE_CONFIGS and the alters
ALTER_CONFIGS on the topic (on the cluster for broker configs); a relayed
request is authorized by the leader, as the client that sent it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kafka.protocol.admin import (AlterConfigsResponse, CreatePartitionsResponse, CreateTopicsResponse,
                                  DeleteTopicsResponse, DescribeClusterResponse, DescribeConfigsResponse,
                                  IncrementalAlterConfigsResponse)

from raftka.node.errors import ApiError, InvalidRequest
from raftka.node.kafka.access import allowed, authorize
from raftka.node.kafka.errors import Context, ErrorCode, error_code
from raftka.node.kafka.handlers.metadata import controller_id, kafka_brokers
from raftka.node.kafka.handlers.raw import RawResponse
from raftka.node.security.acl import Operation, Resource
from raftka.node.services.routing import ServedElsewhere, metadata_leader_here

TOPIC, BROKER = 2, 4  # Kafka config resource types
CONFIG_SOURCE_TOPIC, CONFIG_SOURCE_DEFAULT = 1, 5
SET, DELETE = 0, 1  # IncrementalAlterConfigs operations (APPEND, SUBTRACT: list configs, not supported)


class InvalidReplicaAssignment(ApiError):
    """The client chose replica assignments (raftka spreads replicas and leaders itself)."""


def _failure(exc: BaseException) -> tuple[int, str | None]:
    if isinstance(exc, InvalidReplicaAssignment):
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, exc.message
    code = error_code(exc, Context.CONTROLLER)
    return code, exc.message if isinstance(exc, ApiError) else None


async def relayed_unless_leader(conn: Any, request: Any) -> RawResponse | ErrorCode | None:
    """None when this broker leads the metadata group; else the leader's answer, or NOT_CONTROLLER."""
    try:
        await metadata_leader_here(conn.server.broker)
        return None
    except ServedElsewhere as elsewhere:
        relayed = await conn.server.relay.relay(request, elsewhere.leader_id)
        return RawResponse(relayed) if relayed is not None else ErrorCode.NOT_CONTROLLER
    except ApiError:
        return ErrorCode.NOT_CONTROLLER


# ---------------------------------------------------------------------------- topics

async def _write_each(conn: Any, request: Any, items: list[Any],
                      act: Callable[[Any], Awaitable[Any]]) -> RawResponse | list[tuple[Any, int, str | None, Any]]:
    """``act(item)`` for every item on the metadata leader: (item, error code, message, what act returned); or
    the leader's whole answer when this broker relayed the request."""
    routed = await relayed_unless_leader(conn, request)
    if isinstance(routed, RawResponse):
        return routed

    async def one(item: Any) -> tuple[Any, int, str | None, Any]:
        if routed is not None:
            return item, routed, "this broker does not lead the metadata group", None
        try:
            return item, ErrorCode.NONE, None, await act(item)
        except ApiError as exc:
            return (item, *_failure(exc), None)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def create_topics(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version
    result = CreateTopicsResponse.CreatableTopicResult
    topics = conn.server.services.topics

    async def create(t: Any) -> dict:
        if not allowed(conn, Operation.CREATE, Resource.cluster()):
            await authorize(conn, Operation.CREATE, Resource.topic(t.name))
        if t.assignments:
            raise InvalidReplicaAssignment("raftka assigns replicas itself")
        partitions = t.num_partitions if t.num_partitions != -1 else topics.default_partitions()
        factor = t.replication_factor if t.replication_factor != -1 else topics.default_replication_factor()
        return await topics.create(t.name, partitions, factor, {c.name: c.value for c in t.configs},
                                   validate_only=body.validate_only)

    def answer(t: Any, code: int, message: str | None, created: dict | None) -> Any:
        if created is None:
            return result(name=t.name, error_code=code, error_message=message, num_partitions=-1,
                          replication_factor=-1, configs=None)
        explicit = {c.name for c in t.configs}
        return result(name=t.name, error_code=code, error_message=None, num_partitions=created["partitions"],
                      replication_factor=created["replication_factor"], configs=[
                          result.CreatableTopicConfigs(
                              name=k, value=str(v), read_only=False, is_sensitive=False,
                              config_source=CONFIG_SOURCE_TOPIC if k in explicit else CONFIG_SOURCE_DEFAULT)
                          for k, v in created["configs"].items()])

    done = await _write_each(conn, request, list(body.topics), create)
    if isinstance(done, RawResponse):
        return done
    return CreateTopicsResponse(version=version, throttle_time_ms=0, topics=[answer(*d) for d in done])


async def delete_topics(conn: Any, request: Any) -> Any:
    result = DeleteTopicsResponse.DeletableTopicResult

    async def delete(name: str) -> None:
        await authorize(conn, Operation.DELETE, Resource.topic(name))
        await conn.server.services.topics.delete(name)

    done = await _write_each(conn, request, list(request.body.topic_names), delete)
    if isinstance(done, RawResponse):
        return done
    return DeleteTopicsResponse(version=request.api_version, throttle_time_ms=0, responses=[
        result(name=name, error_code=code, error_message=message) for name, code, message, _ in done])


async def create_partitions(conn: Any, request: Any) -> Any:
    body = request.body
    result = CreatePartitionsResponse.CreatePartitionsTopicResult

    async def grow(t: Any) -> None:
        await authorize(conn, Operation.ALTER, Resource.topic(t.name))
        if t.assignments:
            raise InvalidReplicaAssignment("raftka assigns replicas itself")
        await conn.server.services.topics.add_partitions(t.name, t.count, validate_only=body.validate_only)

    done = await _write_each(conn, request, list(body.topics), grow)
    if isinstance(done, RawResponse):
        return done
    return CreatePartitionsResponse(version=request.api_version, throttle_time_ms=0, results=[
        result(name=t.name, error_code=code, error_message=message) for t, code, message, _ in done])


# ---------------------------------------------------------------------------- configs

async def describe_configs(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version
    result = DescribeConfigsResponse.DescribeConfigsResult
    entry = result.DescribeConfigsResourceResult
    topics = conn.server.services.topics
    answers = []
    for r in body.resources:
        try:
            await authorize(conn, Operation.DESCRIBE_CONFIGS,
                            Resource.cluster() if r.resource_type == BROKER else Resource.topic(r.resource_name))
        except ApiError as exc:
            code, message = _failure(exc)
            answers.append(result(error_code=code, error_message=message, resource_type=r.resource_type,
                                  resource_name=r.resource_name, configs=[]))
            continue
        if r.resource_type == BROKER:
            answers.append(result(error_code=ErrorCode.NONE, error_message=None, resource_type=r.resource_type,
                                  resource_name=r.resource_name, configs=[]))
            continue
        try:
            if r.resource_type != TOPIC:
                raise InvalidRequest(f"raftka describes topic and broker configs, not resource type "
                                     f"{r.resource_type}.")
            await topics.catch_up(r.resource_name)
            configs, explicit = topics.configs(r.resource_name), topics.explicit_configs(r.resource_name)
        except ApiError as exc:
            code, message = _failure(exc)
            answers.append(result(error_code=code, error_message=message, resource_type=r.resource_type,
                                  resource_name=r.resource_name, configs=[]))
            continue
        keys = r.configuration_keys
        answers.append(result(error_code=ErrorCode.NONE, error_message=None, resource_type=r.resource_type,
                              resource_name=r.resource_name, configs=[
                                  entry(name=k, value=str(v), read_only=False, is_default=k not in explicit,
                                        config_source=CONFIG_SOURCE_TOPIC if k in explicit else
                                        CONFIG_SOURCE_DEFAULT, is_sensitive=False, synonyms=[], config_type=0,
                                        documentation=None)
                                  for k, v in configs.items() if keys is None or k in keys]))
    return DescribeConfigsResponse(version=version, throttle_time_ms=0, results=answers)


async def _alter(conn: Any, request: Any, response_cls: type, incremental: bool) -> Any:
    body = request.body
    result = response_cls.AlterConfigsResourceResponse
    topics = conn.server.services.topics

    async def alter(r: Any) -> None:
        await authorize(conn, Operation.ALTER_CONFIGS,
                        Resource.cluster() if r.resource_type == BROKER else Resource.topic(r.resource_name))
        if r.resource_type != TOPIC:
            raise InvalidRequest("raftka alters topic configs only; broker configs are command-line settings.")
        if not incremental:
            await topics.alter_configs(r.resource_name, {c.name: c.value for c in r.configs if c.value is not None},
                                       replace=True, validate_only=body.validate_only)
            return
        if any(c.config_operation not in (SET, DELETE) for c in r.configs):
            raise InvalidRequest("raftka's topic configs take SET and DELETE, not APPEND or SUBTRACT.")
        await topics.alter_configs(r.resource_name, {c.name: c.value for c in r.configs if c.config_operation == SET},
                                   remove=[c.name for c in r.configs if c.config_operation == DELETE],
                                   validate_only=body.validate_only)

    done = await _write_each(conn, request, list(body.resources), alter)
    if isinstance(done, RawResponse):
        return done
    return response_cls(version=request.api_version, throttle_time_ms=0, responses=[
        result(error_code=code, error_message=message, resource_type=r.resource_type, resource_name=r.resource_name)
        for r, code, message, _ in done])


async def alter_configs(conn: Any, request: Any) -> Any:
    return await _alter(conn, request, AlterConfigsResponse, incremental=False)


async def incremental_alter_configs(conn: Any, request: Any) -> Any:
    return await _alter(conn, request, IncrementalAlterConfigsResponse, incremental=True)


# ---------------------------------------------------------------------------- cluster

async def describe_cluster(conn: Any, request: Any) -> Any:
    server = conn.server
    addresses = kafka_brokers(server)
    broker = DescribeClusterResponse.DescribeClusterBroker
    return DescribeClusterResponse(
        version=request.api_version, throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
        endpoint_type=1, cluster_id=server.cluster_id, controller_id=controller_id(server, addresses),
        brokers=[broker(broker_id=b, host=h, port=p, rack=None) for b, (h, p) in sorted(addresses.items())])


__all__ = ["alter_configs", "create_partitions", "create_topics", "delete_topics", "describe_cluster",
           "describe_configs", "incremental_alter_configs", "relayed_unless_leader"]
