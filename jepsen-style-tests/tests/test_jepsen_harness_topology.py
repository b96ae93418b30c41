"""Fault shapes (grudges) and targets, without any network: properties of every shape
for every cluster size, layers, JSON round trip, and target fallbacks."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jepsen_harness_support import grudge_from_json

from jepsen_raftka import nemesis as nm
from jepsen_raftka import topology as t
from jepsen_raftka.topology import CLIENT

sizes = st.integers(min_value=3, max_value=9)
seeds = st.integers(min_value=0, max_value=2**32)


def nodes_of(n):
    return tuple(range(1, n + 1))


def talks(grudge, nodes):
    return {a: {b for b in nodes if b != a and t.can_talk(grudge, a, b)} for a in nodes}


def assert_symmetric(grudge):
    for dst, srcs in grudge.items():
        for src in srcs:
            assert dst in grudge.get(src, ()), (dst, src)


@given(sizes, seeds)
def test_halves_split_into_a_minority_and_a_majority(n, seed):
    nodes = nodes_of(n)
    grudge = t.halves(nodes, random.Random(seed))
    assert_symmetric(grudge)
    sides = {frozenset({a} | peers) for a, peers in talks(grudge, nodes).items()}
    assert sorted(map(len, sides)) == [n // 2, n - n // 2]
    assert frozenset().union(*sides) == frozenset(nodes)


@given(sizes, seeds)
def test_bridge_keeps_one_node_connected_to_two_separated_halves(n, seed):
    nodes = nodes_of(n)
    grudge = t.bridge(nodes, random.Random(seed))
    assert_symmetric(grudge)
    view = talks(grudge, nodes)
    (middle,) = [a for a in nodes if len(view[a]) == n - 1]
    sides = {frozenset({a} | view[a]) - {middle} for a in nodes if a != middle}
    assert len(sides) == 2 and sum(map(len, sides)) == n - 1
    assert abs(len(min(sides, key=len)) - len(max(sides, key=len))) <= 1


@given(st.integers(min_value=4, max_value=9), seeds)
def test_majorities_ring_gives_every_node_its_own_majority(n, seed):
    nodes = nodes_of(n)
    grudge = t.majorities_ring(nodes, random.Random(seed))
    assert_symmetric(grudge)
    visible = [frozenset({a} | peers) for a, peers in talks(grudge, nodes).items()]
    assert all(len(v) >= n // 2 + 1 for v in visible)
    assert all(len(v) < n for v in visible)  # a real fault: nobody sees everyone
    assert len(set(visible)) == n


def test_shapes_refuse_clusters_too_small_for_them():
    with pytest.raises(ValueError, match="bridge"):
        t.bridge((1, 2), random.Random(0))
    with pytest.raises(ValueError, match="ring"):
        t.majorities_ring((1, 2, 3), random.Random(0))
    with pytest.raises(ValueError, match="unknown nodes"):
        t.isolate((1, 2, 3), [4])


def test_one_way_drops_one_direction_but_breaks_exchanges_both_ways():
    grudge = t.one_way([1], [2, 3])
    assert t.drops(grudge, 1, 2) and not t.drops(grudge, 2, 1)
    assert not t.can_talk(grudge, 1, 2) and not t.can_talk(grudge, 2, 1)
    assert t.can_talk(grudge, 2, 3)


def test_client_isolation_touches_only_client_links():
    grudge = t.isolate_from_client([2])
    assert grudge == {2: {CLIENT}, CLIENT: {2}}
    assert t.can_talk(grudge, 1, 2) and t.can_talk(grudge, CLIENT, 1) and not t.can_talk(grudge, CLIENT, 2)


def test_layers_combine_and_clear_independently():
    layers = t.GrudgeLayers()
    layers.set("partition", t.isolate((1, 2, 3), [1]))
    layers.set("client", t.isolate_from_client([3]))
    assert layers.combined == t.union([t.isolate((1, 2, 3), [1]), t.isolate_from_client([3])])
    layers.clear("partition")
    assert layers.combined == t.isolate_from_client([3])
    layers.clear()
    assert layers.combined == {}


@given(sizes, seeds)
def test_json_round_trip(n, seed):
    grudge = t.union([t.halves(nodes_of(n), random.Random(seed)), t.isolate_from_client([1])])
    assert grudge_from_json(t.to_json(grudge)) == grudge


@given(sizes, seeds)
def test_random_targets_have_their_sizes(n, seed):
    nodes, rng = nodes_of(n), random.Random(seed)
    assert len(nm.one().choose(nodes, rng)[0]) == 1
    minority, _ = nm.minority().choose(nodes, rng)
    majority, _ = nm.majority().choose(nodes, rng)
    assert 1 <= len(minority) < n / 2 < len(majority) and set(minority) | set(majority) <= set(nodes)
    assert nm.all_nodes().choose(nodes, rng)[0] == list(nodes)


def test_callback_target_falls_back_to_a_random_node_and_says_so():
    nodes, rng = (1, 2, 3), random.Random(0)
    assert nm.chosen_by("leader", lambda: 2).choose(nodes, rng) == ([2], "leader")
    assert nm.chosen_by("leaders", lambda: [1, 3]).choose(nodes, rng) == ([1, 3], "leaders")

    def broken():
        raise ConnectionError("no metadata")

    for callback in (lambda: None, lambda: 7, broken):
        chosen, description = nm.chosen_by("leader", callback).choose(nodes, rng)
        assert len(chosen) == 1 and chosen[0] in nodes and "random instead" in description
