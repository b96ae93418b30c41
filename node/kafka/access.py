"""Who a Kafka request is from, and the authorization checks the handlers make (the broker's one decision).

A connection authenticates once (SASL, or a client certificate; `connection`), and each of its requests
runs with that `Caller` in the `CALLER` context variable — set per request task, so a request relayed by
another broker on behalf of its client (`forwarding`, signed with the cluster secret) runs as that client.
Handlers ask `denied(conn, operation, resource)` for the Kafka error code of a refusal (None: allowed) or
`authorize(...)`, which raises the broker's Topic/Group/ClusterAuthorizationFailed (mapped to
TOPIC/GROUP/CLUSTER_AUTHORIZATION_FAILED by `errors.error_code`); listings keep what `allowed(...)`. The
operations each API needs are Kafka's (see the handlers). Authorization comes before existence: a topic
the client may not describe answers TOPIC_AUTHORIZATION_FAILED whether or not it exists.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from raftka.node.errors import ApiError
from raftka.node.kafka.errors import ErrorCode, error_code
from raftka.node.security.acl import Operation, Resource, ResourceType
from raftka.node.services.security import ANONYMOUS

__all__ = ["CALLER", "LISTENER", "Caller", "allowed", "authorize", "denied", "denied_unless_any_topic", "visible"]

LISTENER = "kafka"


@dataclass(frozen=True, slots=True)
class Caller:
    principal: str
    host: str


CALLER: ContextVar[Caller] = ContextVar("kafka_caller", default=Caller(ANONYMOUS, "*"))


def _security(conn: Any):
    return conn.server.services.security


def allowed(conn: Any, operation: Operation, resource: Resource) -> bool:
    caller = CALLER.get()
    return _security(conn).allowed(caller.principal, caller.host, operation, resource)


async def authorize(conn: Any, operation: Operation, resource: Resource) -> None:
    caller = CALLER.get()
    await _security(conn).check(caller.principal, caller.host, operation, resource, LISTENER)


async def denied(conn: Any, operation: Operation, resource: Resource) -> ErrorCode | None:
    """TOPIC/GROUP/CLUSTER_AUTHORIZATION_FAILED when the caller may not, else None."""
    try:
        await authorize(conn, operation, resource)
    except ApiError as exc:
        return error_code(exc)
    return None


async def denied_unless_any_topic(conn: Any, operation: Operation) -> ErrorCode | None:
    """CLUSTER_AUTHORIZATION_FAILED unless the caller may `operation` some topic (InitProducerId's rule)."""
    caller = CALLER.get()
    try:
        await _security(conn).check_any_topic(caller.principal, caller.host, operation, LISTENER)
    except ApiError as exc:
        return error_code(exc)
    return None


def visible(conn: Any, resource_type: ResourceType, names, operation: Operation = Operation.DESCRIBE) -> list[str]:
    caller = CALLER.get()
    return _security(conn).visible(caller.principal, caller.host, resource_type, names, operation)
