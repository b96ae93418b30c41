"""Which partition a produced record goes to: explicit, by key (Kafka's murmur2), or sticky for null keys.

* ``partition`` given: used as is (PartitionNotFoundError if the topic has fewer).
* key given: ``raftka.client.partitioner.partition_for_key`` - the same
  partition number Kafka's Java client picks, so keyed data can move between
  Kafka and raftka.
* no key: Kafka's "uniform sticky" partitioner (KIP-794): stay on one
  partition until about ``stick_bytes`` went there, then jump to another one
  picked at random among the rest. Null-key records thus fill whole batches
  (few, large requests) and still spread evenly over all partitions.

Kafka sticks for one ``batch.size``; the producer's default here is 1 MiB, four
of its default batches (``AIOProducer(sticky_partition_bytes=...)``). A Kafka
produce request carries the batches of every partition a broker leads, but in
raftka each partition's batch is a request and a Raft round of its own, and a
switch sends two of them (the old partition's and the new one's) where one
would have gone: with 8 producers and 64 partitions, sticking for one 256 KiB
batch gave 116-131 k msg/s, sticking for 1 MiB 145-155 k (`bench.partitions`).
"""

from __future__ import annotations

import random

from raftka.client.errors import PartitionNotFoundError
from raftka.client.partitioner import partition_for_key

__all__ = ["PartitionChooser"]


class PartitionChooser:
    def __init__(self, stick_bytes: int, rng: random.Random | None = None) -> None:
        self.stick_bytes = stick_bytes
        self._rng = rng or random.Random()
        self._sticky: dict[str, list[int]] = {}  # topic -> [partition, bytes sent to it so far]

    def choose(self, topic: str, key: bytes | None, partition: int | None, num_partitions: int, size: int) -> int:
        if partition is not None:
            if not 0 <= partition < num_partitions:
                raise PartitionNotFoundError(
                    f"Partition {partition} of topic '{topic}' not found: it has {num_partitions} partition(s).",
                    details={"topic": topic, "partition": partition},
                )
            return partition
        if key is not None:
            return partition_for_key(key, num_partitions)
        return self._sticky_partition(topic, num_partitions, size)

    def _sticky_partition(self, topic: str, num_partitions: int, size: int) -> int:
        state = self._sticky.get(topic)
        if state is None or state[0] >= num_partitions or state[1] >= self.stick_bytes:
            previous = None if state is None else state[0]
            state = [self._pick(num_partitions, previous), 0]
            self._sticky[topic] = state
        state[1] += size
        return state[0]

    def _pick(self, num_partitions: int, previous: int | None) -> int:
        if num_partitions == 1 or previous is None or previous >= num_partitions:
            return self._rng.randrange(num_partitions)
        choice = self._rng.randrange(num_partitions - 1)
        return choice + 1 if choice >= previous else choice
