"""Client exceptions (a Kafka-like hierarchy) and the mapping from broker error documents to them.

The broker answers errors as ``{"error_code": 40401, "message": "...", ...}``
with HTTP status ``error_code // 100`` (see ``raftka.node.errors``).
``error_from_response`` turns such an answer into the matching exception; the
extra fields of the document stay available as ``exc.details`` and through
typed properties (``NotLeaderError.leader_url``, ``OffsetOutOfRangeError.earliest``).

``exc.retriable`` says whether repeating the same request may succeed. The
producer and consumer retry retriable errors themselves (with backoff, and
without duplicates thanks to the idempotent producer); what reaches user code
has either failed definitively or run out of time.

Hierarchy::

    RaftkaError
     +-- RetriableError                    retriable = True
     |    +-- NotLeaderError               50301, with leader_id / leader_url hints
     |    +-- RequestTimedOutError         50003 or client-side read timeout: outcome unknown
     |    +-- BrokerNotAvailableError      50302
     |    +-- StorageUnavailableError      50701 the broker's disk is full or failing: nothing was written;
     |    |                                     leader_id / leader_url name the new leader when known
     |    |    +-- BrokerConnectionError   this client could not connect to a broker
     |    +-- NoBrokersAvailable           no broker of bootstrap/metadata answered; lists what was tried
     +-- AuthenticationError               40101: no credentials or wrong ones
     |    +-- TooManyLoginFailuresError    42901: this address failed too often; retry in a minute
     +-- AuthorizationError                403xx: the ACLs do not allow it
     |    +-- TopicAuthorizationError (40301)  GroupAuthorizationError (40302)
     |    +-- ClusterAuthorizationError (40303)
     +-- NotFoundError                     404xx
     |    +-- TopicNotFoundError  PartitionNotFoundError  GroupNotFoundError  UnknownMemberError
     |    +-- BrokerNotFoundError          40406
     |    +-- ReassignmentNotFoundError    40411
     |    +-- UserNotFoundError (40407)
     +-- TopicAlreadyExistsError           40904
     +-- ClusterChangeError                a cluster change refused in this state
     |    +-- ReassignmentInProgressError  40921  UnsafeClusterChangeError  40922
     |    +-- BrokerAlreadyRegisteredError 40923  JoinRefusedError  40321
     +-- GroupError
     |    +-- StaleGenerationError         40905
     |    +-- RebalanceInProgressError     40906
     |    +-- CommitFailedError            a commit refused because the group moved on
     +-- OutOfOrderSequenceError (40907)   the broker's sequence state for this producer differs
     +-- ProducerFencedError (40908)       a newer epoch of this producer id exists
     +-- RecordTooLargeError (41302)  RequestTooLargeError (41301)
     +-- OffsetOutOfRangeError             41601, with earliest / latest
     +-- NoOffsetForPartitionError (40909) no committed offset and auto_offset_reset="none"
     +-- InvalidRequestError               422xx and 400
     |    +-- InvalidTopicError  InvalidPartitionsError  InvalidReplicationFactorError
     |    +-- InvalidConfigError  InvalidEncodingError  InvalidReplicaAssignmentError (42221)
     +-- UnsupportedMediaTypeError (415)  NotAcceptableError (406)
     +-- ServerError                       other 5xx (InternalServerError 50002)
     +-- DeliveryTimeoutError              a record was not acknowledged within delivery_timeout_ms
     +-- BufferFullError                   send() waited max_block_ms for buffer space
     +-- ClientClosedError                 the producer/consumer/admin was closed
     +-- IllegalStateError                 API misuse (e.g. commit without a group)
     +-- ProtocolError                     the broker answered something this client cannot read
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "ClusterAuthorizationError",
    "GroupAuthorizationError",
    "TooManyLoginFailuresError",
    "TopicAuthorizationError",
    "UserNotFoundError",
    "BrokerAlreadyRegisteredError",
    "BrokerConnectionError",
    "ClusterChangeError",
    "BrokerNotAvailableError",
    "BufferFullError",
    "ClientClosedError",
    "CommitFailedError",
    "DeliveryTimeoutError",
    "GroupError",
    "GroupNotFoundError",
    "BrokerNotFoundError",
    "IllegalStateError",
    "InternalServerError",
    "InvalidConfigError",
    "InvalidEncodingError",
    "InvalidPartitionsError",
    "InvalidReplicaAssignmentError",
    "InvalidReplicationFactorError",
    "InvalidRequestError",
    "InvalidTopicError",
    "JoinRefusedError",
    "NoBrokersAvailable",
    "NoOffsetForPartitionError",
    "NotAcceptableError",
    "NotFoundError",
    "NotLeaderError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "PartitionNotFoundError",
    "ProducerFencedError",
    "ProtocolError",
    "RaftkaError",
    "ReassignmentInProgressError",
    "ReassignmentNotFoundError",
    "RebalanceInProgressError",
    "RecordTooLargeError",
    "RequestTimedOutError",
    "RequestTooLargeError",
    "RetriableError",
    "ServerError",
    "StaleGenerationError",
    "StorageUnavailableError",
    "TopicAlreadyExistsError",
    "TopicNotFoundError",
    "UnknownMemberError",
    "UnsafeClusterChangeError",
    "UnsupportedMediaTypeError",
    "error_from_response",
]


class RaftkaError(Exception):
    """Base of every error this client raises.

    ``error_code``/``http_status`` are set when a broker answered with an error
    document; ``broker`` is the URL of the broker that answered (or was tried);
    ``details`` holds the whole error document.
    """

    retriable = False

    def __init__(
        self,
        message: str,
        *,
        error_code: int | None = None,
        http_status: int | None = None,
        broker: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.http_status = http_status
        self.broker = broker
        self.details: Mapping[str, Any] = details or {}

    def __str__(self) -> str:
        code = f" [{self.error_code}]" if self.error_code is not None else ""
        where = f" (broker {self.broker})" if self.broker else ""
        return f"{self.message}{code}{where}"


class RetriableError(RaftkaError):
    """Repeating the request (after a metadata refresh and a short backoff) may succeed."""

    retriable = True


class _LeaderHints(RetriableError):
    """An answer that names the leader to retry on (``leader_id``/``leader_url``; None: not known yet)."""

    @property
    def leader_id(self) -> int | None:
        value = self.details.get("leader_id")
        return value if isinstance(value, int) else None

    @property
    def leader_url(self) -> str | None:
        value = self.details.get("leader_url")
        return value if isinstance(value, str) and value else None


class NotLeaderError(_LeaderHints):
    """The broker does not lead the partition or group; the hints say who does (None: unknown yet)."""


class RequestTimedOutError(RetriableError):
    """The request may or may not have taken effect (not committed in time, or no answer in time)."""


class BrokerNotAvailableError(RetriableError):
    """A broker is unreachable or could not forward the request."""


class StorageUnavailableError(_LeaderHints):
    """The broker cannot write (disk full, I/O error, below its low-disk watermark); nothing was written.

    Leadership moves to a replica that can write; the hints name it when known (None: not yet).
    """


class BrokerConnectionError(BrokerNotAvailableError):
    """This client could not open a connection to a broker (refused, unresolvable, connect timeout)."""


class NoBrokersAvailable(RetriableError):
    """No broker answered; ``tried`` maps every address tried to why it failed."""

    def __init__(self, tried: Mapping[str, str] | Sequence[str]) -> None:
        self.tried: dict[str, str] = dict(tried) if isinstance(tried, Mapping) else dict.fromkeys(tried, "")
        if self.tried:
            listing = "; ".join(f"{url} ({why})" if why else url for url, why in self.tried.items())
            message = f"Cannot reach any raftka broker. Tried: {listing}"
        else:
            message = "Cannot reach any raftka broker: no broker addresses are configured"
        super().__init__(message)


class NotFoundError(RaftkaError):
    """Something named in the request does not exist."""


class TopicNotFoundError(NotFoundError):
    """The topic does not exist; ``suggestions`` lists similarly named topics when known."""

    @property
    def topic(self) -> str | None:
        return self.details.get("topic")

    @property
    def suggestions(self) -> list[str]:
        return list(self.details.get("suggestions", ()))


class PartitionNotFoundError(NotFoundError):
    """The topic has no such partition."""


class GroupNotFoundError(NotFoundError):
    """The consumer group does not exist."""


class BrokerNotFoundError(NotFoundError):
    """No broker with that id is a member of the cluster."""


class ReassignmentNotFoundError(NotFoundError):
    """The partition is not being reassigned (nothing to cancel)."""


class ClusterChangeError(RaftkaError):
    """A change of the cluster's shape refused in its current state (the message says why)."""


