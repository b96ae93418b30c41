"""Topic rules (pure): name syntax, partition directory names, topic configs with defaults and bounds, replica
assignment.

A partition replica lives in ``partitions/<topic>-<partition>-<topic id>``; a
topic name over 200 characters (Kafka allows 249) is cut and completed with a
hash of the whole name, so that the directory name stays within file system
limits.

Topic configs use Kafka's names and defaults (``retention.ms`` 7 days,
``retention.bytes`` -1 = unlimited, ``segment.bytes`` 1 GiB,
``max.message.bytes`` 1048588, ``cleanup.policy`` delete). Values may be given
as ints or as decimal strings (Kafka's admin API passes strings).

Replica assignment follows Kafka's rack-unaware ``AdminUtils`` scheme: the
brokers are sorted, partition ``p``'s preferred leader is
``brokers[(start + p) % n]`` and its followers sit at a shift from the leader
that grows by one every ``n`` partitions, so follower sets differ between
blocks and a dead broker's leadership spreads over several others. Each full
block of ``n`` partitions gives every broker exactly one leadership and ``rf``
replicas. Kafka's scheme can leave the last, partial block unbalanced (replica
counts differing by 2 or more), so raftka lays that block's replicas out as
consecutive runs of brokers and picks distinct leaders among them by bipartite
matching; overall both leaders and replicas per broker differ by at most one.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from raftka.node.errors import (
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidTopicConfig,
    InvalidTopicName,
)

__all__ = [
    "MAX_PARTITIONS",
    "TOPIC_CONFIG_BOUNDS",
    "TopicConfig",
    "assign_replicas",
    "parse_topic_configs",
    "partition_directory_name",
    "topic_directory_label",
    "validate_partition_count",
    "validate_replication_factor",
    "validate_topic_name",
]

_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
MAX_PARTITIONS = 10_000
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1

# Kafka config name -> (attribute, lowest, highest)
TOPIC_CONFIG_BOUNDS: dict[str, tuple[str, int, int]] = {
    "retention.ms": ("retention_ms", -1, _INT64_MAX),
    "retention.bytes": ("retention_bytes", -1, _INT64_MAX),
    "segment.bytes": ("segment_bytes", 1024, _INT32_MAX),
    "max.message.bytes": ("max_message_bytes", 1, 64 * 1024 * 1024),
}
_CLEANUP_POLICIES = ("delete",)


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a legal topic name, else raise ``InvalidTopicName``."""
    if not isinstance(name, str):
        raise InvalidTopicName(f"Topic name must be a string, got {type(name).__name__}.")
    if name in (".", ".."):
        raise InvalidTopicName(f"Topic name cannot be '{name}'.")
    if not _TOPIC_NAME.fullmatch(name):
        shown = name if len(name) <= 60 else name[:60] + "..."
        raise InvalidTopicName(
            f"Invalid topic name {shown!r} ({len(name)} characters): use 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'."
        )
    return name


_LABEL_MAX = 200  # + "-<partition>-<topic id>" stays under the usual 255-byte file name limit
_LABEL_HASH_CHARS = 16


def topic_directory_label(name: str) -> str:
    """The topic's part of its partition directory names: the name itself when short (so existing directories
    keep their names), else a prefix and a hash of the whole name ('~' never occurs in a topic name)."""
    if len(name) <= _LABEL_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_LABEL_HASH_CHARS]
    return f"{name[:_LABEL_MAX - _LABEL_HASH_CHARS - 1]}~{digest}"


def partition_directory_name(name: str, partition: int, topic_id: str) -> str:
    """``<topic label>-<partition>-<topic id>``: a partition replica's directory, bounded whatever the topic name."""
    return f"{topic_directory_label(name)}-{partition}-{topic_id}"


def validate_partition_count(count: object) -> int:
    if type(count) is not int or not 1 <= count <= MAX_PARTITIONS:
        raise InvalidPartitions(f"Number of partitions must be an integer from 1 to {MAX_PARTITIONS}, got {count!r}.")
    return count


def validate_replication_factor(rf: object, num_brokers: int) -> int:
    """``rf`` must be an integer from 1 to the number of (active) brokers.

    Any factor is allowed, even ones: a group of ``rf`` replicas needs a
    majority, ``rf // 2 + 1``, so it survives ``(rf - 1) // 2`` failures — 4
    replicas tolerate no more failures than 3 (and 2 none, like 1); they only
    hold more copies of the data.
    """
    if type(rf) is not int or rf < 1:
        raise InvalidReplicationFactor(f"Replication factor must be a positive integer, got {rf!r}.")
    if rf > num_brokers:
        raise InvalidReplicationFactor(
            f"Replication factor {rf} is larger than the number of available brokers ({num_brokers})."
        )
    return rf


