"""Kafka error codes, and how the broker's errors (`raftka.node.errors`) become them.

The services raise one `ApiError` class per condition; the Kafka front end
answers each with Kafka's code for it. Where Kafka distinguishes what raftka
calls one error, the context decides: a `NotLeader` about a partition is
NOT_LEADER_OR_FOLLOWER (clients refresh metadata and retry), about the group
coordinator NOT_COORDINATOR, about a metadata write NOT_CONTROLLER.
"""

from __future__ import annotations

import enum

from raftka.node.errors import (ApiError, AuthenticationRequired, BrokerNotAvailable, ClusterAuthorizationFailed,
                                ConsumerInstanceNotFound, GroupAuthorizationFailed, GroupNotEmpty, GroupNotFound,
                                InconsistentGroupProtocol, InvalidPartitions, InvalidReplicationFactor,
                                InvalidRequest, InvalidTopicConfig, InvalidTopicName, NotLeader, OffsetOutOfRange,
                                PartitionNotFound, RebalanceInProgress, RecordTooLarge, RequestTimedOut,
                                RequestTooLarge, StaleGeneration, TopicAlreadyExists, TopicAuthorizationFailed,
                                TopicNotFound, UserNotFound)
from raftka.node.groups.coordinator import InvalidSessionTimeout

__all__ = ["Context", "ErrorCode", "error_code", "error_message"]


class ErrorCode(enum.IntEnum):
    """The Kafka protocol error codes raftka answers with (Kafka's `Errors.java`)."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    MESSAGE_TOO_LARGE = 10
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    INVALID_COMMIT_OFFSET_SIZE = 28
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    INVALID_CONFIG = 40
    NOT_CONTROLLER = 41
    INVALID_REQUEST = 42
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    SECURITY_DISABLED = 54
    INVALID_PRODUCER_EPOCH = 47
    KAFKA_STORAGE_ERROR = 56
    SASL_AUTHENTICATION_FAILED = 58
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    UNSUPPORTED_COMPRESSION_TYPE = 76
    INVALID_RECORD = 87
    RESOURCE_NOT_FOUND = 91
    DUPLICATE_RESOURCE = 92
    UNACCEPTABLE_CREDENTIAL = 93


class Context(enum.Enum):
    """What a `NotLeader` was about."""

    PARTITION = "partition"
    COORDINATOR = "coordinator"
    CONTROLLER = "controller"


_NOT_LEADER = {Context.PARTITION: ErrorCode.NOT_LEADER_OR_FOLLOWER, Context.COORDINATOR: ErrorCode.NOT_COORDINATOR,
               Context.CONTROLLER: ErrorCode.NOT_CONTROLLER}

_BY_CLASS: list[tuple[type[ApiError], ErrorCode]] = [  # most specific first
    (TopicAuthorizationFailed, ErrorCode.TOPIC_AUTHORIZATION_FAILED),
    (GroupAuthorizationFailed, ErrorCode.GROUP_AUTHORIZATION_FAILED),
    (ClusterAuthorizationFailed, ErrorCode.CLUSTER_AUTHORIZATION_FAILED),
    (AuthenticationRequired, ErrorCode.SASL_AUTHENTICATION_FAILED),
    (UserNotFound, ErrorCode.RESOURCE_NOT_FOUND),
    (TopicNotFound, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    (PartitionNotFound, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    (OffsetOutOfRange, ErrorCode.OFFSET_OUT_OF_RANGE),
    (RecordTooLarge, ErrorCode.MESSAGE_TOO_LARGE),
    (RequestTooLarge, ErrorCode.MESSAGE_TOO_LARGE),
    (TopicAlreadyExists, ErrorCode.TOPIC_ALREADY_EXISTS),
    (InvalidTopicName, ErrorCode.INVALID_TOPIC_EXCEPTION),
    (InvalidPartitions, ErrorCode.INVALID_PARTITIONS),
    (InvalidReplicationFactor, ErrorCode.INVALID_REPLICATION_FACTOR),
    (InvalidTopicConfig, ErrorCode.INVALID_CONFIG),
    (RebalanceInProgress, ErrorCode.REBALANCE_IN_PROGRESS),
    (StaleGeneration, ErrorCode.ILLEGAL_GENERATION),
    (ConsumerInstanceNotFound, ErrorCode.UNKNOWN_MEMBER_ID),
    (GroupNotFound, ErrorCode.GROUP_ID_NOT_FOUND),
    (GroupNotEmpty, ErrorCode.NON_EMPTY_GROUP),
    (InvalidSessionTimeout, ErrorCode.INVALID_SESSION_TIMEOUT),
    (InconsistentGroupProtocol, ErrorCode.INCONSISTENT_GROUP_PROTOCOL),
    (RequestTimedOut, ErrorCode.REQUEST_TIMED_OUT),
    (BrokerNotAvailable, ErrorCode.BROKER_NOT_AVAILABLE),
    (InvalidRequest, ErrorCode.INVALID_REQUEST),
]

# Errors raised as codes (MetadataRejected, ProduceRejected): raftka code -> Kafka code.
_BY_RAFTKA_CODE = {
    40401: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    40407: ErrorCode.RESOURCE_NOT_FOUND,
    40904: ErrorCode.TOPIC_ALREADY_EXISTS,
    40905: ErrorCode.ILLEGAL_GENERATION,
    40907: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
    40908: ErrorCode.INVALID_PRODUCER_EPOCH,
    42206: ErrorCode.INVALID_REQUEST,
    42209: ErrorCode.INVALID_PARTITIONS,
}


def error_code(exc: BaseException, context: Context = Context.PARTITION) -> ErrorCode:
    """Kafka's code for an error raised while serving a request about `context`."""
    if isinstance(exc, NotLeader):
        return _NOT_LEADER[context]
    if isinstance(exc, ApiError):
        for cls, code in _BY_CLASS:
            if isinstance(exc, cls):
                return code
        if exc.error_code in _BY_RAFTKA_CODE:
            return _BY_RAFTKA_CODE[exc.error_code]
        if exc.http_status == 507:  # the broker's storage cannot take writes now: retriable in Kafka too
            return ErrorCode.KAFKA_STORAGE_ERROR
    return ErrorCode.UNKNOWN_SERVER_ERROR


def error_message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ApiError) else "Internal error; the broker logged the details."