class ReassignmentInProgressError(ClusterChangeError):
    """The partition is being moved already: wait for the move or cancel it first."""


class UnsafeClusterChangeError(ClusterChangeError):
    """The change would leave a partition short of replicas or the metadata group without a live quorum."""


class BrokerAlreadyRegisteredError(ClusterChangeError):
    """A live broker already runs under that id."""


class JoinRefusedError(ClusterChangeError):
    """A broker's join request did not prove the cluster secret."""


class UnknownMemberError(NotFoundError):
    """The group coordinator no longer knows this member (its session expired); rejoin."""


class UserNotFoundError(NotFoundError):
    """No such user (or no credential for that mechanism)."""


class AuthenticationError(RaftkaError):
    """The broker needs credentials (username and password, or a client certificate), or they are wrong."""


class TooManyLoginFailuresError(AuthenticationError):
    """This address failed to log in too often lately; the broker refuses it for a minute."""


class AuthorizationError(RaftkaError):
    """Authenticated, but the ACLs do not allow the operation."""


class TopicAuthorizationError(AuthorizationError):
    pass


class GroupAuthorizationError(AuthorizationError):
    pass


class ClusterAuthorizationError(AuthorizationError):
    pass


class TopicAlreadyExistsError(RaftkaError):
    """A topic of that name exists already."""


