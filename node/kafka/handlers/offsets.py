"""OffsetCommit and OffsetFetch: committed offsets of consumer groups, shared with the HTTP API.

Commits go through `GroupService.commit` on the coordinator (the metadata
leader): the metadata group stores them, so offsets committed by Kafka clients
show in `raftka groups describe` and the reverse. A commit from a group member
(member id and generation) is fenced by the generation; one without them (a
consumer using assign(), or an admin tool) is accepted while the group has no
live members. Either way a partition's committed offset only moves forward,
as with raftka's own commits: a late or repeated commit never moves a group
back (raftka's guarantee; Kafka itself keeps the last write). To move a group
back, delete it (DeleteGroups, e.g. `kafka-consumer-groups --delete`) and
commit again, or commit over HTTP with `"reset": true`. The commit metadata
string is not stored (OffsetFetch answers ""); leader epochs are -1.
Authorization as in Kafka: a commit needs READ on the group
(GROUP_AUTHORIZATION_FAILED for every partition otherwise) and READ on each
topic (TOPIC_AUTHORIZATION_FAILED); a fetch DESCRIBE on the group, and leaves
out (when all are asked for) or refuses the topics the client may not describe.
"""

from __future__ import annotations

from typing import Any

from kafka.protocol.consumer import OffsetCommitResponse, OffsetFetchResponse

from raftka.node.errors import ApiError
from raftka.node.groups.assignor import TopicPartition
from raftka.node.kafka.access import denied
from raftka.node.kafka.errors import ErrorCode
from raftka.node.kafka.handlers.groups import coordinator_here, group_error
from raftka.node.security.acl import Operation, Resource

_CommitTopic = OffsetCommitResponse.OffsetCommitResponseTopic
_CommitPartition = _CommitTopic.OffsetCommitResponsePartition
_FetchTopic = OffsetFetchResponse.OffsetFetchResponseTopic
_FetchPartition = _FetchTopic.OffsetFetchResponsePartition


async def offset_commit(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version
    groups = conn.server.services.groups
    wanted = [(t.name, p.partition_index, p.committed_offset) for t in body.topics for p in t.partitions]
    codes: dict[TopicPartition, int] = {}
    coordinator = await coordinator_here(conn)
    refused = await denied(conn, Operation.READ, Resource.group(body.group_id))
    if isinstance(coordinator, ErrorCode) or refused is not None:
        codes = {(t, p): refused or coordinator for t, p, _ in wanted}
    else:
        valid: dict[TopicPartition, int] = {}
        topic_refusals = {t: await denied(conn, Operation.READ, Resource.topic(t)) for t in {t for t, _, _ in wanted}}
        for topic, partition, offset in wanted:
            if topic_refusals[topic] is not None:
                codes[(topic, partition)] = topic_refusals[topic]
                continue
            try:
                groups.check_partitions([(topic, partition)])
            except ApiError as exc:
                codes[(topic, partition)] = group_error(exc)
                continue
            if offset < 0:
                codes[(topic, partition)] = ErrorCode.INVALID_REQUEST
                continue
            valid[(topic, partition)] = offset
        generation = body.generation_id_or_member_epoch
        member = body.member_id or None
        manual = member is None and generation < 0  # no membership: assign() consumers, admin tools
        try:
            if valid:
                await groups.commit(body.group_id, valid, None if manual else member, None if manual else generation)
            code = ErrorCode.NONE
        except ApiError as exc:
            code = group_error(exc)
        codes.update({tp: code for tp in valid})
    topics: dict[str, list[Any]] = {}
    for topic, partition, _ in wanted:
        topics.setdefault(topic, []).append(_CommitPartition(partition_index=partition,
                                                             error_code=codes[(topic, partition)]))
    return OffsetCommitResponse(version=version, throttle_time_ms=0,
                                topics=[_CommitTopic(name=t, partitions=parts) for t, parts in topics.items()])


async def offset_fetch(conn: Any, request: Any) -> Any:
    body, version = request.body, request.api_version
    groups = conn.server.services.groups
    coordinator = await coordinator_here(conn)
    if not isinstance(coordinator, ErrorCode):
        coordinator = await denied(conn, Operation.DESCRIBE, Resource.group(body.group_id)) or coordinator
    if isinstance(coordinator, ErrorCode):
        if version < 2:  # no top-level error code: every partition carries it
            return OffsetFetchResponse(version=version, topics=[_FetchTopic(name=t.name, partitions=[
                _FetchPartition(partition_index=p, committed_offset=-1, committed_leader_epoch=-1, metadata="",
                                error_code=coordinator) for p in t.partition_indexes]) for t in body.topics or []])
        return OffsetFetchResponse(version=version, throttle_time_ms=0, topics=[], error_code=coordinator)
    committed = await groups.committed_offsets(body.group_id)
    if body.topics is None:
        wanted: dict[str, list[int]] = {}
        for topic, partition in sorted(committed):
            wanted.setdefault(topic, []).append(partition)
        refused = {t: None for t in wanted}
        wanted = {t: parts for t, parts in wanted.items()
                  if await denied(conn, Operation.DESCRIBE, Resource.topic(t)) is None}
    else:
        wanted = {t.name: list(t.partition_indexes) for t in body.topics}
        refused = {t: await denied(conn, Operation.DESCRIBE, Resource.topic(t)) for t in wanted}
    return OffsetFetchResponse(version=version, throttle_time_ms=0, error_code=ErrorCode.NONE, topics=[
        _FetchTopic(name=topic, partitions=[
            _FetchPartition(partition_index=p, committed_offset=-1 if refused[topic] else committed.get((topic, p), -1),
                            committed_leader_epoch=-1, metadata="", error_code=refused[topic] or ErrorCode.NONE)
            for p in partitions])
        for topic, partitions in wanted.items()])


__all__ = ["offset_commit", "offset_fetch"]
