"""Topic names, topic configs and replica assignment (raftka.node.cluster.topics)."""

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftka.node.cluster.topics import (
    TopicConfig,
    assign_replicas,
    parse_topic_configs,
    partition_directory_name,
    topic_directory_label,
    validate_partition_count,
    validate_replication_factor,
    validate_topic_name,
)
from raftka.node.errors import InvalidPartitions, InvalidReplicationFactor, InvalidTopicConfig, InvalidTopicName

# --- names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "orders", "Orders.v2", "my_topic-1", "...", "x" * 249, "_", "-", "a..b"])
def test_legal_topic_names(name):
    assert validate_topic_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 250, "a b", "a/b", "ä", "topic!", "a\n", 3, None, b"abc"])
def test_illegal_topic_names(name):
    with pytest.raises(InvalidTopicName) as info:
        validate_topic_name(name)
    assert info.value.error_code == 42208


def test_long_illegal_name_is_shortened_in_message():
    with pytest.raises(InvalidTopicName) as info:
        validate_topic_name("y" * 300)
    assert "300 characters" in info.value.message and len(info.value.message) < 200


@given(st.text(max_size=260))
def test_name_validation_agrees_with_the_rule(name):
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    legal = 1 <= len(name) <= 249 and set(name) <= allowed and name not in (".", "..")
    if legal:
        assert validate_topic_name(name) == name
    else:
        with pytest.raises(InvalidTopicName):
            validate_topic_name(name)


legal_names = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=249)


@given(legal_names, st.integers(0, 9_999))
def test_partition_directory_names_fit_a_file_name_whatever_the_topic_name(name, partition):
    assert len(partition_directory_name(name, partition, "0123456789ab").encode()) <= 255


@pytest.mark.parametrize("name", ["orders", "my-topic.v2", "x" * 200])
def test_short_topic_names_keep_their_directory_names(name):
    assert partition_directory_name(name, 3, "abc123") == f"{name}-3-abc123"


def test_long_topic_names_differing_only_at_the_end_get_different_directories():
    a, b = "x" * 248 + "a", "x" * 248 + "b"
    assert topic_directory_label(a) != topic_directory_label(b)
    assert "~" in topic_directory_label(a)  # never a legal topic name: cannot collide with a short one


# --- partitions / replication factor -------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 10_001, 1.0, "3", True, None])
def test_bad_partition_counts(bad):
    with pytest.raises(InvalidPartitions):
        validate_partition_count(bad)


def test_partition_count_bounds():
    assert validate_partition_count(1) == 1
    assert validate_partition_count(10_000) == 10_000


def test_replication_factor_rules():
    assert validate_replication_factor(3, 3) == 3
    assert validate_replication_factor(1, 1) == 1
    assert validate_replication_factor(2, 5) == 2  # even factors are allowed (they tolerate no more failures)
    assert validate_replication_factor(4, 4) == 4
    with pytest.raises(InvalidReplicationFactor, match="positive integer"):
        validate_replication_factor(0, 5)
    with pytest.raises(InvalidReplicationFactor, match="larger than the number of available brokers \\(2\\)"):
        validate_replication_factor(3, 2)
    with pytest.raises(InvalidReplicationFactor):
        validate_replication_factor(True, 5)


# --- configs -------------------------------------------------------------------


def test_defaults_are_kafkas():
    assert TopicConfig().to_kafka() == {
        "retention.ms": 604800000,
        "retention.bytes": -1,
        "segment.bytes": 1073741824,
        "max.message.bytes": 1048588,
        "cleanup.policy": "delete",
    }


