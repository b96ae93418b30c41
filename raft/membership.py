"""Who belongs to a Raft group, and which membership changes are safe: pure data and rules.

A `Membership` is the group's configuration: **voters** (they elect leaders and
count toward every quorum) and **learners** (they receive entries and
snapshots like any follower but never vote, never campaign and never count).
Members are *replica ids* (see `replica`): a broker that lost its disk comes
back as a new replica id, so nothing it says can be taken for its old self.

Changes follow the dissertation's **one server at a time** rule (Ongaro §4.1)
rather than joint consensus: a step may add or remove at most one voter, and
any number of learners.  Any two majorities of configurations that differ by
one voter overlap, so a step needs no intermediate joint configuration.  We
chose it over etcd's joint consensus (ConfChangeV2) because every move raftka
makes is a sequence of such steps anyway — add a learner, promote it once it
has caught up, remove the old voter — and one rule is easier to get right and
to test than two.  A new voter must already be a learner (`change` refuses a
voter that appears from nowhere), so a group never waits on an empty replica.

The rules that make single-server changes safe live in `core`: a
configuration takes effect when its entry is appended (not when committed); a
leader proposes a change only after it has committed an entry of its own term
and while no other change is uncommitted.

`change(current, target)` validates one step, in the shape of etcd's
`confchange.Changer`; `check_invariants` is run on both ends.  Configurations
travel and persist as a small JSON document (`encode` / `decode`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson


class MembershipError(ValueError):
    """A configuration, or a change between two, that Raft cannot accept safely."""


@dataclass(frozen=True)
class Membership:
    voters: frozenset[int]
    learners: frozenset[int] = frozenset()

    @classmethod
    def of(cls, voters: Iterable[int], learners: Iterable[int] = ()) -> Membership:
        membership = cls(frozenset(voters), frozenset(learners))
        check_invariants(membership)
        return membership

    @property
    def members(self) -> frozenset[int]:
        return self.voters | self.learners

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def is_voter(self, replica: int) -> bool:
        return replica in self.voters

    def has_quorum(self, replicas: Iterable[int]) -> bool:
        """Do `replicas` include a majority of the voters?"""
        return len(self.voters.intersection(replicas)) >= self.quorum

    def quorum_index(self, match: Mapping[int, int]) -> int:
        """The highest index that a majority of voters hold (`match`: voter -> index; absent = 0)."""
        if not self.voters:
            return 0
        indexes = sorted((match.get(v, 0) for v in self.voters), reverse=True)
        return indexes[self.quorum - 1]

    def encode(self) -> bytes:
        return orjson.dumps({"voters": sorted(self.voters), "learners": sorted(self.learners)})

    @classmethod
    def decode(cls, data: bytes) -> Membership:
        try:
            doc = orjson.loads(data)
            voters, learners = doc["voters"], doc.get("learners", [])
            if not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in [*voters, *learners]):
                raise MembershipError("replica ids must be positive integers")
            return cls.of(voters, learners)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise MembershipError(f"malformed membership {bytes(data)[:80]!r}: {exc}") from None

    def describe(self) -> str:
        learners = f" learners {sorted(self.learners)}" if self.learners else ""
        return f"voters {sorted(self.voters)}{learners}"


def check_invariants(membership: Membership) -> None:
    if not membership.voters:
        raise MembershipError("a group needs at least one voter")
    both = membership.voters & membership.learners
    if both:
        raise MembershipError(f"replicas {sorted(both)} cannot be both voter and learner")


def change(current: Membership, target: Membership) -> Membership:
    """Validate one membership step; returns `target` or raises MembershipError saying why."""
    check_invariants(current)
    check_invariants(target)
    added = target.voters - current.voters
    removed = current.voters - target.voters
    if len(added) + len(removed) > 1:
        raise MembershipError(f"one voter at a time: {current.describe()} -> {target.describe()} "
                              f"adds {sorted(added)} and removes {sorted(removed)}")
    if added and not added <= current.learners:
        raise MembershipError(f"replica {min(added)} must join as a learner and catch up before it votes")
    if target == current:
        raise MembershipError(f"membership is already {current.describe()}")
    return target


# Builders for the usual steps (each result still goes through `change`).

def add_learner(m: Membership, replica: int) -> Membership:
    if replica in m.members:
        raise MembershipError(f"replica {replica} is already a member ({m.describe()})")
    return Membership(m.voters, m.learners | {replica})


def promote(m: Membership, replica: int) -> Membership:
    if replica not in m.learners:
        raise MembershipError(f"replica {replica} is not a learner ({m.describe()})")
    return Membership(m.voters | {replica}, m.learners - {replica})


def remove(m: Membership, replica: int) -> Membership:
    if replica not in m.members:
        raise MembershipError(f"replica {replica} is not a member ({m.describe()})")
    return Membership(m.voters - {replica}, m.learners - {replica})


def replace_with_learner(m: Membership, old: int, new: int) -> Membership:
    """Drop voter `old` and add `new` as a learner in one step (a replica that lost its disk)."""
    return add_learner(remove(m, old), new)


def demote(m: Membership, replica: int) -> Membership:
    """Voter `replica` keeps following as a learner (one voter fewer)."""
    if replica not in m.voters:
        raise MembershipError(f"replica {replica} is not a voter ({m.describe()})")
    return Membership(m.voters - {replica}, m.learners | {replica})


def next_step(current: Membership, desired: frozenset[int], caught_up: frozenset[int],
              learners: frozenset[int] = frozenset()) -> Membership | None:
    """The next single step from `current` toward voters `desired` (and learners `learners`), or None when there.

    `caught_up`: learners that hold every committed entry.  `learners`: replicas
    that should follow without a vote (the metadata group's other brokers); any
    other learner is removed.  Replica ids name their broker
    (`replica.broker_of`); a member whose broker is wanted under another replica
    id came back with an empty disk: it is lost, so it is swapped for its
    successor (as a learner) first — unless it is the only voter, whose group
    cannot move without it.  Otherwise a move keeps the group's size: learners
    are added and promoted before voters are removed (or demoted, when they
    should stay on as learners).
    """
    from .replica import broker_of

    wanted = desired | learners
    successor = {broker_of(r): r for r in wanted}
    for r in sorted(current.learners - wanted):
        return remove(current, r)
    for r in sorted(current.voters):
        new = successor.get(broker_of(r))
        if new is not None and new != r and new not in current.members and len(current.voters) > 1:
            return replace_with_learner(current, r, new)
    for r in sorted(current.learners & desired & caught_up):
        return promote(current, r)
    for r in sorted(desired - current.members):
        return add_learner(current, r)
    if desired <= current.voters:
        for r in sorted(current.voters - desired):
            return demote(current, r) if r in learners else remove(current, r)
    for r in sorted(learners - current.members):
        return add_learner(current, r)
    return None
