"""Consumer-group partition assignment (pure): which member of a group reads which partition.

``assign`` walks the partitions of every subscribed topic in sorted
``(topic, partition)`` order and gives each one to the least-loaded member
subscribed to its topic, ties going to the smallest member id. When all
members subscribe to the same topics this is exactly Kafka's round-robin
assignor over sorted members; with mixed subscriptions it still keeps members
with identical subscriptions within one partition of each other (a partition
eligible for one of them is eligible for the other, and it always goes to the
less loaded). Every partition of a topic with at least one subscriber goes to
exactly one member; members beyond the partition count get nothing. The
result depends only on the inputs' contents, never on their order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

__all__ = ["TopicPartition", "assign"]

TopicPartition = tuple[str, int]


def assign(
    subscriptions: Mapping[str, Iterable[str]], partition_counts: Mapping[str, int]
) -> dict[str, list[TopicPartition]]:
    """Map every member id to its sorted list of ``(topic, partition)``.

    ``subscriptions``: member id -> subscribed topics. ``partition_counts``:
    topic -> number of partitions; subscribed topics missing from it (not
    created yet) are skipped, and topics nobody subscribes to are ignored.
    """
    topics_of = {member: frozenset(topics) for member, topics in subscriptions.items()}
    plan: dict[str, list[TopicPartition]] = {member: [] for member in sorted(topics_of)}
    wanted = set().union(*topics_of.values()) if topics_of else set()
    for topic in sorted(wanted & partition_counts.keys()):
        # Loads only change inside this loop, so a heap of (load, member) for this topic's subscribers stays exact.
        heap = [(len(owned), member) for member, owned in plan.items() if topic in topics_of[member]]
        heapq.heapify(heap)
        for partition in range(partition_counts[topic]):
            load, member = heapq.heappop(heap)
            plan[member].append((topic, partition))
            heapq.heappush(heap, (load + 1, member))
    return plan