class GroupError(RaftkaError):
    """A consumer-group operation failed."""


class StaleGenerationError(GroupError):
    """The group has a newer generation than the member's; ``generation`` is the current one."""

    @property
    def generation(self) -> int | None:
        value = self.details.get("generation")
        return value if isinstance(value, int) else None


class RebalanceInProgressError(GroupError):
    """The group is rebalancing; the member must rejoin."""


class CommitFailedError(GroupError):
    """The commit was refused because the group rebalanced (stale generation, unknown member).

    The partitions may now belong to another member; records processed since the
    last successful commit may be delivered again (at-least-once).
    """


class OutOfOrderSequenceError(RaftkaError):
    """The broker expected another sequence number from this producer id; the batch was not written."""


class ProducerFencedError(RaftkaError):
    """A newer epoch of this producer id exists; the batch was not written."""


class RecordTooLargeError(RaftkaError):
    """A record (or a batch of records) is larger than the topic or request limit allows."""


class RequestTooLargeError(RaftkaError):
    """The request body is larger than the broker accepts."""


class OffsetOutOfRangeError(RaftkaError):
    """The offset is outside ``[earliest, latest]`` of the partition."""

    @property
    def earliest(self) -> int | None:
        value = self.details.get("earliest")
        return value if isinstance(value, int) else None

    @property
    def latest(self) -> int | None:
        value = self.details.get("latest")
        return value if isinstance(value, int) else None


class NoOffsetForPartitionError(RaftkaError):
    """The consumer has no position for a partition: nothing committed and ``auto_offset_reset="none"``."""


class InvalidRequestError(RaftkaError):
    """The broker refused the request as malformed or invalid."""


class InvalidTopicError(InvalidRequestError):
    """The topic name is not ``[a-zA-Z0-9._-]{1,249}``."""


class InvalidPartitionsError(InvalidRequestError):
    """Bad partition count (e.g. adding partitions that would shrink the topic)."""


class InvalidReplicationFactorError(InvalidRequestError):
    """Bad replication factor, or more replicas than brokers."""


class InvalidReplicaAssignmentError(InvalidRequestError):
    """A replica list names an unknown, dead, draining or repeated broker."""


class InvalidConfigError(InvalidRequestError):
    """Unknown config name or bad value."""


class InvalidEncodingError(InvalidRequestError):
    """A key, value or header is not valid base64."""


