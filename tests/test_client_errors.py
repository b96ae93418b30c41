"""Broker error documents -> client exceptions, checked against the broker's own error classes."""

import inspect

import pytest

from raftka.client import errors as client
from raftka.client.errors import error_from_response
from raftka.node import errors as broker

BROKER_ERRORS = [
    cls
    for _, cls in inspect.getmembers(broker, inspect.isclass)
    if issubclass(cls, broker.ApiError) and cls is not broker.ApiError
]


def make(cls: type[broker.ApiError]) -> broker.ApiError:
    """An instance of a broker error class with plausible constructor arguments."""
    params = list(inspect.signature(cls.__init__).parameters)[1:]
    samples = {"topic": "orders", "partition": 3, "group": "g", "instance": "i", "generation": 4,
               "current_generation": 5, "offset": 99, "earliest": 10, "latest": 20, "what": "partition orders/3",
               "leader_id": 2, "leader_url": "http://h:2", "message": "boom", "broker": 7, "broker_id": 3,
               "reason": "disk full", "detail": "a Kafka member joins a group of raftka members", "members": 2,
               "operation": "read"}
    return cls(*[samples[p] for p in params])


EXPECTED = {
    broker.TopicNotFound: client.TopicNotFoundError,
    broker.PartitionNotFound: client.PartitionNotFoundError,
    broker.ConsumerInstanceNotFound: client.UnknownMemberError,
    broker.GroupNotFound: client.GroupNotFoundError,
    broker.BrokerNotFound: client.BrokerNotFoundError,
    broker.NotAcceptable: client.NotAcceptableError,
    broker.ConsumerAlreadySubscribed: client.GroupError,
    broker.ConsumerAlreadyExists: client.GroupError,
    broker.TopicAlreadyExists: client.TopicAlreadyExistsError,
    broker.StaleGeneration: client.StaleGenerationError,
    broker.RebalanceInProgress: client.RebalanceInProgressError,
    broker.InconsistentGroupProtocol: client.GroupError,
    broker.GroupNotEmpty: client.GroupError,
    broker.NoCommittedOffset: client.NoOffsetForPartitionError,
    broker.RequestTooLarge: client.RequestTooLargeError,
    broker.RecordTooLarge: client.RecordTooLargeError,
    broker.UnsupportedMediaType: client.UnsupportedMediaTypeError,
    broker.OffsetOutOfRange: client.OffsetOutOfRangeError,
    broker.InvalidConsumerConfig: client.InvalidConfigError,
    broker.InvalidRequest: client.InvalidRequestError,
    broker.InvalidEncoding: client.InvalidEncodingError,
    broker.InvalidTopicName: client.InvalidTopicError,
    broker.InvalidPartitions: client.InvalidPartitionsError,
    broker.InvalidReplicationFactor: client.InvalidReplicationFactorError,
    broker.InvalidTopicConfig: client.InvalidConfigError,
    broker.InternalError: client.InternalServerError,
    broker.RequestTimedOut: client.RequestTimedOutError,
    broker.NotLeader: client.NotLeaderError,
    broker.BrokerNotAvailable: client.BrokerNotAvailableError,
    broker.StorageUnavailable: client.StorageUnavailableError,
    broker.ReassignmentNotFound: client.ReassignmentNotFoundError,
    broker.JoinRefused: client.JoinRefusedError,
    broker.ReassignmentInProgress: client.ReassignmentInProgressError,
    broker.UnsafeClusterChange: client.UnsafeClusterChangeError,
    broker.BrokerAlreadyRegistered: client.BrokerAlreadyRegisteredError,
    broker.InvalidReplicaAssignment: client.InvalidReplicaAssignmentError,
    broker.AuthenticationRequired: client.AuthenticationError,
    broker.TooManyLoginFailures: client.TooManyLoginFailuresError,
    broker.TopicAuthorizationFailed: client.TopicAuthorizationError,
    broker.GroupAuthorizationFailed: client.GroupAuthorizationError,
    broker.ClusterAuthorizationFailed: client.ClusterAuthorizationError,
    broker.UserNotFound: client.UserNotFoundError,
}


