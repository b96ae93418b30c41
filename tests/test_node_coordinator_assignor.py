"""Partition assignment (raftka.node.groups.assignor): exact cover, subscription respect, balance, determinism."""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from raftka.node.groups.assignor import assign

TOPICS = ["a", "b", "c", "d"]

partition_counts = st.dictionaries(st.sampled_from(TOPICS), st.integers(0, 12), max_size=4)
subscriptions = st.dictionaries(
    st.text("mnopqrstuvwxyz0123456789-", min_size=1, max_size=8),
    st.sets(st.sampled_from([*TOPICS, "missing"]), min_size=1, max_size=4),
    max_size=9,
)


@given(subscriptions, partition_counts)
def test_every_partition_goes_to_exactly_one_subscribed_member(subs, counts):
    plan = assign(subs, counts)
    assert plan.keys() == subs.keys()
    subscribed = set().union(*subs.values()) if subs else set()
    expected = sorted((t, p) for t, n in counts.items() if t in subscribed for p in range(n))
    assert sorted(tp for owned in plan.values() for tp in owned) == expected
    for member, owned in plan.items():
        assert all(topic in subs[member] for topic, _ in owned)
        assert owned == sorted(owned)


@given(subscriptions, partition_counts)
def test_members_with_the_same_subscription_differ_by_at_most_one(subs, counts):
    plan = assign(subs, counts)
    by_subscription = defaultdict(list)
    for member, topics in subs.items():
        by_subscription[frozenset(topics)].append(len(plan[member]))
    for loads in by_subscription.values():
        assert max(loads) - min(loads) <= 1


@given(st.integers(1, 9), st.dictionaries(st.sampled_from(TOPICS), st.integers(0, 12), min_size=1))
def test_identical_subscriptions_are_round_robin_over_sorted_members(members, counts):
    subs = {f"m{i}": set(counts) for i in range(members)}
    plan = assign(subs, counts)
    ordered = sorted((t, p) for t, n in counts.items() for p in range(n))
    names = sorted(subs)
    assert all(plan[names[i % members]].count(tp) == 1 for i, tp in enumerate(ordered))
    total = len(ordered)
    assert sorted(len(owned) for owned in plan.values()) == sorted(
        total // members + (1 if i < total % members else 0) for i in range(members)
    )


@given(subscriptions, partition_counts, st.randoms(use_true_random=False))
def test_assignment_is_deterministic_whatever_the_input_order(subs, counts, rng: random.Random):
    shuffled_members = list(subs.items())
    rng.shuffle(shuffled_members)
    shuffled_counts = list(counts.items())
    rng.shuffle(shuffled_counts)
    again = assign({m: rng.sample(sorted(t), len(t)) for m, t in shuffled_members}, dict(shuffled_counts))
    assert again == assign(subs, counts)


def test_members_beyond_the_partition_count_get_nothing():
    plan = assign({"c": ["t"], "a": ["t"], "b": ["t"]}, {"t": 2})
    assert plan == {"a": [("t", 0)], "b": [("t", 1)], "c": []}


def test_topics_without_subscribers_or_partitions_are_ignored():
    assert assign({"a": ["t", "new"]}, {"t": 1, "other": 3}) == {"a": [("t", 0)]}
    assert assign({}, {"t": 3}) == {}