class UnsupportedMediaTypeError(RaftkaError):
    """The broker does not accept the request's Content-Type."""


class NotAcceptableError(RaftkaError):
    """The broker cannot answer in the requested format."""


class ServerError(RaftkaError):
    """The broker failed in an unexpected way."""


class InternalServerError(ServerError):
    """The broker reported an internal error (50002)."""


class DeliveryTimeoutError(RaftkaError):
    """A record was not acknowledged within ``delivery_timeout_ms``; it may or may not have been written.

    ``__cause__`` holds the last error seen while retrying.
    """


class BufferFullError(RaftkaError):
    """``send`` waited ``max_block_ms`` for buffer space (the cluster is not keeping up)."""


class ClientClosedError(RaftkaError):
    """The producer, consumer or admin client is closed."""


class IllegalStateError(RaftkaError):
    """The call is not valid in the client's current state."""


class ProtocolError(RaftkaError):
    """The broker's answer does not follow the HTTP API contract."""


_BY_CODE: dict[int, type[RaftkaError]] = {
    40101: AuthenticationError,
    40301: TopicAuthorizationError,
    40302: GroupAuthorizationError,
    40303: ClusterAuthorizationError,
    40407: UserNotFoundError,
    42901: TooManyLoginFailuresError,
    40401: TopicNotFoundError,
    40402: PartitionNotFoundError,
    40403: UnknownMemberError,  # Confluent: consumer instance not found
    40405: GroupNotFoundError,
    40321: JoinRefusedError,
    40406: BrokerNotFoundError,
    40411: ReassignmentNotFoundError,
    40601: NotAcceptableError,
    40901: GroupError,  # REST consumer instance already subscribed
    40902: GroupError,  # REST consumer instance already exists
    40904: TopicAlreadyExistsError,
    40905: StaleGenerationError,
    40906: RebalanceInProgressError,
    40907: OutOfOrderSequenceError,
    40908: ProducerFencedError,
    40910: GroupError,  # a member of the other protocol kind (Kafka classic vs raftka's group API)
    40911: GroupError,  # deleting a group that still has live members
    40909: NoOffsetForPartitionError,  # a REST consumer instance with auto.offset.reset none
    40910: GroupError,  # a member of the other protocol kind (Kafka classic vs raftka's group API)
    40911: GroupError,  # deleting a group that still has live members
    40921: ReassignmentInProgressError,
    40922: UnsafeClusterChangeError,
    40923: BrokerAlreadyRegisteredError,
    41301: RequestTooLargeError,
    41302: RecordTooLargeError,
    41501: UnsupportedMediaTypeError,
    41601: OffsetOutOfRangeError,
    42204: InvalidConfigError,
    42206: InvalidRequestError,
    42207: InvalidEncodingError,
    42208: InvalidTopicError,
    42209: InvalidPartitionsError,
    42210: InvalidReplicationFactorError,
    42211: InvalidConfigError,
    42221: InvalidReplicaAssignmentError,
    50002: InternalServerError,
    50003: RequestTimedOutError,
    50301: NotLeaderError,
    50302: BrokerNotAvailableError,
    50701: StorageUnavailableError,
}

_BY_STATUS: dict[int, type[RaftkaError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    406: NotAcceptableError,
    413: RequestTooLargeError,
    415: UnsupportedMediaTypeError,
    416: OffsetOutOfRangeError,
    422: InvalidRequestError,
    503: BrokerNotAvailableError,
    504: RequestTimedOutError,
}


def error_from_response(status: int, body: bytes, *, broker: str | None = None) -> RaftkaError:
    """The exception for an HTTP error answer (status >= 400) with an optional JSON error document."""
    details: dict[str, Any] = {}
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        details = parsed
    code = details.get("error_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    message = details.get("message")
    if not isinstance(message, str) or not message:
        text = body[:200].decode("utf-8", "replace").strip() if body and not details else ""
        message = f"HTTP {status}" + (f": {text}" if text else "")
    cls = _BY_CODE.get(code) if code is not None else None
    if cls is None:
        cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else RaftkaError)
    return cls(message, error_code=code, http_status=status, broker=broker, details=details)
