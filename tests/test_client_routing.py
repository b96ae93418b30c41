"""Partition choice: explicit, keyed (Kafka murmur2 vectors), sticky spreading of null keys."""

import random
from collections import Counter

import pytest

from raftka.client.errors import PartitionNotFoundError
from raftka.client.routing import PartitionChooser

KAFKA_VECTORS_1000 = {b"": 681, b"a": 524, b"ab": 434, b"abc": 107, b"123456789": 566}


@pytest.mark.parametrize("key, expected", KAFKA_VECTORS_1000.items())
def test_keyed_records_land_where_kafka_puts_them(key, expected):
    assert PartitionChooser(1000).choose("t", key, None, 1000, 10) == expected


def test_same_key_always_same_partition_regardless_of_size_or_history():
    chooser = PartitionChooser(100, random.Random(3))
    first = chooser.choose("t", b"user-42", None, 12, 10)
    for size in (1, 10_000, 5):
        chooser.choose("t", None, None, 12, size)  # keyless traffic in between
        assert chooser.choose("t", b"user-42", None, 12, size) == first


def test_explicit_partition_wins_and_is_checked():
    chooser = PartitionChooser(100)
    assert chooser.choose("t", b"k", 3, 4, 10) == 3
    with pytest.raises(PartitionNotFoundError, match="has 4 partition"):
        chooser.choose("t", b"k", 4, 4, 10)


def test_null_keys_stick_to_a_partition_for_about_stick_bytes_then_move():
    chooser = PartitionChooser(stick_bytes=1000, rng=random.Random(7))
    picks = [chooser.choose("t", None, None, 8, 100) for _ in range(40)]
    runs = [picks[i : i + 10] for i in range(0, 40, 10)]
    for run in runs:
        assert len(set(run)) == 1  # 10 x 100 bytes = one stick on one partition
    for before, after in zip(runs, runs[1:]):
        assert before[0] != after[0]  # the next sticky partition is a different one


def test_null_keys_spread_evenly_over_all_partitions():
    chooser = PartitionChooser(stick_bytes=1000, rng=random.Random(11))
    counts = Counter(chooser.choose("t", None, None, 6, 100) for _ in range(60_000))
    assert set(counts) == set(range(6))
    assert max(counts.values()) < 1.25 * min(counts.values())


def test_sticky_state_is_per_topic_and_survives_partition_growth():
    chooser = PartitionChooser(stick_bytes=10_000, rng=random.Random(5))
    a = chooser.choose("a", None, None, 2, 10)
    assert chooser.choose("a", None, None, 4, 10) == a  # grew from 2 to 4: still a valid partition
    assert 0 <= chooser.choose("b", None, None, 1, 10) < 1


def test_single_partition_topics_always_get_partition_zero():
    chooser = PartitionChooser(stick_bytes=10)
    assert {chooser.choose("t", None, None, 1, 100) for _ in range(20)} == {0}
