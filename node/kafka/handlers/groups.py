"""Consumer groups over Kafka's classic protocol: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
ListGroups, DescribeGroups, DeleteGroups — adapters over the one `GroupCoordinator` the HTTP API also uses.

The coordinator of every group is the metadata leader (FindCoordinator names
it). Another broker answers NOT_COORDINATOR, and the coordinator while its
lease is not confirmed COORDINATOR_NOT_AVAILABLE; clients then look the
coordinator up again. The client leader computes the assignment (Kafka's
classic protocol): the coordinator only picks the protocol and the leader and
hands the leader's assignment bytes to each member; for protocol type
"consumer" the subscriptions and assignments are also decoded (Kafka's
ConsumerProtocol schemas) so that `raftka groups describe` shows them. A
group is driven by one kind of client at a time: a Kafka client joining a
group of raftka's own clients (or the reverse) gets INCONSISTENT_GROUP_PROTOCOL.
Static membership (group.instance.id) is not supported: such members are
treated as dynamic ones. Authorization as in Kafka: FindCoordinator and
DescribeGroups need DESCRIBE on the group, joining, syncing, heartbeats and
leaving READ, DeleteGroups DELETE (GROUP_AUTHORIZATION_FAILED otherwise);
ListGroups lists every group to a client that may DESCRIBE the cluster, else
the groups it may describe.
"""

from __future__ import annotations

import re
from typing import Any

from kafka.protocol.admin import DeleteGroupsResponse, DescribeGroupsResponse, ListGroupsResponse
from kafka.protocol.consumer import HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, SyncGroupResponse
from kafka.protocol.consumer.metadata import (ConsumerProtocolAssignment, ConsumerProtocolSubscription,
                                              ConsumerProtocolType)
from kafka.protocol.metadata import FindCoordinatorResponse

from raftka.node.errors import ApiError, GroupNotFound, InconsistentGroupProtocol
from raftka.node.groups.coordinator import (ClientProtocols, GroupCoordinator, GroupState, MemberAssignment,
                                            validate_group_name)
from raftka.node.kafka.access import allowed, denied
from raftka.node.kafka.errors import Context, ErrorCode, error_code
from raftka.node.kafka.handlers.metadata import kafka_brokers
from raftka.node.security.acl import Operation, Resource

GROUP_KEY = 0
_CLIENT_ID = re.compile(r"[a-zA-Z0-9._-]{1,100}")
_KAFKA_STATES = {GroupState.EMPTY: "Empty", GroupState.PREPARING_REBALANCE: "PreparingRebalance",
                 GroupState.COMPLETING_REBALANCE: "CompletingRebalance",
                 GroupState.AWAITING_SYNC: "CompletingRebalance", GroupState.STABLE: "Stable"}


async def coordinator_here(conn: Any) -> GroupCoordinator | ErrorCode:
    """The coordinator when this broker serves it now; else the error that sends the client looking again."""
    groups = conn.server.services.groups
    if await groups.serving_coordinator():
        return groups.coordinator()
    leader = conn.server.broker.metadata_leader()
    return ErrorCode.NOT_COORDINATOR if leader not in (None, conn.server.broker.id) else \
        ErrorCode.COORDINATOR_NOT_AVAILABLE


def group_error(exc: BaseException) -> ErrorCode:
    return error_code(exc, Context.COORDINATOR)


# --------------------------------------------------------------------- FindCoordinator

