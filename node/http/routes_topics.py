"""Cluster and topic administration routes: brokers, topics, partitions, configs, producer ids.

Reads answer from this broker's replica of the metadata; writes are metadata
commands, proposed here when this broker leads the metadata group and
forwarded to the leader otherwise.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from raftka.node.cluster.broker import Broker
from raftka.node.cluster.metadata import command
from raftka.node.cluster.topics import (assign_replicas, parse_topic_configs, validate_partition_count,
                                        validate_replication_factor, validate_topic_name)
from raftka.node.errors import InvalidPartitions, InvalidRequest, NotLeader
from raftka.node.http.common import BROKER_KEY, json_response, partition_number, read_json
from raftka.node.http.forwarding import forward

LEADER_WAIT_S = 3.0
TOPIC_READY_WAIT_S = 10.0


async def wait_for(predicate, timeout: float):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value is not None or asyncio.get_running_loop().time() >= deadline:
            return value
        await asyncio.sleep(0.05)


async def metadata_write(request: web.Request, cmd: bytes) -> dict | web.Response:
    """Propose `cmd` to the metadata group here, or forward the whole request to its leader."""
    broker: Broker = request.app[BROKER_KEY]
    leader = await wait_for(broker.metadata_leader, LEADER_WAIT_S)
    if leader == broker.id:
        try:
            return await broker.propose_metadata(cmd)
        except NotLeader as exc:
            leader = exc.leader_id
    error = broker.not_leader(leader, "the metadata group")
    if leader is None or leader == broker.id:
        raise error
    return await forward(request, broker.session, broker.urls[leader], error)


def topic_config(broker: Broker, topic: dict) -> dict:
    return parse_topic_configs(topic["configs"], broker.config.topic_defaults).to_kafka()


def describe_partition(broker: Broker, name: str, p: int, replicas: list[int]) -> dict:
    leader = broker.leader_of(name, p)
    doc = {"partition": p, "leader": leader,
           "replicas": [{"broker": b, "leader": b == leader, "in_sync": None} for b in replicas],
           "high_watermark": None, "log_start_offset": None}
    hosted = broker.partitions.get((name, p))
    if hosted is not None and leader == broker.id:
        group = broker.host.group(hosted.group)
        progress = group.node.progress
        for r in doc["replicas"]:
            # In sync: the leader itself, or a follower that acknowledged within the election timeout.
            r["in_sync"] = r["broker"] == broker.id or (
                r["broker"] in progress
                and group.node.now - progress[r["broker"]].acked_tick < broker.host_config.election_ticks)
        doc["high_watermark"] = hosted.sm.high_watermark
        doc["log_start_offset"] = hosted.sm.log_start_offset
    return doc


# ----------------------------------------------------------------- handlers

async def list_brokers(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    now = time.monotonic()
    silence_s = broker.host_config.election_ticks * broker.host_config.tick_ms / 1000

    def alive(b: int) -> bool:  # as seen by this broker: Raft traffic within an election timeout
        return b == broker.id or now - broker.host.peer_seen.get(b, -1e9) < silence_s

    return json_response({"brokers": sorted(broker.urls), "metadata_leader": broker.metadata_leader(),
                          "details": [{"id": b, "url": u, "alive": alive(b)} for b, u in sorted(broker.urls.items())]})


async def cluster_metadata(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    topics = {}
    for name, topic in broker.metadata.topics.items():
        topics[name] = {"partitions": [{"leader": broker.leader_of(name, p), "replicas": replicas}
                                       for p, replicas in enumerate(topic["partitions"])]}
    return json_response({"brokers": {str(b): u for b, u in broker.urls.items()}, "topics": topics,
                          "metadata_leader": broker.metadata_leader()})


async def list_topics(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    return json_response(sorted(broker.metadata.topics))


async def get_topic(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    name = request.match_info["topic"]
    topic = broker.topic(name)
    return json_response({"name": name, "configs": topic_config(broker, topic),
                          "replication_factor": topic["replication_factor"],
                          "partitions": [describe_partition(broker, name, p, r)
                                         for p, r in enumerate(topic["partitions"])]})


async def list_partitions(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    name = request.match_info["topic"]
    topic = broker.topic(name)
    return json_response([describe_partition(broker, name, p, r) for p, r in enumerate(topic["partitions"])])


async def get_partition(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    name, p = request.match_info["topic"], partition_number(request)
    return json_response(describe_partition(broker, name, p, broker.replicas(name, p)))


async def create_topic(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    doc = await read_json(request)
    unknown = set(doc) - {"name", "partitions", "partitions_count", "replication_factor", "configs"}
    if unknown:
        raise InvalidRequest(f"Unknown fields {sorted(unknown)}; expected name, partitions, replication_factor, "
                             "configs.")
    name = validate_topic_name(doc.get("name"))
    partitions = validate_partition_count(doc.get("partitions", doc.get("partitions_count",
                                                                         broker.config.default_partitions)))
    default_rf = broker.config.default_replication_factor or (3 if len(broker.urls) >= 3 else 1)
    rf = validate_replication_factor(doc.get("replication_factor", default_rf), len(broker.urls))
    configs = doc.get("configs") or {}
    if isinstance(configs, list):  # REST Proxy v3 style [{"name":..., "value":...}]
        try:
            configs = {c["name"]: c["value"] for c in configs}
        except (TypeError, KeyError):
            raise InvalidRequest('configs must be an object or a list of {"name", "value"}.') from None
    parse_topic_configs(configs, broker.config.topic_defaults)  # validates
    assignment = [list(r) for r in assign_replicas(sorted(broker.urls), partitions, rf)]
    result = await metadata_write(request, command("create_topic", name=name, id=broker.new_topic_id(),
                                                   assignment=assignment, configs=configs))
    if isinstance(result, web.Response):
        return result
    # Answer once every partition has a leader, so that produce right after create succeeds.
    await wait_for(lambda: True if all(broker.leader_of(name, p) is not None for p in range(partitions))
                   else None, TOPIC_READY_WAIT_S)
    return json_response({"name": name, "partitions": partitions, "replication_factor": rf,
                          "configs": parse_topic_configs(configs, broker.config.topic_defaults).to_kafka()}, 201)


async def delete_topic(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    name = request.match_info["topic"]
    broker.topic(name)
    result = await metadata_write(request, command("delete_topic", name=name))
    return result if isinstance(result, web.Response) else web.Response(status=204)


async def add_partitions(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    name = request.match_info["topic"]
    topic = broker.topic(name)
    doc = await read_json(request)
    current = len(topic["partitions"])
    total = validate_partition_count(doc.get("count", doc.get("partitions")))
    if total <= current:
        raise InvalidPartitions(f"Topic '{name}' has {current} partitions; the new count must be larger "
                                f"(got {total}). Partitions can only be added.")
    rf = topic["replication_factor"]
    extra = [list(r) for r in assign_replicas(sorted(broker.urls), total, rf)][current:]
    result = await metadata_write(request, command("add_partitions", name=name, from_count=current,
                                                   assignment=extra))
    return result if isinstance(result, web.Response) else json_response({"name": name, "partitions": total})


async def alter_configs(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    name = request.match_info["topic"]
    topic = broker.topic(name)
    doc = await read_json(request)
    changes = doc.get("configs")
    if not isinstance(changes, dict):
        raise InvalidRequest('Expected {"configs": {"retention.ms": "...", ...}}.')
    merged = {**topic["configs"], **changes}
    parse_topic_configs(merged, broker.config.topic_defaults)
    result = await metadata_write(request, command("alter_configs", name=name, configs=merged))
    if isinstance(result, web.Response):
        return result
    return json_response({"name": name, "configs": parse_topic_configs(merged, broker.config.topic_defaults)
                          .to_kafka()})


async def get_configs(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    name = request.match_info["topic"]
    return json_response({"name": name, "configs": topic_config(broker, broker.topic(name))})


async def allocate_producer(request: web.Request) -> web.Response:
    result = await metadata_write(request, command("allocate_producer_id"))
    if isinstance(result, web.Response):
        return result
    return json_response({"producer_id": result["producer_id"], "producer_epoch": 0})


def add_topic_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/brokers", list_brokers)
    r.add_get("/metadata", cluster_metadata)
    r.add_get("/topics", list_topics)
    r.add_post("/topics", create_topic)
    r.add_get("/topics/{topic}", get_topic)
    r.add_delete("/topics/{topic}", delete_topic)
    r.add_get("/topics/{topic}/partitions", list_partitions)
    r.add_post("/topics/{topic}/partitions", add_partitions)
    r.add_get("/topics/{topic}/partitions/{partition}", get_partition)
    r.add_get("/topics/{topic}/configs", get_configs)
    r.add_put("/topics/{topic}/configs", alter_configs)
    r.add_post("/producers", allocate_producer)


__all__ = ["add_topic_routes", "metadata_write"]
