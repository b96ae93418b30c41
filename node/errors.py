"""Broker errors, shared by every front end: a class per condition, each with a five-digit code and message.

The codes follow the Confluent REST Proxy scheme. Every error the broker
answers with is an ``ApiError`` subclass, raised by the services and the core
alike; a front end maps the class to its protocol. The HTTP front end turns it
into ``{"error_code": <code>, "message": <text>, ...}`` with the
matching HTTP status (``error_code // 100 == http_status`` always holds).
Codes follow Confluent REST Proxy v2 (kafka-rest ``Errors.java``, rest-utils
``KafkaExceptionMapper``) where Confluent has a code for the same condition;
raftka's own codes never reuse a Confluent code that means something else.

==========================  ====  =====  =========================================
class                       HTTP  code   meaning (C = Confluent's code, R = raftka)
==========================  ====  =====  =========================================
AuthenticationRequired       401  40101  C  no credentials, or wrong ones (the body
                                            says nothing more)
TopicAuthorizationFailed     403  40301  C  not allowed on this topic (Confluent's
                                            40301: authorization error)
GroupAuthorizationFailed     403  40302  R  not allowed on this consumer group
ClusterAuthorizationFailed   403  40303  R  not allowed on the cluster (topics
                                            admin, users, ACLs, metrics)
JoinRefused                  403  40321  R  a broker's join request does not prove
                                            the cluster secret
TopicNotFound                404  40401  C  topic does not exist
PartitionNotFound            404  40402  C  partition does not exist in the topic
ConsumerInstanceNotFound     404  40403  C  REST consumer instance does not exist
GroupNotFound                404  40405  R  consumer group does not exist
                                            (40404 is Confluent's "leader not
                                            available"; raftka answers 50301)
BrokerNotFound               404  40406  R  no broker with that id in the cluster
UserNotFound                 404  40407  R  no such user (or no credential for
                                            that mechanism)
ReassignmentNotFound         404  40411  R  the partition is not being reassigned
NotAcceptable                406  40601  C  Accept header asks for a format that
                                            cannot be served
ConsumerAlreadySubscribed    409  40901  C  subscribe/assign conflicts with the
                                            instance's current subscription
ConsumerAlreadyExists        409  40902  C  consumer instance name already taken
TopicAlreadyExists           409  40904  R  (Confluent: generic 400/40002)
StaleGeneration              409  40905  R  commit/heartbeat from an old generation
RebalanceInProgress          409  40906  R  group is rebalancing; rejoin
NoCommittedOffset            409  40909  R  no committed offset to start from and
                                            ``auto.offset.reset`` is ``none``
InconsistentGroupProtocol    409  40910  R  the group is driven by the other protocol
                                            (Kafka clients vs raftka's group API)
GroupNotEmpty                409  40911  R  deleting a group that has live members
ReassignmentInProgress       409  40921  R  the partition is being moved already
UnsafeClusterChange          409  40922  R  the change would leave a partition short
                                            of replicas or the metadata group
                                            without a quorum
BrokerAlreadyRegistered      409  40923  R  a live broker already runs under that id
RequestTooLarge              413  41301  R  body over the limit, too many records
RecordTooLarge               413  41302  R  one record over ``max.message.bytes``
UnsupportedMediaType         415  41501  R  Content-Type not supported (Confluent
                                            answers plain 415)
OffsetOutOfRange             416  41601  R  offset outside [earliest, latest];
                                            body adds ``earliest`` and ``latest``
InvalidConsumerConfig        422  42204  C  bad REST consumer instance config
InvalidRequest               422  42206  R  malformed JSON, wrong field or type
InvalidEncoding              422  42207  R  key/value/header not valid base64
InvalidTopicName             422  42208  R  name outside ``[a-zA-Z0-9._-]{1,249}``
InvalidPartitions            422  42209  R  bad partition count
InvalidReplicationFactor     422  42210  R  bad or too large replication factor
InvalidTopicConfig           422  42211  R  unknown topic config or bad value
InvalidReplicaAssignment     422  42221  R  a replica list names an unknown, dead,
                                            draining or repeated broker
TooManyLoginFailures         429  42901  R  this address failed to log in too often
                                            lately; retry after a minute
InternalError                500  50002  C  unexpected failure ("Kafka error")
RequestTimedOut              500  50003  C  retriable: not committed in time,
                                            outcome unknown (Confluent's
                                            "retriable Kafka error")
NotLeader                    503  50301  C  retriable: this broker does not lead
                                            the partition/group; body adds
                                            ``leader_id``, ``leader_url`` (null
                                            when unknown). Confluent's 50301 is
                                            also a retry-later 503.
BrokerNotAvailable           503  50302  C  retriable: forwarding target is down
StorageUnavailable           507  50701  R  retriable: the broker cannot write
                                            (disk full, I/O error, read-only fs,
                                            below --min-free-bytes); nothing was
                                            appended. Body adds ``leader_id``,
                                            ``leader_url`` of the group's new
                                            leader when known (Kafka:
                                            KAFKA_STORAGE_ERROR)
==========================  ====  =====  =========================================

Confluent's 42201-42203 and 42205 concern schemas, which raftka does not have.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "ApiError",
    "AuthenticationRequired",
    "ClusterAuthorizationFailed",
    "GroupAuthorizationFailed",
    "TooManyLoginFailures",
    "TopicAuthorizationFailed",
    "UserNotFound",
    "BrokerNotAvailable",
    "BrokerAlreadyRegistered",
    "BrokerNotFound",
    "ConsumerAlreadyExists",
    "ConsumerAlreadySubscribed",
    "ConsumerInstanceNotFound",
    "GroupNotEmpty",
    "GroupNotFound",
    "InconsistentGroupProtocol",
    "InternalError",
    "InvalidConsumerConfig",
    "InvalidEncoding",
    "InvalidPartitions",
    "InvalidReplicationFactor",
    "InvalidReplicaAssignment",
    "InvalidRequest",
    "JoinRefused",
    "InvalidTopicConfig",
    "InvalidTopicName",
    "NotAcceptable",
    "NoCommittedOffset",
    "NotLeader",
    "OffsetOutOfRange",
    "PartitionNotFound",
    "ReassignmentInProgress",
    "ReassignmentNotFound",
    "RebalanceInProgress",
    "RecordTooLarge",
    "RequestTimedOut",
    "RequestTooLarge",
    "StaleGeneration",
    "StorageUnavailable",
    "TopicAlreadyExists",
    "TopicNotFound",
    "UnsafeClusterChange",
    "UnsupportedMediaType",
    "error_body",
]


def error_body(error_code: int, message: str, **extra: Any) -> bytes:
    """Render the REST Proxy error document ``{"error_code", "message", **extra}`` as JSON bytes."""
    return orjson.dumps({"error_code": error_code, "message": message, **extra})


class ApiError(Exception):
    """Base of all client-visible errors; subclasses fix ``http_status`` and ``error_code``."""

    http_status: int = 500
    error_code: int = 50002
    retriable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def extra(self) -> dict[str, Any]:
        """Fields added to the error document besides ``error_code`` and ``message``."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message, **self.extra()}

    def to_json(self) -> bytes:
        return error_body(self.error_code, self.message, **self.extra())


