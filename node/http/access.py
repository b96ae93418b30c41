"""What each HTTP route requires: the operation and resource of every route, in one table (Kafka's rules).

Every route of the app has an entry (a test checks it); a route without one is refused to everyone but
superusers, so a new route cannot be open by accident. The operations follow what Kafka requires for the
equivalent Kafka API:

================================================  ========================================================
route                                             requires
================================================  ========================================================
GET /health, /openapi.json, /ui...                nothing (open)
GET /metrics, /raft, /raft/leaders,               DESCRIBE on the cluster; open with --metrics-auth none
/brokers/{id}/raft|metrics                        (/brokers/{id}/health is open)
GET /brokers, /metadata, /topics, /groups,        an authenticated user; the listings show only the topics
/whoami                                           and groups the user may DESCRIBE
POST /topics                                      CREATE on the cluster, or CREATE on the topic
GET /topics/{t}[/partitions[/{p}[/offsets]]]      DESCRIBE on the topic
DELETE /topics/{t}                                DELETE on the topic
POST /topics/{t}/partitions                       ALTER on the topic
POST /topics/{t}/partitions/{p}/delete-records    DELETE on the topic (Kafka's DeleteRecords)
GET / PUT /topics/{t}/configs                     DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic
POST /topics/{t}[/partitions/{p}[/batch]]         WRITE on the topic
GET /topics/{t}/partitions/{p}/records            READ on the topic
POST /producers                                   IDEMPOTENT_WRITE on the cluster, or WRITE on some topic
POST /brokers/{id}/replace                        ALTER on the cluster
GET /cluster, GET /reassignments,                 DESCRIBE on the cluster
GET /brokers/{id}/decommission
POST /brokers (a broker joins)                    CLUSTER_ACTION on the cluster: a broker that joins
                                                  signs its requests with the cluster secret and is
                                                  Broker:<id>, allowed everything (no user needed)
POST/DELETE /topics/{t}/partitions/{p}/           ALTER on the cluster (Kafka's
reassignment, PATCH /topics/{t} (replication      AlterPartitionReassignments: moving replicas between
factor), POST /brokers/{id}/decommission,         brokers is a cluster change)
POST /brokers/{id}/recommission, POST
/cluster/rebalance, POST /cluster/leaders/balance
GET /groups/{g}, GET /groups/{g}/offsets          DESCRIBE on the group
join, heartbeat, leave of /groups/{g}             READ on the group (join: and READ on each topic)
POST /groups/{g}/offsets                          READ on the group and on each topic committed
POST /consumers/{g}, every instance route         READ on the group; subscribing, assigning, committing
                                                  and fetching also READ on the topics concerned; an
                                                  instance serves only the user who created it
GET /users, GET /acls                             DESCRIBE on the cluster
POST /users, DELETE /users/{u}, POST/DELETE /acls ALTER on the cluster
================================================  ========================================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from raftka.node.errors import ClusterAuthorizationFailed
from raftka.node.security.acl import Operation, Resource
from raftka.node.services.security import SecurityService

__all__ = ["AUTHENTICATED", "OPEN", "RULES", "rule_for"]

Rule = Callable[[web.Request, str, str, SecurityService], Awaitable[None]]
READ, WRITE, DESCRIBE = Operation.READ, Operation.WRITE, Operation.DESCRIBE
CLUSTER = Resource.cluster()


async def _open(request, principal, host, security) -> None:
    return None


OPEN: Rule = _open


async def AUTHENTICATED(request, principal, host, security) -> None:  # noqa: N802 - a rule constant
    return None


def _need(operation: Operation, resource_of: Callable[[web.Request], Resource]) -> Rule:
    async def rule(request, principal, host, security) -> None:
        await security.check(principal, host, operation, resource_of(request))
    return rule


def _topic(request: web.Request) -> Resource:
    return Resource.topic(request.match_info["topic"])


def _group(request: web.Request) -> Resource:
    return Resource.group(request.match_info["group"])


def _cluster(request: web.Request) -> Resource:
    return CLUSTER


async def _body(request: web.Request) -> dict:
    """The JSON body if it is an object, else {} (the route then answers 422 for it)."""
    try:
        doc = orjson.loads(await request.read() or b"null")
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _topics_in(doc: dict, field: str) -> set[str]:
    """Topic names in a body: a list of names (``topics``) or of objects with a ``topic`` (offsets, partitions)."""
    items = doc.get(field)
    if not isinstance(items, list):
        return set()
    names = {item if isinstance(item, str) else item.get("topic") if isinstance(item, dict) else None
             for item in items}
    return {n for n in names if isinstance(n, str)}


def _group_and_topics(field: str | None) -> Rule:
    """READ on the group, and READ on every topic the body names in `field`."""
    async def rule(request, principal, host, security) -> None:
        await security.check(principal, host, READ, _group(request))
        if field is not None:
            for topic in sorted(_topics_in(await _body(request), field)):
                await security.check(principal, host, READ, Resource.topic(topic))
    return rule


async def _create_topic(request, principal, host, security) -> None:
    name = (await _body(request)).get("name")
    if security.allowed(principal, host, Operation.CREATE, CLUSTER) or not isinstance(name, str):
        await security.check(principal, host, Operation.CREATE, CLUSTER)
    else:
        await security.check(principal, host, Operation.CREATE, Resource.topic(name))


async def _producer_id(request, principal, host, security) -> None:
    if not security.allowed(principal, host, Operation.IDEMPOTENT_WRITE, CLUSTER):
        await security.check_any_topic(principal, host, WRITE)


def _metrics() -> Rule:
    return _need(DESCRIBE, _cluster)


async def _unlisted(request, principal, host, security) -> None:
    if not security.is_superuser(principal):
        raise ClusterAuthorizationFailed(f"use route {request.method} {request.match_info.route.resource.canonical}"
                                         " of")


_INSTANCE = "/consumers/{group}/instances/{instance}"
_METRICS_ROUTES = {("GET", "/metrics"), ("GET", "/raft"), ("GET", "/raft/leaders"),
                   ("GET", "/brokers/{broker}/{view}")}

RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/ui"): OPEN,
    ("GET", "/ui/"): OPEN,
    ("GET", "/ui/{file}"): OPEN,
    ("GET", "/metrics"): _metrics(),
    ("GET", "/raft"): _metrics(),
    ("GET", "/raft/leaders"): _metrics(),
    ("GET", "/brokers/{broker}/{view}"): _metrics(),  # /brokers/{id}/health: open (rule_for)
    ("GET", "/brokers"): AUTHENTICATED,
    ("GET", "/metadata"): AUTHENTICATED,
    ("GET", "/whoami"): AUTHENTICATED,
    ("POST", "/brokers/{broker}/replace"): _need(Operation.ALTER, _cluster),
    ("GET", "/cluster"): _need(DESCRIBE, _cluster),
    ("POST", "/brokers"): _need(Operation.CLUSTER_ACTION, _cluster),
    ("GET", "/reassignments"): _need(DESCRIBE, _cluster),
    ("POST", "/topics/{topic}/partitions/{partition}/reassignment"): _need(Operation.ALTER, _cluster),
    ("DELETE", "/topics/{topic}/partitions/{partition}/reassignment"): _need(Operation.ALTER, _cluster),
    ("PATCH", "/topics/{topic}"): _need(Operation.ALTER, _cluster),
    ("POST", "/brokers/{broker}/decommission"): _need(Operation.ALTER, _cluster),
    ("GET", "/brokers/{broker}/decommission"): _need(DESCRIBE, _cluster),
    ("POST", "/brokers/{broker}/recommission"): _need(Operation.ALTER, _cluster),
    ("POST", "/cluster/rebalance"): _need(Operation.ALTER, _cluster),
    ("POST", "/cluster/leaders/balance"): _need(Operation.ALTER, _cluster),
    ("GET", "/topics"): AUTHENTICATED,
    ("POST", "/topics"): _create_topic,
    ("GET", "/topics/{topic}"): _need(DESCRIBE, _topic),
    ("DELETE", "/topics/{topic}"): _need(Operation.DELETE, _topic),
    ("GET", "/topics/{topic}/partitions"): _need(DESCRIBE, _topic),
    ("POST", "/topics/{topic}/partitions"): _need(Operation.ALTER, _topic),
    ("GET", "/topics/{topic}/partitions/{partition}"): _need(DESCRIBE, _topic),
    ("GET", "/topics/{topic}/configs"): _need(Operation.DESCRIBE_CONFIGS, _topic),
    ("PUT", "/topics/{topic}/configs"): _need(Operation.ALTER_CONFIGS, _topic),
    ("POST", "/producers"): _producer_id,
    ("POST", "/topics/{topic}"): _need(WRITE, _topic),
    ("POST", "/topics/{topic}/partitions/{partition}"): _need(WRITE, _topic),
    ("POST", "/topics/{topic}/partitions/{partition}/batch"): _need(WRITE, _topic),
    ("GET", "/topics/{topic}/partitions/{partition}/records"): _need(READ, _topic),
    ("GET", "/topics/{topic}/partitions/{partition}/offsets"): _need(DESCRIBE, _topic),
    ("POST", "/topics/{topic}/partitions/{partition}/delete-records"): _need(Operation.DELETE, _topic),
    ("GET", "/groups"): AUTHENTICATED,
    ("GET", "/groups/{group}"): _need(DESCRIBE, _group),
    ("POST", "/groups/{group}/members"): _group_and_topics("topics"),
    ("DELETE", "/groups/{group}/members/{member}"): _group_and_topics(None),
    ("POST", "/groups/{group}/heartbeat"): _group_and_topics(None),
    ("POST", "/groups/{group}/offsets"): _group_and_topics("offsets"),
    ("GET", "/groups/{group}/offsets"): _need(DESCRIBE, _group),
    ("POST", "/consumers/{group}"): _group_and_topics(None),
    ("GET", _INSTANCE): _group_and_topics(None),
    ("DELETE", _INSTANCE): _group_and_topics(None),
    ("POST", f"{_INSTANCE}/subscription"): _group_and_topics("topics"),
    ("GET", f"{_INSTANCE}/subscription"): _group_and_topics(None),
    ("DELETE", f"{_INSTANCE}/subscription"): _group_and_topics(None),
    ("POST", f"{_INSTANCE}/assignments"): _group_and_topics("partitions"),
    ("GET", f"{_INSTANCE}/assignments"): _group_and_topics(None),
    ("GET", f"{_INSTANCE}/records"): _group_and_topics(None),  # and READ on the assigned topics: the route
    ("POST", f"{_INSTANCE}/offsets"): _group_and_topics("offsets"),
    ("GET", f"{_INSTANCE}/offsets"): _group_and_topics(None),
    ("POST", f"{_INSTANCE}/positions"): _group_and_topics(None),
    ("POST", f"{_INSTANCE}/positions/beginning"): _group_and_topics(None),
    ("POST", f"{_INSTANCE}/positions/end"): _group_and_topics(None),
    ("GET", "/users"): _need(DESCRIBE, _cluster),
    ("POST", "/users"): _need(Operation.ALTER, _cluster),
    ("DELETE", "/users/{user}"): _need(Operation.ALTER, _cluster),
    ("GET", "/acls"): _need(DESCRIBE, _cluster),
    ("POST", "/acls"): _need(Operation.ALTER, _cluster),
    ("DELETE", "/acls"): _need(Operation.ALTER, _cluster),
}


def rule_for(request: web.Request, metrics_auth: str) -> Rule:
    """The rule of the request's route (HEAD as GET, ``/path/`` as ``/path``); an unknown path is not open (it
    answers 404 after authentication), a known route missing from the table needs a superuser."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        return AUTHENTICATED
    method = "GET" if request.method == "HEAD" else request.method
    key = (method, match_info.route.resource.canonical)
    if key not in RULES and key[1].endswith("/"):  # every route also answers with a trailing slash
        key = (method, key[1].rstrip("/"))
    if (metrics_auth == "none" and key in _METRICS_ROUTES) or \
            (key == ("GET", "/brokers/{broker}/{view}") and match_info.get("view") == "health"):
        return OPEN
    return RULES.get(key, _unlisted)