def test_every_broker_error_class_has_an_expected_client_class():
    assert set(BROKER_ERRORS) <= set(EXPECTED), set(BROKER_ERRORS) - set(EXPECTED)


@pytest.mark.parametrize("cls", BROKER_ERRORS, ids=lambda c: c.__name__)
def test_broker_errors_map_to_client_errors_with_the_same_retriability(cls):
    sent = make(cls)
    got = error_from_response(sent.http_status, sent.to_json(), broker="http://b:1")
    assert type(got) is EXPECTED[cls]
    assert got.retriable == cls.retriable
    assert got.error_code == cls.error_code and got.http_status == cls.http_status
    assert got.message == sent.message and got.broker == "http://b:1"
    assert str(cls.error_code) in str(got) and "http://b:1" in str(got)


def test_typed_details_survive_the_trip():
    nl = error_from_response(503, broker.NotLeader("partition t/0", 2, "http://h:2").to_json())
    assert (nl.leader_id, nl.leader_url) == (2, "http://h:2")
    unknown = error_from_response(503, broker.NotLeader("partition t/0").to_json())
    assert (unknown.leader_id, unknown.leader_url) == (None, None)
    oor = error_from_response(416, broker.OffsetOutOfRange("t", 0, 5, 10, 20).to_json())
    assert (oor.earliest, oor.latest) == (10, 20)
    stale = error_from_response(409, broker.StaleGeneration("g", 4, 5).to_json())
    assert stale.generation == 5
    full = error_from_response(507, broker.StorageUnavailable(3, "disk full", "partition t/0", 1, "http://h:1").to_json())
    assert (full.leader_id, full.leader_url) == (1, "http://h:1") and full.retriable


@pytest.mark.parametrize(
    "status, body, cls",
    [
        (404, b"404: Not Found", client.NotFoundError),
        (502, b"<html>bad gateway</html>", client.ServerError),
        (503, b"", client.BrokerNotAvailableError),
        (418, b'{"message": "teapot"}', client.RaftkaError),
        (409, b'{"error_code": 40999, "message": "new conflict"}', client.RaftkaError),
        (500, b'{"error_code": "x"}', client.ServerError),
    ],
)
def test_unknown_or_non_json_answers_fall_back_by_status(status, body, cls):
    got = error_from_response(status, body)
    assert type(got) is cls
    assert got.message.startswith(f"HTTP {status}") or got.message in ("teapot", "new conflict")


def test_produce_rejections_of_the_partition_state_machine():
    from raftka.node.services.produce import PRODUCE_ERROR_CODES, ProduceRejected

    classes = {type(error_from_response(code // 100, ProduceRejected(code, "x").to_json())) for code in PRODUCE_ERROR_CODES.values()}
    assert classes == {client.OutOfOrderSequenceError, client.ProducerFencedError, client.InvalidRequestError}


def test_non_json_body_text_is_kept_in_the_message():
    assert "bad gateway" in error_from_response(502, b"<html>bad gateway</html>").message


def test_no_brokers_available_message_lists_addresses_and_reasons():
    exc = client.NoBrokersAvailable({"http://a:1": "cannot connect: refused", "http://b:2": "timed out"})
    assert "http://a:1 (cannot connect: refused)" in str(exc) and "http://b:2 (timed out)" in str(exc)
    assert exc.retriable
    assert "no broker addresses" in str(client.NoBrokersAvailable({}))


def test_topic_not_found_suggestions():
    exc = client.TopicNotFoundError("Topic 'ordrs' not found.", details={"topic": "ordrs", "suggestions": ["orders"]})
    assert exc.topic == "ordrs" and exc.suggestions == ["orders"]