# 401 / 403 -------------------------------------------------------------------


class AuthenticationRequired(ApiError):
    """Missing or wrong credentials; deliberately says nothing about which (or about the resource asked for)."""

    http_status, error_code = 401, 40101

    def __init__(self) -> None:
        super().__init__("Authentication required.")


class TopicAuthorizationFailed(ApiError):
    http_status, error_code = 403, 40301

    def __init__(self, topic: str, operation: str) -> None:
        super().__init__(f"Not authorized to {operation} topic '{topic}'.")
        self.topic = topic


class GroupAuthorizationFailed(ApiError):
    http_status, error_code = 403, 40302

    def __init__(self, group: str, operation: str) -> None:
        super().__init__(f"Not authorized to {operation} consumer group '{group}'.")
        self.group = group


class ClusterAuthorizationFailed(ApiError):
    http_status, error_code = 403, 40303

    def __init__(self, operation: str) -> None:
        super().__init__(f"Not authorized to {operation} the cluster.")


class JoinRefused(ApiError):
    http_status, error_code = 403, 40321


# 404 -----------------------------------------------------------------------


class TopicNotFound(ApiError):
    http_status, error_code = 404, 40401

    def __init__(self, topic: str) -> None:
        super().__init__(f"Topic '{topic}' not found.")
        self.topic = topic


