"""Retry policy shared by the producer, fetcher and group member: backoff and error classification."""

from __future__ import annotations

import enum
import random

from raftka.client.errors import (
    BrokerConnectionError,
    NoBrokersAvailable,
    OutOfOrderSequenceError,
    PartitionNotFoundError,
    RaftkaError,
    RecordTooLargeError,
    RequestTooLargeError,
    StorageUnavailableError,
    TopicNotFoundError,
)

__all__ = ["Backoff", "Disposition", "classify_produce_error", "may_have_been_written"]


class Backoff:
    """Exponential backoff with +-20% jitter: initial, 2x initial, ... capped at ``max_s``."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max(max_s, initial_s)
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = first retry)."""
        base = min(self.max_s, self.initial_s * 2 ** max(0, attempt - 1))
        return base * self._rng.uniform(0.8, 1.2)


class Disposition(enum.Enum):
    RETRY = "retry"  # same bytes again after backoff (metadata refreshed as needed)
    CHECK_TOPIC = "check-topic"  # refresh metadata: retry if the topic/partition exists, else fail
    SPLIT = "split"  # too large: resend as two halves
    RENUMBER = "renumber"  # the broker's sequence state differs: number it again under a new producer id
    FAIL = "fail"  # definitive: the broker refused and did not write it


def classify_produce_error(exc: BaseException, record_count: int) -> Disposition:
    if isinstance(exc, (RecordTooLargeError, RequestTooLargeError)) and record_count > 1:
        return Disposition.SPLIT
    if isinstance(exc, OutOfOrderSequenceError):
        return Disposition.RENUMBER
    if isinstance(exc, (TopicNotFoundError, PartitionNotFoundError)):
        return Disposition.CHECK_TOPIC
    if isinstance(exc, RaftkaError) and exc.retriable:
        return Disposition.RETRY
    return Disposition.FAIL


def may_have_been_written(exc: BaseException) -> bool:
    """Whether a failed produce attempt may still have been appended. Only a request that never
    reached a broker, or that a broker refused with a 4xx answer (validation happens before the batch
    is proposed to Raft), or refused for lack of storage (507: refused before it was appended), is
    certainly not written. Anything else - timeouts, lost connections, 5xx including NotLeader (a
    deposed leader's entry may still be committed by its successor) - may be."""
    if isinstance(exc, (BrokerConnectionError, NoBrokersAvailable, StorageUnavailableError)):
        return False
    status = getattr(exc, "http_status", None)
    return not (status is not None and 400 <= status < 500)
