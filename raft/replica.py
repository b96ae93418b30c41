"""Replica ids: a member of a Raft group is one *incarnation* of one broker.

A broker's data directory gets an incarnation when it is first initialised:
0 for the directories that bootstrapped the cluster together, a random
non-zero 32-bit number for a directory created later (a disk that was lost
and replaced, compare KRaft's directory id and Redpanda's node UUID).  Raft
groups name their members by replica id = ``incarnation << 31 | broker_id``,
so a bootstrap replica's id is just its broker id, and a broker that comes
back with an empty disk is a *different* member: it never votes or
acknowledges as the replica whose state it lost (Raft dissertation §4.2.2 on
storage loss), it can only be added back as a learner and catch up.
"""

from __future__ import annotations

import random

from . import canary

BROKER_BITS = 31
MAX_BROKER_ID = (1 << BROKER_BITS) - 1
MAX_INCARNATION = (1 << 32) - 1


def replica_id(broker: int, incarnation: int) -> int:
    if not 0 < broker <= MAX_BROKER_ID or not 0 <= incarnation <= MAX_INCARNATION:
        raise ValueError(f"no replica id for broker {broker} incarnation {incarnation}")
    return incarnation << BROKER_BITS | broker


def broker_of(replica: int) -> int:
    return replica & MAX_BROKER_ID


def incarnation_of(replica: int) -> int:
    return replica >> BROKER_BITS


def new_incarnation(rng: random.Random | None = None) -> int:
    """A fresh incarnation for a data directory created after the cluster formed."""
    return (rng or random.SystemRandom()).randint(1, MAX_INCARNATION)


def format_replica(replica: int) -> str:
    """'3' for a bootstrap replica of broker 3, '3.1f2e3d4c' for a later incarnation."""
    incarnation = incarnation_of(replica)
    return str(broker_of(replica)) if incarnation == 0 else f"{broker_of(replica)}.{incarnation:08x}"


def incarnation_for_empty_data_dir(cluster_formed: bool, rng: random.Random | None = None) -> int:
    """The incarnation a broker takes when it finds its data directory empty.

    0 only while the cluster has never formed (every broker bootstraps at 0
    together); once it has, an empty directory means the broker's state was
    lost, and it must come back as somebody new.
    """
    if not cluster_formed or canary.enabled("wiped-node-votes"):
        return 0
    return new_incarnation(rng)