class PartitionNotFound(ApiError):
    http_status, error_code = 404, 40402

    def __init__(self, topic: str, partition: int) -> None:
        super().__init__(f"Partition {partition} of topic '{topic}' not found.")
        self.topic, self.partition = topic, partition


class ConsumerInstanceNotFound(ApiError):
    http_status, error_code = 404, 40403

    def __init__(self, group: str, instance: str) -> None:
        super().__init__(f"Consumer instance '{instance}' not found in group '{group}'.")
        self.group, self.instance = group, instance


class GroupNotFound(ApiError):
    http_status, error_code = 404, 40405

    def __init__(self, group: str) -> None:
        super().__init__(f"Consumer group '{group}' not found.")
        self.group = group


class BrokerNotFound(ApiError):
    http_status, error_code = 404, 40406

    def __init__(self, broker: object) -> None:
        super().__init__(f"Broker {broker} is not a member of this cluster.")


class ReassignmentNotFound(ApiError):
    http_status, error_code = 404, 40411

    def __init__(self, topic: str, partition: int) -> None:
        super().__init__(f"Partition {topic}/{partition} is not being reassigned.")


class UserNotFound(ApiError):
    http_status, error_code = 404, 40407

    def __init__(self, message: str) -> None:
        super().__init__(message)


# 406 / 409 -------------------------------------------------------------------


class NotAcceptable(ApiError):
    http_status, error_code = 406, 40601


class ConsumerAlreadySubscribed(ApiError):
    http_status, error_code = 409, 40901


class ConsumerAlreadyExists(ApiError):
    http_status, error_code = 409, 40902

    def __init__(self, group: str, instance: str) -> None:
        super().__init__(f"Consumer instance '{instance}' already exists in group '{group}'.")
        self.group, self.instance = group, instance


class TopicAlreadyExists(ApiError):
    http_status, error_code = 409, 40904

    def __init__(self, topic: str) -> None:
        super().__init__(f"Topic '{topic}' already exists.")
        self.topic = topic


class StaleGeneration(ApiError):
    http_status, error_code = 409, 40905

    def __init__(self, group: str, generation: int, current_generation: int) -> None:
        super().__init__(
            f"Generation {generation} of group '{group}' is stale; the current generation is "
            f"{current_generation}. Rejoin the group."
        )
        self.group, self.generation, self.current_generation = group, generation, current_generation

    def extra(self) -> dict[str, Any]:
        return {"generation": self.current_generation}


class RebalanceInProgress(ApiError):
    http_status, error_code = 409, 40906

    def __init__(self, group: str) -> None:
        super().__init__(f"Group '{group}' is rebalancing; rejoin the group.")
        self.group = group


class NoCommittedOffset(ApiError):
    http_status, error_code = 409, 40909

    def __init__(self, group: str, topic: str, partition: int):
        super().__init__(f"Group '{group}' has no committed offset for {topic}/{partition} and auto.offset.reset "
                         "is 'none': commit or seek a position first.")

class ReassignmentInProgress(ApiError):
    http_status, error_code = 409, 40921


class UnsafeClusterChange(ApiError):
    http_status, error_code = 409, 40922


class BrokerAlreadyRegistered(ApiError):
    http_status, error_code = 409, 40923


class InconsistentGroupProtocol(ApiError):
    """A member of one kind (Kafka's classic protocol, or raftka's own group API) joins a group whose live members
    are of the other kind, or names a protocol the group's members do not share."""

    http_status, error_code = 409, 40910

    def __init__(self, group: str, detail: str) -> None:
        super().__init__(f"Group '{group}': {detail}")
        self.group = group