def test_configs_merge_over_defaults_and_accept_strings():
    defaults = TopicConfig(segment_bytes=4096)
    cfg = parse_topic_configs({"retention.ms": "60000", "retention.bytes": 10_000}, defaults)
    assert cfg == TopicConfig(retention_ms=60000, retention_bytes=10_000, segment_bytes=4096)
    assert parse_topic_configs(None, defaults) is defaults
    assert parse_topic_configs({}, defaults) == defaults


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"retension.ms": 1}, "Unknown topic config 'retension.ms'"),
        ({"retention.ms": -2}, "between -1 and"),
        ({"segment.bytes": 100}, "'segment.bytes' must be between 1024"),
        ({"max.message.bytes": 0}, "'max.message.bytes' must be between 1"),
        ({"max.message.bytes": 2**30}, "between 1 and 67108864"),
        ({"retention.ms": 1.5}, "must be an integer"),
        ({"retention.ms": "1e3"}, "must be an integer"),
        ({"retention.ms": True}, "must be an integer"),
        ({"retention.ms": None}, "must be an integer"),
        ({"cleanup.policy": "compact"}, "only 'delete'"),
        ({"cleanup.policy": ["delete"]}, "only 'delete'"),
        (["retention.ms"], "must be an object"),
    ],
)
def test_bad_configs(raw, match):
    with pytest.raises(InvalidTopicConfig, match=match):
        parse_topic_configs(raw)


# --- assignment ------------------------------------------------------------------


def spread(values: Counter, brokers) -> int:
    counts = [values.get(b, 0) for b in brokers]
    return max(counts) - min(counts)


@given(
    brokers=st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=9, unique=True),
    partitions=st.integers(min_value=1, max_value=60),
    data=st.data(),
)
def test_assignment_is_balanced_and_valid(brokers, partitions, data):
    rf = data.draw(st.integers(min_value=1, max_value=len(brokers)), label="rf")
    start = data.draw(st.integers(min_value=0, max_value=50), label="start")
    assignment = assign_replicas(brokers, partitions, rf, start_index=start)
    assert len(assignment) == partitions
    for replicas in assignment:
        assert len(replicas) == rf
        assert len(set(replicas)) == rf
        assert set(replicas) <= set(brokers)
    leaders = Counter(r[0] for r in assignment)
    replicas = Counter(b for r in assignment for b in r)
    assert spread(leaders, brokers) <= 1
    assert spread(replicas, brokers) <= 1


def test_full_blocks_follow_kafka_admin_utils():
    # The worked example in the doc comment of Kafka's AdminUtils.assignReplicasToBrokers
    # (5 brokers, 10 partitions, rf 3, start index and first shift 0).
    assert assign_replicas([0, 1, 2, 3, 4], 10, 3, start_index=0) == [
        (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 0), (4, 0, 1),
        (0, 2, 3), (1, 3, 4), (2, 4, 0), (3, 0, 1), (4, 1, 2),
    ]  # fmt: skip


def test_partial_block_that_kafka_would_unbalance():
    # Kafka's scheme gives brokers 0..4 replica counts 1,2,2,1,0 here.
    assignment = assign_replicas([0, 1, 2, 3, 4], 2, 3, start_index=0)
    assert sorted(Counter(b for r in assignment for b in r).values()) == [1, 1, 1, 1, 2]
    assert len({r[0] for r in assignment}) == 2


def test_leaders_rotate_with_start_index_and_broker_order_does_not_matter():
    assert [r[0] for r in assign_replicas([3, 1, 2], 3, 3, start_index=1)] == [2, 3, 1]
    assert assign_replicas([3, 1, 2], 7, 3, start_index=4) == assign_replicas([1, 2, 3], 7, 3, start_index=4)


def test_follower_sets_vary_between_blocks():
    assignment = assign_replicas(list(range(6)), 30, 3, start_index=0)
    led_by_0 = [r for r in assignment if r[0] == 0]
    assert len({r[1] for r in led_by_0}) > 1


def test_random_start_is_valid():
    assignment = assign_replicas([1, 2, 3], 4, 3)
    assert all(sorted(r) == [1, 2, 3] for r in assignment)


@pytest.mark.parametrize(
    ("brokers", "partitions", "rf", "error"),
    [
        ([1, 2], 3, 3, InvalidReplicationFactor),
        ([], 3, 1, InvalidReplicationFactor),
        ([1, 2, 3], 0, 1, InvalidPartitions),
        ([1, 2, 3], 3, 0, InvalidReplicationFactor),
        ([1, 1, 2], 3, 1, ValueError),
    ],
)
def test_assignment_errors(brokers, partitions, rf, error):
    with pytest.raises(error):
        assign_replicas(brokers, partitions, rf, start_index=0)
