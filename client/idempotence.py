"""Idempotent-producer bookkeeping: producer identity and per-partition sequence numbers.

The broker keeps, per producer id and partition, the sequence numbers it has
written; a batch whose ``(producer_id, epoch, base_sequence)`` it has seen is
acknowledged with its original offsets instead of being written again. So:

* a batch gets its base sequence when it is *first* sent, and a retry resends
  the identical bytes - never a new sequence;
* sequences advance by the record count and wrap at 2**31 like Kafka's;
* when a numbered batch fails for good (refused, timed out, split because it
  was too large), the producer drops the identity and numbers later batches
  under a new producer id (``POST /producers``; the broker accepts any first
  sequence from a producer id it has not seen, as Kafka >= 2.5 does). Reusing
  the failed batch's numbers instead would be unsafe whenever its outcome is
  unknown: a later, different batch with the same sequence range would be
  acknowledged as a duplicate of it and silently dropped.
"""

from __future__ import annotations

from typing import NamedTuple

from raftka.client.structs import TopicPartition

__all__ = ["NO_IDENTITY", "SEQUENCE_MODULUS", "ProducerIdentity", "SequenceTracker"]

SEQUENCE_MODULUS = 1 << 31


class ProducerIdentity(NamedTuple):
    producer_id: int
    epoch: int


NO_IDENTITY = ProducerIdentity(-1, -1)  # non-idempotent producer: batches carry -1s


class SequenceTracker:
    """Next sequence number per partition, for one producer identity."""

    def __init__(self, identity: ProducerIdentity) -> None:
        self.identity = identity
        self._next: dict[TopicPartition, int] = {}

    def next_sequence(self, tp: TopicPartition) -> int:
        return self._next.get(tp, 0)

    def assign(self, tp: TopicPartition, count: int) -> int:
        """Base sequence for a new batch of ``count`` records."""
        if count < 1:
            raise ValueError("a batch has at least one record")
        base = self._next.get(tp, 0)
        self._next[tp] = (base + count) % SEQUENCE_MODULUS
        return base
