"""Idempotent producer bookkeeping: sequence numbering, wrap-around, retry classification and backoff."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftka.client.errors import (
    BrokerConnectionError,
    InternalServerError,
    InvalidRequestError,
    NoBrokersAvailable,
    NotLeaderError,
    OutOfOrderSequenceError,
    PartitionNotFoundError,
    ProducerFencedError,
    RecordTooLargeError,
    RequestTimedOutError,
    RequestTooLargeError,
    TopicNotFoundError,
    error_from_response,
)
from raftka.client.idempotence import SEQUENCE_MODULUS, ProducerIdentity, SequenceTracker
from raftka.client.retry import Backoff, Disposition, classify_produce_error, may_have_been_written
from raftka.client.structs import TopicPartition
from raftka.node import errors as broker_errors

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def test_sequences_advance_by_record_count_per_partition():
    tracker = SequenceTracker(ProducerIdentity(7, 0))
    assert tracker.assign(A, 3) == 0
    assert tracker.assign(A, 5) == 3
    assert tracker.assign(B, 1) == 0
    assert tracker.next_sequence(A) == 8 and tracker.next_sequence(B) == 1


def test_sequences_wrap_at_2_31_like_kafka():
    tracker = SequenceTracker(ProducerIdentity(1, 0))
    tracker.assign(A, SEQUENCE_MODULUS - 2)
    assert tracker.assign(A, 5) == SEQUENCE_MODULUS - 2
    assert tracker.next_sequence(A) == 3


def test_empty_batches_get_no_sequence():
    with pytest.raises(ValueError):
        SequenceTracker(ProducerIdentity(1, 0)).assign(A, 0)


@given(st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=50))
def test_consecutive_batches_have_contiguous_sequence_ranges(counts):
    tracker = SequenceTracker(ProducerIdentity(1, 0))
    expected = 0
    for count in counts:
        assert tracker.assign(A, count) == expected
        expected = (expected + count) % SEQUENCE_MODULUS


def broker_answer(exc: broker_errors.ApiError):
    return error_from_response(exc.http_status, exc.to_json(), broker="http://b:1")


@pytest.mark.parametrize(
    "error, count, expected",
    [
        (NotLeaderError("x"), 10, Disposition.RETRY),
        (RequestTimedOutError("x"), 10, Disposition.RETRY),
        (BrokerConnectionError("x"), 10, Disposition.RETRY),
        (NoBrokersAvailable({"http://a:1": "refused"}), 10, Disposition.RETRY),
        (TopicNotFoundError("x"), 10, Disposition.CHECK_TOPIC),
        (PartitionNotFoundError("x"), 10, Disposition.CHECK_TOPIC),
        (RecordTooLargeError("x"), 10, Disposition.SPLIT),
        (RequestTooLargeError("x"), 2, Disposition.SPLIT),
        (RecordTooLargeError("x"), 1, Disposition.FAIL),  # a single record cannot be split
        (OutOfOrderSequenceError("x"), 10, Disposition.RENUMBER),
        (ProducerFencedError("x"), 10, Disposition.FAIL),
        (InvalidRequestError("x"), 10, Disposition.FAIL),
        (InternalServerError("x"), 10, Disposition.FAIL),
    ],
)
def test_produce_error_dispositions(error, count, expected):
    assert classify_produce_error(error, count) is expected


def test_dispositions_of_real_broker_answers():
    assert classify_produce_error(broker_answer(broker_errors.NotLeader("p", 2, "http://h:2")), 5) is Disposition.RETRY
    assert classify_produce_error(broker_answer(broker_errors.RequestTimedOut("slow")), 5) is Disposition.RETRY
    full = broker_errors.StorageUnavailable(3, "disk full", "partition t/0", 1, "http://h:1")
    assert classify_produce_error(broker_answer(full), 5) is Disposition.RETRY
    assert classify_produce_error(broker_answer(broker_errors.RecordTooLarge("big")), 5) is Disposition.SPLIT
    assert classify_produce_error(broker_answer(broker_errors.TopicNotFound("t")), 5) is Disposition.CHECK_TOPIC
    assert classify_produce_error(broker_answer(broker_errors.InvalidRequest("bad")), 5) is Disposition.FAIL


def test_only_unsent_or_4xx_or_storage_refused_attempts_are_known_unwritten():
    assert not may_have_been_written(BrokerConnectionError("refused"))
    assert not may_have_been_written(broker_answer(broker_errors.StorageUnavailable(3, "disk full", "p")))
    assert not may_have_been_written(NoBrokersAvailable(["http://a:1"]))
    assert not may_have_been_written(broker_answer(broker_errors.RecordTooLarge("big")))
    assert not may_have_been_written(broker_answer(broker_errors.InvalidRequest("bad")))
    # The broker may have proposed (or even committed) the batch before answering these:
    assert may_have_been_written(broker_answer(broker_errors.RequestTimedOut("slow")))
    assert may_have_been_written(broker_answer(broker_errors.NotLeader("p")))
    assert may_have_been_written(broker_answer(broker_errors.InternalError("boom")))
    assert may_have_been_written(RequestTimedOutError("no answer within 30 s"))


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    backoff = Backoff(0.1, 1.0, random.Random(1))
    for attempt, nominal in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)]:
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(0.8 * nominal <= d <= 1.2 * nominal for d in delays)
        assert len(set(delays)) > 1  # jittered: retries of many clients do not synchronise