@dataclass(frozen=True, slots=True)
class TopicConfig:
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    segment_bytes: int = 1024 * 1024 * 1024
    max_message_bytes: int = 1048588
    cleanup_policy: str = "delete"

    def to_kafka(self) -> dict[str, Any]:
        """Configs under their Kafka names, e.g. for ``GET /topics/{t}``."""
        out: dict[str, Any] = {name: getattr(self, attr) for name, (attr, _, _) in TOPIC_CONFIG_BOUNDS.items()}
        out["cleanup.policy"] = self.cleanup_policy
        return out


def _config_int(name: str, value: object) -> int:
    _, low, high = TOPIC_CONFIG_BOUNDS[name]
    if type(value) is int:
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value.strip()):
        number = int(value)
    else:
        raise InvalidTopicConfig(f"Topic config '{name}' must be an integer, got {value!r}.")
    if not low <= number <= high:
        raise InvalidTopicConfig(f"Topic config '{name}' must be between {low} and {high}, got {number}.")
    return number


def parse_topic_configs(raw: object, defaults: TopicConfig = TopicConfig()) -> TopicConfig:
    """Validate a ``{"retention.ms": ..., ...}`` mapping and merge it over ``defaults``."""
    if raw is None:
        return defaults
    if not isinstance(raw, Mapping):
        raise InvalidTopicConfig(f"Topic configs must be an object of name -> value, got {type(raw).__name__}.")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "cleanup.policy":
            if value not in _CLEANUP_POLICIES:
                raise InvalidTopicConfig(
                    f"Topic config 'cleanup.policy' {value!r} is not supported: only 'delete' is (no compaction yet)."
                )
            values["cleanup_policy"] = value
        elif name in TOPIC_CONFIG_BOUNDS:
            values[TOPIC_CONFIG_BOUNDS[name][0]] = _config_int(name, value)
        else:
            known = ", ".join([*TOPIC_CONFIG_BOUNDS, "cleanup.policy"])
            raise InvalidTopicConfig(f"Unknown topic config {name!r}; known configs: {known}.")
    return replace(defaults, **values)


def assign_replicas(
    broker_ids: Sequence[int],
    num_partitions: int,
    replication_factor: int,
    *,
    start_index: int | None = None,
) -> list[tuple[int, ...]]:
    """Replica lists per partition, preferred leader first (see the module docstring).

    ``start_index`` (default: random) rotates which broker leads partition 0;
    metadata commands must carry the result, not recompute it.
    """
    brokers = sorted(broker_ids)
    n = len(brokers)
    if n == 0:
        raise InvalidReplicationFactor("No brokers are available to host the topic.")
    if len(set(brokers)) != n:
        raise ValueError(f"broker ids must be unique, got {list(broker_ids)}")
    validate_partition_count(num_partitions)
    if type(replication_factor) is not int or replication_factor < 1:
        raise InvalidReplicationFactor(f"Replication factor must be a positive integer, got {replication_factor!r}.")
    if replication_factor > n:
        raise InvalidReplicationFactor(
            f"Replication factor {replication_factor} is larger than the number of available brokers ({n})."
        )
    start = random.randrange(n) if start_index is None else start_index % n
    rf = replication_factor
    full = num_partitions - num_partitions % n
    assignment = []
    for p in range(full):
        shift = start + p // n  # Kafka's nextReplicaShift: +1 for every block of n partitions
        first = (start + p) % n
        replicas = [first] + [(first + 1 + (shift + j) % (n - 1)) % n for j in range(rf - 1)]
        assignment.append(tuple(brokers[i] for i in replicas))
    assignment.extend(_assign_partial_block(brokers, num_partitions - full, rf, (start + full) % n))
    return assignment


def _assign_partial_block(brokers: list[int], count: int, rf: int, start: int) -> list[tuple[int, ...]]:
    """``count`` < n partitions: replicas as consecutive runs, distinct leaders by matching."""
    n = len(brokers)
    rows = [[(start + p * rf + j) % n for j in range(rf)] for p in range(count)]
    leader_of_row: dict[int, int] = {}
    row_of_leader: dict[int, int] = {}

    def augment(row: int, seen: set[int]) -> bool:  # Kuhn's augmenting path
        for candidate in rows[row]:
            if candidate in seen:
                continue
            seen.add(candidate)
            if candidate not in row_of_leader or augment(row_of_leader[candidate], seen):
                leader_of_row[row], row_of_leader[candidate] = candidate, row
                return True
        return False

    for row in range(count):
        # Hall's condition holds (each broker is in at most rf rows, each row has rf brokers),
        # so a distinct leader for every row always exists.
        if not augment(row, set()):
            raise AssertionError("no distinct leaders for partial block")
    result = []
    for row, members in enumerate(rows):
        leader = leader_of_row[row]
        result.append(tuple(brokers[i] for i in [leader, *(m for m in members if m != leader)]))
    return result
