"""The broker's aiohttp application: error middleware, ops endpoints, and route assembly.

Every answer is JSON in REST Proxy style and carries `X-Raftka-Broker`; any
exception becomes a clear error document (an unexpected one is logged and
answered 500 50002) — a bad request never takes the broker down.
"""

from __future__ import annotations

import gc
import logging
import time

import orjson
from aiohttp import web

from raftka.node.cluster.broker import Broker
from raftka.node.errors import ApiError, InternalError, RequestTooLarge, error_body
from raftka.node.console import add_console_routes
from raftka.node.http.auth import auth_middleware
from raftka.node.http.common import JSON, METRICS_KEY, SERVICES_KEY, error_response, json_response
from raftka.node.http.forwarding import BROKER_HEADER, forward_elsewhere
from raftka.node.http.openapi import openapi_spec
from raftka.node.http.peer_views import add_peer_view_routes
from raftka.node.http.routes_cluster import add_cluster_routes
from raftka.node.http.routes_groups import GroupsFacade, add_group_routes
from raftka.node.http.routes_records import add_record_routes
from raftka.node.http.routes_security import add_security_routes
from raftka.node.http.routes_topics import add_topic_routes
from raftka.node.metrics import CONTENT_TYPE, MetricsRegistry
from raftka.node.services import BrokerServices
from raftka.node.services.routing import ServedElsewhere
from raftka.raft.core import Role
from raftka.storage import fsync_count

log = logging.getLogger("raftka.node.http.app")


@web.middleware
async def topic_catch_up_middleware(request: web.Request, handler):
    """A topic this broker's metadata replica does not know: catch up with the metadata leader first, or send the
    request to the leader when this replica is not current (see `TopicService.catch_up`)."""
    topic = request.match_info.get("topic")
    if topic is not None:
        try:
            await request.app[SERVICES_KEY].topics.catch_up(topic)
        except ServedElsewhere as elsewhere:
            return await forward_elsewhere(request, elsewhere)
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
    """200 "ok", 200 "degraded" with the problems in words (see `BrokerHealth.problems`), or 503 "unavailable"
    when no metadata leader is known."""
    broker = request.app[SERVICES_KEY].broker
    leader = broker.live_metadata_leader()
    problems = broker.health.problems()
    status = "unavailable" if leader is None else "degraded" if problems else "ok"
    doc = {"status": status, "broker": broker.id, "metadata_leader": leader, "problems": problems,
           "partition_problems": broker.hosting.partition_problems(), "storage": broker.host.storage_status()}
    if broker.config.kafka_advertise is not None:  # read by the metadata leader to register it (node/kafka)
        doc["listeners"] = {"kafka": str(broker.config.kafka_advertise)}
    security = request.app[SERVICES_KEY].security.settings
    if security.auth_warning:
        doc["warnings"] = [security.auth_warning]
    return json_response(doc, 200 if leader is not None else 503)


async def raft_status(request: web.Request) -> web.Response:
    """Every Raft group hosted here (`?groups=a,b`: only those)."""
    broker = request.app[SERVICES_KEY].broker
    names = request.query.get("groups")
    groups = broker.health.group_statuses(set(names.split(",")) if names is not None else None)
    return json_response({"broker": broker.id, "groups": groups,
                          "partition_problems": broker.hosting.partition_problems(),
                          "transport": broker.host.transport_stats(),
                          "elections": broker.host.election_stats(),
                          "ticker_rounds": broker.host.ticker_rounds, "leader_polls": broker.leaders.polls,
                          "inline_syncs": broker.host.sync_policy.inline_count,
                          "slow_syncs": broker.host.sync_policy.slow_count,
                          "slow_inline_syncs": broker.host.sync_policy.slow_inline_count,
                          "ticker_late_max_ms": round(broker.host.ticker_lag.max_s * 1000, 1),
                          "ticker_late_recent_max_ms":
                              round(broker.host.ticker_lag.recent_max_s(time.monotonic()) * 1000, 1),
                          "election_timeout_ms": broker.host_config.election_ticks * broker.host_config.tick_ms,
                          "storage": broker.host.storage_status(),
                          "catchup_bytes_sent": broker.host.catchup_limiter.charged
                          if broker.host.catchup_limiter else None})


