"""REST-Proxy-style API errors (raftka.node.errors): codes, statuses, bodies, documented table."""

import re

import orjson
import pytest

from raftka.node import errors
from raftka.node.errors import (
    ApiError,
    NotLeader,
    OffsetOutOfRange,
    PartitionNotFound,
    StaleGeneration,
    StorageUnavailable,
    TopicNotFound,
    error_body,
)

ALL_ERRORS = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]


def documented_table() -> dict[str, tuple[int, int]]:
    rows = re.findall(r"^(\w+)\s+(\d{3})\s+(\d{5})\s+[CR]\s", errors.__doc__, re.MULTILINE)
    return {name: (int(status), int(code)) for name, status, code in rows}


def test_every_error_class_is_documented_with_its_status_and_code():
    table = documented_table()
    classes = {cls.__name__: (cls.http_status, cls.error_code) for cls in ALL_ERRORS if cls is not ApiError}
    assert table == classes


def test_codes_are_unique_and_carry_their_status():
    codes = [cls.error_code for cls in ALL_ERRORS if cls is not ApiError]
    assert len(codes) == len(set(codes))
    for cls in ALL_ERRORS:
        assert cls.error_code // 100 == cls.http_status, cls.__name__


def test_confluent_codes_keep_their_confluent_meaning():
    confluent = {
        "TopicNotFound": 40401,
        "PartitionNotFound": 40402,
        "ConsumerInstanceNotFound": 40403,
        "NotAcceptable": 40601,
        "ConsumerAlreadySubscribed": 40901,
        "ConsumerAlreadyExists": 40902,
        "InvalidConsumerConfig": 42204,
        "InternalError": 50002,
        "RequestTimedOut": 50003,
        "BrokerNotAvailable": 50302,
    }
    assert {name: getattr(errors, name).error_code for name in confluent} == confluent
    taken_by_confluent_for_other_things = {40404, 40903, 42201, 42202, 42203, 42205, 40002}
    assert not taken_by_confluent_for_other_things & {cls.error_code for cls in ALL_ERRORS}


def test_error_document():
    assert orjson.loads(TopicNotFound("orders").to_json()) == {
        "error_code": 40401,
        "message": "Topic 'orders' not found.",
    }
    assert orjson.loads(error_body(40402, "nope", extra=1)) == {"error_code": 40402, "message": "nope", "extra": 1}
    exc = PartitionNotFound("t", 7)
    assert (exc.http_status, exc.to_dict()) == (
        404,
        {"error_code": 40402, "message": "Partition 7 of topic 't' not found."},
    )
    assert str(exc) == exc.message


def test_offset_out_of_range_names_the_valid_range():
    exc = OffsetOutOfRange("t", 0, 5, earliest=10, latest=20)
    body = orjson.loads(exc.to_json())
    assert body["error_code"] == 41601 and exc.http_status == 416
    assert (body["earliest"], body["latest"]) == (10, 20)
    assert "10 (earliest) to 20 (latest)" in body["message"]


@pytest.mark.parametrize(
    ("leader_id", "url", "text"),
    [
        (2, "http://b2:8080", "the leader is broker 2 at http://b2:8080"),
        (2, None, "the leader is broker 2."),
        (None, None, "election in progress"),
    ],
)
def test_not_leader_is_retriable_and_carries_a_hint(leader_id, url, text):
    exc = NotLeader("partition 3 of topic 't'", leader_id, url)
    body = orjson.loads(exc.to_json())
    assert exc.retriable and exc.http_status == 503
    assert body["error_code"] == 50301 and (body["leader_id"], body["leader_url"]) == (leader_id, url)
    assert text in body["message"]


def test_stale_generation_reports_the_current_generation():
    body = StaleGeneration("g", 3, 5).to_dict()
    assert body["generation"] == 5 and "Generation 3 of group 'g' is stale" in body["message"]


def test_only_transient_conditions_are_retriable():
    assert {cls.__name__ for cls in ALL_ERRORS if cls.retriable} == {
        "RequestTimedOut",
        "NotLeader",
        "BrokerNotAvailable",
        "StorageUnavailable",
    }


def test_storage_unavailable_says_which_broker_why_and_where_to_retry():
    body = orjson.loads(StorageUnavailable(3, "disk full", "partition t/0", 1, "http://b1:8080").to_json())
    assert body["error_code"] == 50701 and StorageUnavailable.http_status == 507
    assert body["message"].startswith("Broker storage unavailable: disk full on broker 3 (partition t/0)")
    assert (body["leader_id"], body["leader_url"]) == (1, "http://b1:8080")


def test_storage_unavailable_is_kafka_storage_error_on_the_kafka_listener():
    from raftka.node.kafka.errors import ErrorCode, error_code

    assert error_code(StorageUnavailable(3, "disk full", "partition t/0")) is ErrorCode.KAFKA_STORAGE_ERROR
