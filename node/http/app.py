"""The broker's aiohttp application: error middleware, ops endpoints, and route assembly.

Every answer is JSON in REST Proxy style and carries `X-Raftka-Broker`; any
exception becomes a clear error document (an unexpected one is logged and
answered 500 50002) — a bad request never takes the broker down.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from raftka.node.cluster.broker import Broker
from raftka.node.errors import ApiError, InternalError, RequestTooLarge, error_body
from raftka.node.http.common import JSON, METRICS_KEY, SERVICES_KEY, error_response, json_response
from raftka.node.http.forwarding import BROKER_HEADER
from raftka.node.http.openapi import openapi_spec
from raftka.node.http.routes_groups import GroupsFacade, add_group_routes
from raftka.node.http.routes_records import add_record_routes
from raftka.node.http.routes_topics import add_topic_routes
from raftka.node.metrics import CONTENT_TYPE, MetricsRegistry
from raftka.node.services import BrokerServices
from raftka.raft.core import Role

log = logging.getLogger("raftka.node.http.app")


@web.middleware
async def topic_catch_up_middleware(request: web.Request, handler):
    """A topic just created may not have reached this broker's metadata replica yet: wait a moment."""
    topic = request.match_info.get("topic")
    if topic is not None:
        await request.app[SERVICES_KEY].topics.catch_up(topic)
    return await handler(request)


@web.middleware
async def errors_middleware(request: web.Request, handler):
    broker = request.app[SERVICES_KEY].broker
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        response = error_response(RequestTooLarge(
            f"Request body exceeds the limit of {broker.config.max_request_bytes} bytes (--max-request-bytes)."))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.status * 100 if exc.status < 500 else 50002
        response = web.Response(body=error_body(code, f"{exc.reason}: {request.method} {request.path}"),
                                status=exc.status, content_type=JSON)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        response = error_response(InternalError("Internal error; the broker logged the details."))
    if BROKER_HEADER not in response.headers:
        response.headers[BROKER_HEADER] = str(broker.id)
    return response


# ------------------------------------------------------------------ ops routes

async def health(request: web.Request) -> web.Response:
    broker = request.app[SERVICES_KEY].broker
    leader = broker.metadata_leader()
    doc = {"status": "ok" if leader is not None else "unavailable", "broker": broker.id, "metadata_leader": leader}
    if broker.config.kafka_advertise is not None:  # read by the metadata leader to register it (node/kafka)
        doc["listeners"] = {"kafka": str(broker.config.kafka_advertise)}
    return json_response(doc, 200 if leader is not None else 503)


async def raft_status(request: web.Request) -> web.Response:
    broker = request.app[SERVICES_KEY].broker
    names = {h.group: f"{h.topic}/{h.partition}" for h in broker.partitions.values()}
    groups = broker.host.status()
    for g in groups:
        g["partition"] = names.get(g["group"])  # "topic/partition", or None for the metadata group
    return json_response({"broker": broker.id, "groups": groups, "transport": broker.host.transport_stats()})


async def raft_leaders(request: web.Request) -> web.Response:
    broker = request.app[SERVICES_KEY].broker
    return json_response({"broker": broker.id, "groups": broker.led_groups()})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS_KEY].render(), headers={"Content-Type": CONTENT_TYPE})


_OPENAPI = orjson.dumps(openapi_spec())


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_OPENAPI, content_type=JSON)


def register_raft_metrics(registry: MetricsRegistry, broker: Broker) -> None:
    def groups():
        return broker.host.groups.items()

    registry.gauge_function("raftka_raft_term", "Current Raft term per group.", ("group",),
                            lambda: [((n,), g.node.log.term) for n, g in groups()])
    registry.gauge_function("raftka_raft_commit_index", "Raft commit index per group.", ("group",),
                            lambda: [((n,), g.node.commit) for n, g in groups()])
    registry.gauge_function("raftka_raft_applied_index", "Raft applied index per group.", ("group",),
                            lambda: [((n,), g.node.applied) for n, g in groups()])
    registry.gauge_function("raftka_raft_is_leader", "1 if this broker leads the group.", ("group",),
                            lambda: [((n,), int(g.node.role is Role.LEADER)) for n, g in groups()])
    registry.gauge_function(
        "raftka_raft_follower_lag_entries", "Entries a follower is behind the leader.", ("group", "follower"),
        lambda: [((n, str(p)), g.node.log.last_index - pr.match)
                 for n, g in groups() if g.node.role is Role.LEADER for p, pr in g.node.progress.items()])
    registry.gauge_function("raftka_metadata_leader", "Metadata group leader as seen here.", (),
                            lambda: [((), broker.metadata_leader() or 0)])
    registry.gauge_function("raftka_partitions_hosted", "Partition replicas hosted by this broker.", (),
                            lambda: [((), len(broker.partitions))])


def create_app(services: BrokerServices, groups: GroupsFacade) -> web.Application:
    broker = services.broker
    app = web.Application(middlewares=[errors_middleware, topic_catch_up_middleware],
                          client_max_size=broker.config.max_request_bytes)
    registry = MetricsRegistry()
    app[SERVICES_KEY] = services
    app[METRICS_KEY] = registry
    register_raft_metrics(registry, broker)
    app.router.add_get("/health", health)
    app.router.add_get("/raft", raft_status)
    app.router.add_get("/raft/leaders", raft_leaders)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    add_topic_routes(app)
    add_record_routes(app)
    add_group_routes(app, groups)
    return app


__all__ = ["create_app"]
