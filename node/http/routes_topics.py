"""Topic administration routes: topics, partitions, configs, producer ids, cluster metadata.

Thin adapters over `TopicService`: reads answer from this broker's replica of
the metadata, with each partition's figures fetched from its leader when
another broker leads it; a write the service says belongs on the metadata
leader (`ServedElsewhere`) is forwarded there as it is. Listings show only the topics
the user may describe (authorization itself: `access`).
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
from aiohttp import web

from raftka.node.errors import InvalidRequest
from raftka.node.http.auth import visible
from raftka.node.http.common import SERVICES_KEY, json_response, partition_number, read_json
from raftka.node.http.forwarding import FORWARDED_HEADER, forwarded_elsewhere, hops
from raftka.node.security.acl import ResourceType
from raftka.node.services import BrokerServices
from raftka.node.services.topics import TopicService

LEADER_FIGURES_TIMEOUT_S = 2.0
CREATE_FIELDS = {"name", "partitions", "partitions_count", "replication_factor", "configs"}


def topics_of(request: web.Request) -> TopicService:
    services: BrokerServices = request.app[SERVICES_KEY]
    return services.topics


@forwarded_elsewhere
async def cluster_metadata(request: web.Request) -> web.Response:
    doc = await topics_of(request).cluster_metadata()
    shown = set(visible(request, ResourceType.TOPIC, doc["topics"]))
    doc["topics"] = {name: topic for name, topic in doc["topics"].items() if name in shown}
    return json_response(doc)


@forwarded_elsewhere
async def list_topics(request: web.Request) -> web.Response:
    return json_response(visible(request, ResourceType.TOPIC, await topics_of(request).names()))


async def get_topic(request: web.Request) -> web.Response:
    doc = topics_of(request).describe(request.match_info["topic"])
    await with_leader_figures(request, doc["name"], doc["partitions"])
    return json_response(doc)


async def list_partitions(request: web.Request) -> web.Response:
    name = request.match_info["topic"]
    docs = topics_of(request).describe_partitions(name)
    await with_leader_figures(request, name, docs)
    return json_response(docs)


async def get_partition(request: web.Request) -> web.Response:
    name = request.match_info["topic"]
    doc = topics_of(request).describe_partition(name, partition_number(request))
    await with_leader_figures(request, name, [doc])
    return json_response(doc)


async def with_leader_figures(request: web.Request, name: str, docs: list[dict]) -> None:
    """Fill in, from each partition's leader, the figures only it has (high watermark, log start, in sync), so
    that every broker gives the same answer. A request forwarded here is answered with this broker's own view;
    a leader that does not answer within a moment leaves its figures null."""
    if hops(request) > 0:
        return
    wanted = topics_of(request).led_elsewhere(name, docs)
    if not wanted:
        return
    session = request.app[SERVICES_KEY].broker.session
    urls = request.app[SERVICES_KEY].broker.urls

    async def ask(leader: int, partitions: list[int]) -> list[dict]:
        path = f"/topics/{name}/partitions" + (f"/{partitions[0]}" if len(partitions) == 1 else "")
        try:
            async with session.get(urls[leader] + path, headers={FORWARDED_HEADER: "1"},
                                   timeout=aiohttp.ClientTimeout(total=LEADER_FIGURES_TIMEOUT_S)) as resp:
                answer = orjson.loads(await resp.read()) if resp.status == 200 else []
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, orjson.JSONDecodeError):
            return []
        answer = answer if isinstance(answer, list) else [answer]
        return [d for d in answer if d.get("leader") == leader and d.get("partition") in partitions
                and d.get("high_watermark") is not None]

    by_partition = {doc["partition"]: doc for doc in docs}
    for answers in await asyncio.gather(*(ask(leader, ps) for leader, ps in wanted.items())):
        for figures in answers:
            by_partition[figures["partition"]].update(
                replicas=figures["replicas"], high_watermark=figures["high_watermark"],
                log_start_offset=figures["log_start_offset"])


async def get_configs(request: web.Request) -> web.Response:
    name = request.match_info["topic"]
    return json_response({"name": name, "configs": topics_of(request).configs(name)})


@forwarded_elsewhere
async def replace_broker_disk(request: web.Request) -> web.Response:
    try:
        broker_id = int(request.match_info["broker"])
    except ValueError:
        broker_id = request.match_info["broker"]
    return json_response(await topics_of(request).replace_broker_disk(broker_id), status=202)


@forwarded_elsewhere
async def create_topic(request: web.Request) -> web.Response:
    topics = topics_of(request)
    doc = await read_json(request)
    unknown = set(doc) - CREATE_FIELDS
    if unknown:
        raise InvalidRequest(f"Unknown fields {sorted(unknown)}; expected name, partitions, replication_factor, "
                             "configs.")
    configs = doc.get("configs") or {}
    if isinstance(configs, list):  # REST Proxy v3 style [{"name":..., "value":...}]
        try:
            configs = {c["name"]: c["value"] for c in configs}
        except (TypeError, KeyError):
            raise InvalidRequest('configs must be an object or a list of {"name", "value"}.') from None
    created = await topics.create(doc.get("name"),
                                  doc.get("partitions", doc.get("partitions_count", topics.default_partitions())),
                                  doc.get("replication_factor", topics.default_replication_factor()), configs)
    return json_response(created, 201)


@forwarded_elsewhere
async def delete_topic(request: web.Request) -> web.Response:
    await topics_of(request).delete(request.match_info["topic"])
    return web.Response(status=204)


@forwarded_elsewhere
async def add_partitions(request: web.Request) -> web.Response:
    topics, name = topics_of(request), request.match_info["topic"]
    topics.check_topic(name)
    doc = await read_json(request)
    return json_response(await topics.add_partitions(name, doc.get("count", doc.get("partitions"))))


@forwarded_elsewhere
async def alter_configs(request: web.Request) -> web.Response:
    topics, name = topics_of(request), request.match_info["topic"]
    topics.check_topic(name)
    doc = await read_json(request)
    changes = doc.get("configs")
    if not isinstance(changes, dict):
        raise InvalidRequest('Expected {"configs": {"retention.ms": "...", ...}}.')
    return json_response(await topics.alter_configs(name, changes))


@forwarded_elsewhere
async def allocate_producer(request: web.Request) -> web.Response:
    return json_response({"producer_id": await topics_of(request).allocate_producer_id(), "producer_epoch": 0})


def add_topic_routes(app: web.Application) -> None:
    r = app.router
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
    r.add_post("/brokers/{broker}/replace", replace_broker_disk)


__all__ = ["add_topic_routes"]