async def find_coordinator(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version
    server = conn.server

    def answer(code: int, node: int = -1, host: str = "", port: int = -1, message: str | None = None) -> Any:
        return FindCoordinatorResponse(version=version, throttle_time_ms=0, error_code=code, error_message=message,
                                       node_id=node, host=host, port=port)

    if body.key_type != GROUP_KEY:
        return answer(ErrorCode.INVALID_REQUEST, message="raftka has no transaction coordinator")
    if (refused := await denied(conn, Operation.DESCRIBE, Resource.group(body.key))) is not None:
        return answer(refused, message="Not authorized to describe this group.")
    leader = await server.services.groups.coordinator_broker()
    address = kafka_brokers(server).get(leader) if leader is not None else None
    if address is None:
        return answer(ErrorCode.COORDINATOR_NOT_AVAILABLE, message="no group coordinator (metadata leader) known yet")
    return answer(ErrorCode.NONE, leader, *address)


# -------------------------------------------------------------------------- JoinGroup

def _subscribed_topics(protocol_type: str, protocols: list[Any]) -> list[str]:
    """The topics a "consumer" member subscribes to, read from its protocols' metadata (best effort)."""
    if protocol_type != ConsumerProtocolType:
        return []
    topics: set[str] = set()
    for p in protocols:
        try:
            topics.update(t for t in ConsumerProtocolSubscription.decode(p.metadata).topics if isinstance(t, str))
        except Exception:  # noqa: BLE001 - opaque to the broker; only used to describe the group
            continue
    return sorted(topics)


async def join_group(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version

    def answer(code: int, result: Any = None) -> Any:
        if result is None:
            return JoinGroupResponse(version=version, throttle_time_ms=0, error_code=code, generation_id=-1,
                                     protocol_type=None, protocol_name="" if version < 7 else None, leader="",
                                     member_id=body.member_id or "", members=[])
        member = JoinGroupResponse.JoinGroupResponseMember
        return JoinGroupResponse(version=version, throttle_time_ms=0, error_code=ErrorCode.NONE,
                                 generation_id=result.generation, protocol_type=body.protocol_type,
                                 protocol_name=result.protocol or "", leader=result.leader or "",
                                 member_id=result.member_id,
                                 members=[member(member_id=m, group_instance_id=None, metadata=data)
                                          for m, data in result.members])

    if (refused := await denied(conn, Operation.READ, Resource.group(body.group_id))) is not None:
        return answer(refused)
    coordinator = await coordinator_here(conn)
    if isinstance(coordinator, ErrorCode):
        return answer(coordinator)
    if not body.protocols or not body.protocol_type:
        return answer(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
    rebalance_ms = body.rebalance_timeout_ms if version >= 1 and body.rebalance_timeout_ms > 0 else \
        body.session_timeout_ms
    client_id = request.client_id if request.client_id and _CLIENT_ID.fullmatch(request.client_id) else None
    try:
        validate_group_name(body.group_id)
    except ApiError:
        return answer(ErrorCode.INVALID_GROUP_ID)
    try:
        result = await coordinator.join(
            body.group_id, body.member_id or None, _subscribed_topics(body.protocol_type, body.protocols),
            body.session_timeout_ms, rebalance_ms, client_id=client_id,
            protocols=ClientProtocols(body.protocol_type, tuple((p.name, p.metadata) for p in body.protocols)),
            client_host=conn.peer[0] if conn.peer else None)
    except ApiError as exc:
        return answer(group_error(exc))
    return answer(ErrorCode.NONE, result)


# -------------------------------------------------------------------------- SyncGroup

def _assignment(data: bytes) -> MemberAssignment:
    try:
        decoded = ConsumerProtocolAssignment.decode(data)
        partitions = [(t.topic, p) for t in decoded.assigned_partitions for p in t.partitions]
    except Exception:  # noqa: BLE001 - opaque to the broker; only used to describe the group
        partitions = []
    return MemberAssignment(data, sorted(partitions))


async def sync_group(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version

    def answer(code: int, data: bytes = b"", protocol_type: str | None = None, protocol: str | None = None) -> Any:
        return SyncGroupResponse(version=version, throttle_time_ms=0, error_code=code, protocol_type=protocol_type,
                                 protocol_name=protocol, assignment=data)

    if (refused := await denied(conn, Operation.READ, Resource.group(body.group_id))) is not None:
        return answer(refused)
    coordinator = await coordinator_here(conn)
    if isinstance(coordinator, ErrorCode):
        return answer(coordinator)
    decode = body.protocol_type == ConsumerProtocolType if version >= 5 else True
    assignments = {a.member_id: _assignment(a.assignment) if decode else MemberAssignment(a.assignment, [])
                   for a in body.assignments}
    try:
        described = coordinator.describe(body.group_id)
        if version >= 5 and ((body.protocol_type not in (None, described.protocol_type)) or
                             (body.protocol_name not in (None, described.protocol))):
            raise InconsistentGroupProtocol(body.group_id, "SyncGroup names another protocol than the group's.")
        data = await coordinator.sync(body.group_id, body.member_id, body.generation_id, assignments)
    except GroupNotFound:
        return answer(ErrorCode.UNKNOWN_MEMBER_ID)
    except ApiError as exc:
        return answer(group_error(exc))
    return answer(ErrorCode.NONE, data, described.protocol_type, described.protocol)


# ------------------------------------------------------------------ Heartbeat, LeaveGroup

async def heartbeat(conn: Any, request: Any) -> Any:
    body = request.body
    coordinator = await denied(conn, Operation.READ, Resource.group(body.group_id)) or \
        await coordinator_here(conn)
    if isinstance(coordinator, ErrorCode):
        code = coordinator
    else:
        try:
            await coordinator.heartbeat(body.group_id, body.member_id, body.generation_id)
            code = ErrorCode.NONE
        except ApiError as exc:
            code = group_error(exc)
    return HeartbeatResponse(version=request.api_version, throttle_time_ms=0, error_code=code)


async def leave_group(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version
    member_ids = [body.member_id] if version < 3 else [m.member_id for m in body.members]
    coordinator = await denied(conn, Operation.READ, Resource.group(body.group_id)) or \
        await coordinator_here(conn)
    results = []
    for member_id in member_ids:
        if isinstance(coordinator, ErrorCode):
            results.append(coordinator)
            continue
        try:
            await coordinator.leave(body.group_id, member_id)
            results.append(ErrorCode.NONE)
        except ApiError as exc:
            results.append(group_error(exc))
    top = coordinator if isinstance(coordinator, ErrorCode) else (results[0] if version < 3 and results else
                                                                  ErrorCode.NONE)
    member = LeaveGroupResponse.MemberResponse
    return LeaveGroupResponse(version=version, throttle_time_ms=0, error_code=top, members=[
        member(member_id=m, group_instance_id=None, error_code=code) for m, code in zip(member_ids, results)])


# ------------------------------------------------------ ListGroups, DescribeGroups, DeleteGroups

async def list_groups(conn: Any, request: Any) -> Any:
    """Kafka admin clients ask every broker and merge: only the coordinator lists groups."""
    version = request.api_version
    wanted = {s.lower() for s in (request.body.states_filter or [])} if version >= 4 else set()
    listed = ListGroupsResponse.ListedGroup
    groups = []
    coordinator = await coordinator_here(conn)
    if not isinstance(coordinator, ErrorCode):
        known = {s.group: s for s in coordinator.list_groups()}
        names = sorted(set(known) | set(conn.server.broker.metadata.state["groups"]))
        everything = allowed(conn, Operation.DESCRIBE, Resource.cluster())
        for name in names:
            if not everything and not allowed(conn, Operation.DESCRIBE, Resource.group(name)):
                continue
            described = coordinator.describe(name) if name in known else None
            state = _KAFKA_STATES[described.state] if described else "Empty"
            if wanted and state.lower() not in wanted:
                continue
            protocol_type = (described.protocol_type if described else None) or ConsumerProtocolType
            groups.append(listed(group_id=name, protocol_type=protocol_type, group_state=state))
    return ListGroupsResponse(version=version, throttle_time_ms=0, error_code=ErrorCode.NONE, groups=groups)


async def describe_groups(conn: Any, request: Any) -> Any:
    version = request.api_version
    coordinator = await coordinator_here(conn)
    described = DescribeGroupsResponse.DescribedGroup
    member = described.DescribedGroupMember
    out = []
    for name in request.body.groups:
        refused = await denied(conn, Operation.DESCRIBE, Resource.group(name))
        if isinstance(coordinator, ErrorCode) or refused is not None:
            out.append(described(error_code=refused or coordinator, group_id=name, group_state="",
                                 protocol_type="", protocol_data="", members=[]))
            continue
        try:
            d = coordinator.describe(name)
        except GroupNotFound:
            state = "Empty" if conn.server.broker.metadata.group(name) is not None else "Dead"
            out.append(described(error_code=ErrorCode.NONE, group_id=name, group_state=state, protocol_type="",
                                 protocol_data="", members=[]))
            continue
        out.append(described(
            error_code=ErrorCode.NONE, group_id=name, group_state=_KAFKA_STATES[d.state],
            protocol_type=d.protocol_type or "", protocol_data=d.protocol or "",
            members=[member(member_id=m.member_id, group_instance_id=None, client_id=m.client_id or "",
                            client_host=m.client_host or "", member_metadata=m.metadata,
                            member_assignment=m.assignment_data) for m in d.members]))
    return DescribeGroupsResponse(version=version, throttle_time_ms=0, groups=out)


async def delete_groups(conn: Any, request: Any) -> Any:
    results = []
    coordinator = await coordinator_here(conn)
    for name in request.body.groups_names:
        refused = await denied(conn, Operation.DELETE, Resource.group(name))
        if isinstance(coordinator, ErrorCode) or refused is not None:
            results.append((name, refused or coordinator))
            continue
        try:
            await conn.server.services.groups.delete(name)
            results.append((name, ErrorCode.NONE))
        except ApiError as exc:
            results.append((name, group_error(exc)))
    result = DeleteGroupsResponse.DeletableGroupResult
    return DeleteGroupsResponse(version=request.api_version, throttle_time_ms=0,
                                results=[result(group_id=n, error_code=c) for n, c in results])


__all__ = ["coordinator_here", "delete_groups", "describe_groups", "find_coordinator", "group_error", "heartbeat",
           "join_group", "leave_group", "list_groups", "sync_group"]