class GroupNotEmpty(ApiError):
    http_status, error_code = 409, 40911

    def __init__(self, group: str, members: int) -> None:
        super().__init__(f"Group '{group}' has {members} live member(s); it can be deleted once they have left.")
        self.group = group


# 413 / 415 / 416 -------------------------------------------------------------


class RequestTooLarge(ApiError):
    http_status, error_code = 413, 41301


class RecordTooLarge(ApiError):
    http_status, error_code = 413, 41302


class UnsupportedMediaType(ApiError):
    http_status, error_code = 415, 41501


class OffsetOutOfRange(ApiError):
    """Fetch below the log start offset or beyond the end; says where the valid range is."""

    http_status, error_code = 416, 41601

    def __init__(self, topic: str, partition: int, offset: int, earliest: int, latest: int) -> None:
        super().__init__(
            f"Offset {offset} is out of range for partition {partition} of topic '{topic}': "
            f"valid offsets are {earliest} (earliest) to {latest} (latest)."
        )
        self.topic, self.partition, self.offset = topic, partition, offset
        self.earliest, self.latest = earliest, latest

    def extra(self) -> dict[str, Any]:
        return {"earliest": self.earliest, "latest": self.latest}


# 422 -------------------------------------------------------------------------


class InvalidConsumerConfig(ApiError):
    http_status, error_code = 422, 42204


class InvalidRequest(ApiError):
    http_status, error_code = 422, 42206


class InvalidEncoding(ApiError):
    http_status, error_code = 422, 42207


class InvalidTopicName(ApiError):
    http_status, error_code = 422, 42208


class InvalidPartitions(ApiError):
    http_status, error_code = 422, 42209


class InvalidReplicationFactor(ApiError):
    http_status, error_code = 422, 42210


class InvalidTopicConfig(ApiError):
    http_status, error_code = 422, 42211


class InvalidReplicaAssignment(ApiError):
    http_status, error_code = 422, 42221


# 429 -------------------------------------------------------------------------


class TooManyLoginFailures(ApiError):
    http_status, error_code = 429, 42901

    def __init__(self) -> None:
        super().__init__("Too many failed logins from this address; retry in a minute.")


# 5xx -------------------------------------------------------------------------


class InternalError(ApiError):
    http_status, error_code = 500, 50002


class RequestTimedOut(ApiError):
    http_status, error_code, retriable = 500, 50003, True


class NotLeader(ApiError):
    """This broker cannot serve the request; ``leader_id``/``leader_url`` say who can (None: unknown yet)."""

    http_status, error_code, retriable = 503, 50301, True

    def __init__(self, what: str, leader_id: int | None = None, leader_url: str | None = None) -> None:
        if leader_id is None:
            hint = "no leader is known yet (election in progress); retry shortly"
        else:
            hint = f"the leader is broker {leader_id}" + (f" at {leader_url}" if leader_url else "")
        super().__init__(f"Not the leader for {what}: {hint}.")
        self.what, self.leader_id, self.leader_url = what, leader_id, leader_url

    def extra(self) -> dict[str, Any]:
        return {"leader_id": self.leader_id, "leader_url": self.leader_url}


class BrokerNotAvailable(ApiError):
    http_status, error_code, retriable = 503, 50302, True


class StorageUnavailable(ApiError):
    """This broker cannot write what the request needs; another replica may (``leader_id``/``leader_url``)."""

    http_status, error_code, retriable = 507, 50701, True

    def __init__(self, broker_id: int, reason: str, what: str, leader_id: int | None = None,
                 leader_url: str | None = None) -> None:
        hint = "retry: leadership is moving to another replica" if leader_id is None else \
            f"retry on the leader, broker {leader_id}" + (f" at {leader_url}" if leader_url else "")
        super().__init__(f"Broker storage unavailable: {reason} on broker {broker_id} ({what}); {hint}.")
        self.broker_id, self.reason, self.leader_id, self.leader_url = broker_id, reason, leader_id, leader_url

    def extra(self) -> dict[str, Any]:
        return {"leader_id": self.leader_id, "leader_url": self.leader_url}
