"""Placement rules (raftka.node.cluster.placement): drains, replication-factor changes, rebalancing, voter seats."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.node.cluster.placement import (PlacementError, choose_metadata_voters, drain_plan, leader_counts,
                                           metadata_voter_count, pick, rebalance_plan, replica_counts,
                                           replication_factor_plan)


@st.composite
def clusters(draw, min_brokers=1, racks=True):
    """(assignment, brokers, racks): partitions of a few topics spread over 1..7 brokers."""
    brokers = list(range(1, draw(st.integers(min_brokers, 7)) + 1))
    rack_names = draw(st.sampled_from([None, ["a", "b"], ["a", "b", "c"]])) if racks else None
    rack_of = {b: (rack_names[b % len(rack_names)] if rack_names else None) for b in brokers}
    assignment = {}
    for t in range(draw(st.integers(1, 3))):
        for p in range(draw(st.integers(1, 6))):
            rf = draw(st.integers(1, len(brokers)))
            assignment[(f"t{t}", p)] = draw(st.permutations(brokers))[:rf]
    return assignment, brokers, rack_of


def test_pick_prefers_unused_racks_then_least_loaded_then_lowest_id():
    loads = replica_counts({("t", 0): [1, 2], ("t", 1): [1]}, [1, 2, 3, 4])
    racks = {1: "a", 2: "a", 3: "b", 4: "b"}
    assert pick(1, [1, 2, 3, 4], loads, racks, keep=[1], what="t/2") == [3]  # rack b is unused; 3 < 4
    assert pick(1, [2, 3], replica_counts({("t", 0): [2, 3, 3]}, [2, 3]), {}, keep=[], what="t/3") == [2]
    with pytest.raises(PlacementError, match="not enough brokers"):
        pick(2, [1, 2], loads, racks, keep=[1], what="t/4")


@settings(max_examples=200, deadline=None)
@given(clusters(min_brokers=2), st.data())
def test_a_drain_moves_every_replica_off_the_broker_and_keeps_the_factor(cluster, data):
    assignment, brokers, racks = cluster
    leaving = data.draw(st.sampled_from(brokers))
    pool = [b for b in brokers if b != leaving]
    try:
        plan = drain_plan(assignment, leaving, pool, racks)
    except PlacementError:
        assert any(leaving in r and len(r) > len(pool) for r in assignment.values())
        return
    assert set(plan) == {k for k, r in assignment.items() if leaving in r}
    for key, target in plan.items():
        before = assignment[key]
        assert leaving not in target and len(target) == len(before) == len(set(target))
        assert target[:-1] == [b for b in before if b != leaving]  # kept replicas keep their order (and leader)


@settings(max_examples=200, deadline=None)
@given(clusters(), st.data())
def test_a_replication_factor_plan_gives_every_partition_that_many_distinct_replicas(cluster, data):
    assignment, brokers, racks = cluster
    factor = data.draw(st.integers(1, len(brokers)))
    topic = {k: r for k, r in assignment.items() if k[0] == "t0"}
    plan = replication_factor_plan(topic, factor, brokers, racks, assignment)
    for key, before in topic.items():
        after = plan.get(key, before)
        assert len(after) == factor == len(set(after))
        assert after[0] == before[0]  # the preferred leader stays
        assert set(after) >= set(before) or set(after) <= set(before)  # only adds, or only removes


def test_shrinking_drops_replicas_on_brokers_that_take_none_first():
    plan = replication_factor_plan({("t", 0): [1, 2, 3]}, 2, [1, 2], {}, {("t", 0): [1, 2, 3]})
    assert plan == {("t", 0): [1, 2]}  # broker 3 is draining: its replica goes


@settings(max_examples=500, deadline=None)
@given(clusters(racks=False))
def test_rebalancing_spreads_replicas_within_one_and_leaves_sizes_alone(cluster):
    assignment, brokers, racks = cluster
    plan = rebalance_plan(assignment, brokers, racks)
    after = {**assignment, **plan}
    for key, replicas in after.items():
        assert len(replicas) == len(assignment[key]) == len(set(replicas))
    counts = replica_counts(after, brokers)
    assert max(counts.values()) - min(counts.values()) <= 1
    leaders = leader_counts(after, brokers)
    assert max(leaders.values()) - min(leaders.values()) <= max(1, max(leader_counts(assignment, brokers).values())
                                                                 - min(leader_counts(assignment, brokers).values()))


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_rebalancing_never_puts_two_replicas_on_one_rack_when_another_is_free(cluster):
    assignment, brokers, racks = cluster
    after = {**assignment, **rebalance_plan(assignment, brokers, racks)}
    all_racks = {r for r in racks.values() if r}
    for key, replicas in after.items():
        used = [racks[b] for b in replicas if racks[b]]
        if len(used) != len(set(used)):  # a shared rack: only because every rack is taken
            assert set(used) == all_racks or len(set(used)) >= len(all_racks), (key, replicas, racks)


def test_rebalancing_leaves_moving_partitions_and_brokers_outside_the_candidates_alone():
    assignment = {("t", 0): [1, 2], ("t", 1): [1, 2], ("t", 2): [1, 2], ("t", 3): [1, 3]}
    plan = rebalance_plan(assignment, [1, 2, 3, 4], {}, moving=[("t", 0)])
    assert ("t", 0) not in plan
    after = {**assignment, **plan}
    assert max(replica_counts(after, [1, 2, 3, 4]).values()) - min(replica_counts(after, [1, 2, 3, 4]).values()) <= 1
    assert rebalance_plan({("t", 0): [5, 1]}, [1, 2], {}) == {}  # broker 5 is draining: its drain moves it


def test_metadata_voter_count_is_auto_three_or_five_and_capped():
    assert [metadata_voter_count(None, n) for n in (1, 2, 3, 4, 5, 7)] == [1, 2, 3, 3, 5, 5]
    assert metadata_voter_count(1, 7) == 1 and metadata_voter_count(7, 4) == 4


def test_metadata_voters_keep_their_seats_and_free_ones_go_to_live_brokers_on_new_racks():
    assert choose_metadata_voters([1, 2, 3], [1, 2, 3, 4, 5], 3) == [1, 2, 3]
    assert choose_metadata_voters([1, 2, 3], [2, 3, 4, 5], 3, alive=[2, 3, 5]) == [2, 3, 5]  # 1 drains; 4 is down
    racks = {1: "a", 2: "a", 3: "b", 4: "a", 5: "c"}
    assert choose_metadata_voters([1], [1, 2, 3, 4, 5], 3, alive=[1, 2, 3, 4, 5], racks=racks) == [1, 3, 5]
    assert choose_metadata_voters([1, 2, 3, 4, 5], [1, 2, 3, 4], 3) == [1, 2, 3]
