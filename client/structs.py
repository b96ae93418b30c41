"""Value types the client hands to and returns from user code."""

from __future__ import annotations

from typing import NamedTuple


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class RecordMetadata(NamedTuple):
    """Where an acknowledged record was written."""

    topic: str
    partition: int
    offset: int


class ConsumerRecord(NamedTuple):
    """A record read from a partition. ``timestamp`` is epoch milliseconds."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


__all__ = ["ConsumerRecord", "RecordMetadata", "TopicPartition"]
