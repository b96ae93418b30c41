"""Elastic cluster routes: brokers join and leave, replicas move, replication factors change, rebalancing.

Thin adapters over `ClusterService`; a write (and a job's progress, kept by
the metadata leader) that belongs on the metadata leader is forwarded there.
Names follow Kafka's AlterPartitionReassignments and Redpanda's
decommission/recommission APIs.
"""

from __future__ import annotations

from aiohttp import web

from raftka.node.errors import InvalidRequest
from raftka.node.http.common import SERVICES_KEY, json_response, partition_number, read_json
from raftka.node.http.forwarding import forwarded_elsewhere
from raftka.node.services.cluster import ClusterService


def cluster_of(request: web.Request) -> ClusterService:
    return request.app[SERVICES_KEY].cluster


def broker_number(request: web.Request) -> int | str:
    raw = request.match_info["broker"]
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else raw


async def describe_cluster(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).describe())


@forwarded_elsewhere
async def list_brokers(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).brokers())


@forwarded_elsewhere
async def join_broker(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).join(await read_json(request)), status=201)


@forwarded_elsewhere
async def list_reassignments(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).reassignments())


@forwarded_elsewhere
async def reassign(request: web.Request) -> web.Response:
    doc = await read_json(request)
    if not isinstance(doc, dict) or set(doc) != {"replicas"}:
        raise InvalidRequest('Expected {"replicas": [broker id, ...]} (the preferred leader first).')
    status, answer = await cluster_of(request).reassign(request.match_info["topic"], partition_number(request),
                                                        doc["replicas"])
    return json_response(answer, status=status)


@forwarded_elsewhere
async def cancel_reassignment(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).cancel_reassignment(request.match_info["topic"],
                                                                       partition_number(request)))


@forwarded_elsewhere
async def alter_topic(request: web.Request) -> web.Response:
    doc = await read_json(request)
    if not isinstance(doc, dict) or set(doc) != {"replication_factor"}:
        raise InvalidRequest('Expected {"replication_factor": N}.')
    status, answer = await cluster_of(request).set_replication_factor(request.match_info["topic"],
                                                                      doc["replication_factor"])
    return json_response(answer, status=status)


@forwarded_elsewhere
async def decommission(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).decommission(broker_number(request)), status=202)


@forwarded_elsewhere
async def decommission_status(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).decommission_status(broker_number(request)))


@forwarded_elsewhere
async def recommission(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).recommission(broker_number(request)))


@forwarded_elsewhere
async def rebalance(request: web.Request) -> web.Response:
    raw = request.query.get("dry_run", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"dry_run must be true or false, got {raw!r}.")
    dry_run = raw in ("true", "1")
    answer = await cluster_of(request).rebalance(dry_run)
    return json_response(answer, status=200 if dry_run or not answer["reassignments"] else 202)


@forwarded_elsewhere
async def balance_leaders(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).balance_leaders(), status=202)


def add_cluster_routes(app: web.Application) -> None:
    """Register before the generic `/brokers/{broker}/{view}` relay, whose pattern would match these too."""
    r = app.router
    r.add_get("/cluster", describe_cluster)
    r.add_get("/brokers", list_brokers)
    r.add_post("/brokers", join_broker)
    r.add_get("/reassignments", list_reassignments)
    r.add_post("/topics/{topic}/partitions/{partition}/reassignment", reassign)
    r.add_delete("/topics/{topic}/partitions/{partition}/reassignment", cancel_reassignment)
    r.add_patch("/topics/{topic}", alter_topic)
    r.add_post("/brokers/{broker}/decommission", decommission)
    r.add_get("/brokers/{broker}/decommission", decommission_status)
    r.add_post("/brokers/{broker}/recommission", recommission)
    r.add_post("/cluster/rebalance", rebalance)
    r.add_post("/cluster/leaders/balance", balance_leaders)


__all__ = ["add_cluster_routes"]