async def raft_leaders(request: web.Request) -> web.Response:
    broker = request.app[SERVICES_KEY].broker
    return json_response(broker.leaders.led_groups(request.query.get("since")))


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
    registry.gauge_function("raftka_raft_elections_total", "Elections since the broker started: started by its "
                            "groups' timers, deferred a few ticks by the broker's campaign budget, won here; and "
                            "leaders here that stepped down (no quorum heard for an election timeout).",
                            ("outcome",), lambda: [((k,), v) for k, v in broker.host.election_stats().items()])
    registry.gauge_function("raftka_gc_frozen_objects", "Objects frozen out of the garbage collector's scans after "
                            "partitions were opened (see node/cluster/heap.py).", (),
                            lambda: [((), gc.get_freeze_count())])
    registry.gauge_function("raftka_metadata_leader", "Metadata group leader as seen here.", (),
                            lambda: [((), broker.metadata_leader() or 0)])
    registry.gauge_function("raftka_partitions_hosted", "Partition replicas hosted by this broker.", (),
                            lambda: [((), len(broker.partitions))])
    registry.gauge_function("raftka_raft_groups_leaderless", "Hosted groups with no leader for two election "
                            "timeouts (a quorum is missing).", (),
                            lambda: [((), len(broker.health.leaderless_groups()))])
    registry.gauge_function("raftka_raft_replicas_lost", "Followers (in groups led here) whose broker came back "
                            "with an empty data directory, not yet replaced.", (),
                            lambda: [((), len(broker.health.lost_replicas()))])
    registry.gauge_function("raftka_raft_groups_not_hosted", "Groups this broker should host but will not: their "
                            "state was lost under a live incarnation.", (),
                            lambda: [((), len(broker.hosting.lost_groups))])
    registry.gauge_function("raftka_metadata_replica_member", "1 if this broker's metadata replica is a member of "
                            "the metadata group (0: a new incarnation catching up).", (),
                            lambda: [((), int(broker.metadata_member()))])
    registry.gauge_function("raftka_partitions_failed",
                            "Partition replicas this broker should host but could not open (retried with backoff).",
                            (), lambda: [((), len(broker.hosting.open_failures))])
    registry.gauge_function("raftka_raft_storage_stopped",
                            "1 if this replica stopped acting for the group: its disk cannot be written.", ("group",),
                            lambda: [((n,), int(g.node.storage_failed)) for n, g in groups()])
    registry.gauge_function("raftka_storage_free_bytes", "Free bytes in the data directory's filesystem.", (),
                            lambda: [((), broker.host.storage.usage.free_bytes)])
    registry.gauge_function("raftka_storage_min_free_bytes", "The low-disk watermark (--min-free-bytes).", (),
                            lambda: [((), broker.host.storage.min_free_bytes)])
    registry.gauge_function("raftka_fsyncs_total", "fsync calls made by this broker process (files and "
                            "directories).", (), lambda: [((), fsync_count())])
    registry.gauge_function("raftka_slow_fsyncs_total",
                            "Raft journal fsyncs that took 100 ms or more since the broker started (each also logged); "
                            "inline: run on the event loop, which kept the whole broker waiting.", ("where",),
                            lambda: [(("inline",), broker.host.sync_policy.slow_inline_count),
                                     (("thread",), broker.host.sync_policy.slow_count
                                      - broker.host.sync_policy.slow_inline_count)])
    registry.gauge_function("raftka_ticker_late_max_seconds",
                            "The most the broker's ticker woke late in the last minute: how long its event loop was "
                            "kept from running (CPU starvation, a blocking call); near the election timeout, peers "
                            "hold elections.", (), lambda: [((), broker.host.ticker_lag.recent_max_s(time.monotonic()))])
    registry.gauge_function("raftka_storage_degraded",
                            "1 if the disk is below the watermark or a write failed (see /health).", (),
                            lambda: [((), int(broker.host.storage_status()["status"] != "ok"))])


def create_app(services: BrokerServices, groups: GroupsFacade) -> web.Application:
    broker = services.broker
    app = web.Application(middlewares=[errors_middleware, auth_middleware, topic_catch_up_middleware],
                          client_max_size=broker.config.max_request_bytes)
    app[SERVICES_KEY] = services
    app[METRICS_KEY] = services.metrics
    register_raft_metrics(services.metrics, broker)
    app.router.add_get("/health", health)
    app.router.add_get("/raft", raft_status)
    app.router.add_get("/raft/leaders", raft_leaders)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    add_topic_routes(app)
    add_cluster_routes(app)
    add_record_routes(app)
    add_group_routes(app, groups)
    add_peer_view_routes(app, {"health": health, "raft": raft_status, "metrics": metrics})
    add_security_routes(app)
    add_console_routes(app)
    add_trailing_slash_routes(app)
    return app


def add_trailing_slash_routes(app: web.Application) -> None:
    """Serve every route also with a trailing slash (`…/positions/`), as the REST Proxy does: no redirect, which
    clients would not follow for a POST."""
    routes = [(r.method, r.resource.canonical, r.handler) for r in app.router.routes() if r.resource is not None]
    taken = {(method, path) for method, path, _ in routes}
    for method, path, handler in routes:
        if method != "HEAD" and not path.endswith("/") and (method, path + "/") not in taken:
            app.router.add_route(method, path + "/", handler)


__all__ = ["create_app"]
