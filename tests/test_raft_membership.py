"""Membership changes, learners and disk loss in the pure Raft core (specs on the simulated network)."""

import contextlib

import pytest
from hypothesis import given, settings, strategies as st

from raftka.raft import canary
from raftka.raft.core import MembershipChangeError, NotLeaderError, Role
from raftka.raft.membership import (Membership, MembershipError, add_learner, change, next_step, promote, remove,
                                    replace_with_learner)
from raftka.raft.replica import broker_of, format_replica, incarnation_of, replica_id

from raftsim import CONFIG_MARK, SafetyViolation, SimCluster


def elect(c: SimCluster, ticks=100):
    for _ in range(ticks):
        c.run(1)
        if c.leader() is not None:
            return c.leader()
    raise AssertionError("no leader elected")


def commit_values(c: SimCluster, count: int):
    leader = c.leader()
    values = [c.propose(leader) for _ in range(count)]
    c.run(5)
    return values


def applied_data(c: SimCluster, i):
    return [d for _, d in c.replicas[i].sm.applied if d and not d.startswith(CONFIG_MARK)]


def add_spare(c: SimCluster, rid: int) -> int:
    """Start an empty replica the group does not know yet (as the broker hosts a new one)."""
    c.replicas[rid] = c.new_replica(rid, c.initial)
    c.pending[rid] = {}
    return rid


def settle(c: SimCluster, ticks=20):
    c.run(ticks)
    return c.leader()


@pytest.fixture
def mutant():
    """Switch on test-only defects of raft.canary (canary.MUTANTS) in this process until the test ends."""
    with contextlib.ExitStack() as switched:
        yield lambda name: switched.enter_context(canary.mutant(name))


# ------------------------------------------------------------------- rules

def test_one_voter_at_a_time_and_voters_come_from_learners():
    m = Membership.of([1, 2, 3])
    assert change(m, add_learner(m, 4)) == Membership.of([1, 2, 3], [4])
    with pytest.raises(MembershipError, match="learner"):
        change(m, Membership.of([1, 2, 3, 4]))
    with pytest.raises(MembershipError, match="one voter at a time"):
        change(Membership.of([1, 2, 3], [4, 5]), Membership.of([1, 2, 3, 4, 5]))
    with pytest.raises(MembershipError, match="one voter at a time"):
        change(Membership.of([1, 2, 3], [4]), Membership.of([1, 2, 4]))
    assert change(m, replace_with_learner(m, 3, 7)) == Membership.of([1, 2], [7])
    with pytest.raises(MembershipError, match="at least one voter"):
        change(Membership.of([1]), Membership(frozenset(), frozenset()))
    with pytest.raises(MembershipError):
        Membership.decode(b'{"voters": [1, 1.5]}')
    assert Membership.decode(m.encode()) == m


steps = st.lists(st.tuples(st.sampled_from(["learner", "promote", "remove", "replace"]), st.integers(1, 8),
                           st.integers(1, 8)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_every_accepted_step_keeps_majorities_overlapping(ops):
    m = Membership.of([1, 2, 3])
    for op, a, b in ops:
        build = {"learner": lambda: add_learner(m, a), "promote": lambda: promote(m, a),
                 "remove": lambda: remove(m, a), "replace": lambda: replace_with_learner(m, a, b)}[op]
        try:
            new = change(m, build())
        except MembershipError:
            continue
        # Every majority of the old voters meets every majority of the new ones.
        smallest_old, smallest_new = m.quorum, new.quorum
        assert smallest_old + smallest_new > len(m.voters | new.voters)
        assert new.voters - m.voters <= m.learners
        m = new


def test_replica_ids_name_broker_and_incarnation():
    assert replica_id(3, 0) == 3 and format_replica(3) == "3"
    r = replica_id(3, 0xdeadbeef)
    assert (broker_of(r), incarnation_of(r), format_replica(r)) == (3, 0xdeadbeef, "3.deadbeef")
    with pytest.raises(ValueError):
        replica_id(0, 1)


# --------------------------------------------------------------- learners

def test_a_learner_catches_up_but_never_campaigns():
    c = SimCluster(3, seed=20)
    elect(c)
    values = commit_values(c, 5)
    add_spare(c, 4)
    c.change_membership(add_learner(c.membership(), 4))
    more = commit_values(c, 3)
    c.run(10)
    assert applied_data(c, 4) == values + more
    leader = c.leader()
    assert c.replicas[leader].node.status()["followers"][4]["learner"] is True
    for i in [1, 2, 3]:
        c.crash(i)
    c.run(200)  # alone, the learner waits: it is no candidate
    assert c.replicas[4].node.role is Role.FOLLOWER and c.replicas[4].node.log.vote is None


def learners_alone_with_the_leader(seed):
    """Voters 1-3 and learners 4, 5; the leader is cut off from both other voters and proposes."""
    c = SimCluster(3, seed=seed)
    leader = elect(c)
    for spare in (4, 5):
        add_spare(c, spare)
        c.change_membership(add_learner(c.membership(), spare))
        c.run(10)
    for i in [1, 2, 3]:
        if i != leader:
            c.isolate(i)
    c.propose(leader)
    c.run(3)
    return c, c.replicas[leader].node


def test_a_learner_never_counts_toward_a_commit():
    c, node = learners_alone_with_the_leader(seed=21)
    assert all(c.replicas[i].node.log.last_index == node.log.last_index for i in (4, 5))  # learners have it ...
    assert node.commit < node.log.last_index  # ... and it is still not committed


def test_learner_counted_mutant_commits_on_learners(mutant):
    mutant("learner-counted")
    with pytest.raises(SafetyViolation, match="hold it durably"):  # committed on the leader and two learners
        learners_alone_with_the_leader(seed=21)


def test_promotion_waits_for_the_learner_to_catch_up():
    c = SimCluster(3, seed=22)
    elect(c)
    commit_values(c, 10)
    add_spare(c, 4)
    c.isolate(4)
    c.change_membership(add_learner(c.membership(), 4))
    c.run(5)
    with pytest.raises(MembershipChangeError, match="has not caught up"):
        c.change_membership(promote(c.membership(), 4))
    c.heal()
    c.run(10)
    c.change_membership(promote(c.membership(), 4))
    c.run(5)
    assert c.membership() == Membership.of([1, 2, 3, 4])
    c.crash(c.leader())  # four voters, quorum three: one failure is tolerated
    elect(c, 200)
    values = commit_values(c, 3)
    assert all(v in c.acked for v in values)


def test_promote_lagging_learner_mutant_promotes_an_empty_replica(mutant):
    mutant("promote-lagging-learner")
    c = SimCluster(3, seed=22)
    elect(c)
    commit_values(c, 10)
    add_spare(c, 4)
    c.isolate(4)
    c.change_membership(add_learner(c.membership(), 4))
    c.run(5)
    c.change_membership(promote(c.membership(), 4))  # no error: the mutant skips the catch-up rule
    assert c.replicas[c.leader()].node.membership.is_voter(4)


def test_one_change_at_a_time_and_only_after_an_entry_of_the_leaders_term():
    c = SimCluster(3, seed=23)
    elect(c)
    commit_values(c, 2)
    add_spare(c, 4)
    add_spare(c, 5)
    leader = c.leader()
    node = c.replicas[leader].node
    node.propose_membership(add_learner(node.membership, 4))  # appended, not yet committed
    with pytest.raises(MembershipChangeError, match="not committed yet"):
        node.propose_membership(add_learner(node.membership, 5))
    c.persist(leader)
    c.run(5)
    node.propose_membership(add_learner(node.membership, 5))
    c.persist(leader)
    c.run(5)
    # A new leader may change membership only once its own no-op is committed.
    c.crash(leader)
    for _ in range(300):
        c.tick_all()
        new = c.leader()
        if new is not None:
            break
        while c.network:
            c.deliver(0)
            new = c.leader()
            if new is not None:
                break
        if new is not None:
            break
    new_node = c.replicas[new].node
    assert new_node.log.term_at(new_node.commit) != new_node.log.term
    with pytest.raises(MembershipChangeError, match="not yet committed an entry of term"):
        new_node.propose_membership(remove(new_node.membership, leader))
    c.run(5)  # the refusal appended the no-op a new leader appends only when it must: now it is committed
    new_node.propose_membership(remove(new_node.membership, leader))


def test_changes_are_refused_by_followers():
    c = SimCluster(3, seed=24)
    leader = elect(c)
    follower = next(i for i in c.replicas if i != leader)
    with pytest.raises(NotLeaderError):
        c.replicas[follower].node.propose_membership(remove(c.membership(), leader))


# ---------------------------------------------------------------- removal

def test_removing_a_follower_shrinks_the_quorum():
    c = SimCluster(3, seed=25)
    leader = elect(c)
    values = commit_values(c, 3)
    follower = next(i for i in c.replicas if i != leader)
    c.change_membership(remove(c.membership(), follower))
    c.run(5)
    c.crash(follower)
    other = next(i for i in c.replicas if i not in (leader, follower))
    c.crash(other)  # one of two voters left: no quorum ...
    c.propose(leader)
    c.run(5)
    assert c.replicas[leader].node.commit < c.replicas[leader].node.log.last_index
    c.recover(other)  # ... and the two remaining voters are a quorum again
    more = commit_values(c, 2)
    c.run(10)
    assert applied_data(c, other)[-len(values + more) - 1:][-2:] == more


def test_a_removed_leader_hands_over_and_steps_down():
    c = SimCluster(5, seed=26)
    old = elect(c)
    values = commit_values(c, 4)
    c.change_membership(remove(c.membership(), old))
    for _ in range(60):
        c.run(1)
        if c.leader() not in (None, old):
            break
    new = c.leader()
    assert new not in (None, old) and c.replicas[old].node.role is not Role.LEADER
    more = commit_values(c, 3)
    c.run(10)
    for i in c.replicas:
        if i != old:
            assert applied_data(c, i) == values + more
    assert c.replicas[new].node.membership == Membership.of(set(c.replicas) - {old})


# --------------------------------------------------------------- snapshots

def test_a_learner_behind_the_compaction_point_gets_membership_with_the_snapshot():
    c = SimCluster(3, seed=27)
    elect(c)
    values = commit_values(c, 12)
    for i in list(c.replicas):
        c.compact(i)
    add_spare(c, 4)
    c.change_membership(add_learner(c.membership(), 4))
    c.run(30)
    learner = c.replicas[4].node
    assert applied_data(c, 4) == values
    assert learner.membership == Membership.of([1, 2, 3], [4])
    c.change_membership(promote(c.membership(), 4))
    c.run(5)
    assert c.replicas[4].node.is_voter


# ---------------------------------------------------------------- disk loss

def disk_loss_repro(c: SimCluster):
    """Issue 11's repro: pause C, commit on A+B, wipe B, kill A, resume C.

    Returns (values acknowledged before the faults, A, B's new replica id, C).
    """
    a = elect(c)
    b, cc = [i for i in c.replicas if i != a]
    c.isolate(cc)  # SIGSTOP C
    values = commit_values(c, 30)
    assert all(v in c.acked for v in values)
    new_b = c.wipe(b)  # kill -9 B, delete its data dir, start it again
    c.crash(a)  # kill -9 A
    c.heal()  # SIGCONT C
    return values, a, new_b, cc


def test_a_wiped_replica_cannot_elect_a_stale_leader():
    c = SimCluster(3, seed=30)
    values, a, new_b, cc = disk_loss_repro(c)
    assert new_b != broker_of(new_b), "the wiped replica came back under its old replica id"
    c.run(300)
    assert c.leader() is None, "the stale replica was elected with the wiped replica's vote"
    c.recover(a)  # a replica with the data returns: service resumes with the full log
    leader = elect(c, 300)
    assert leader in (a, cc)
    more = commit_values(c, 2)
    assert applied_data(c, leader)[:len(values)] == values
    # The new incarnation is swapped in for the lost one: learner, catch-up, promotion.
    lost = broker_of(new_b)
    c.change_membership(replace_with_learner(c.membership(), lost, new_b))
    c.run(20)
    c.change_membership(promote(c.membership(), new_b))
    c.run(20)
    assert applied_data(c, new_b) == values + more
    assert c.membership() == Membership.of([a, cc, new_b])


def test_wiped_node_votes_mutant_loses_acknowledged_entries(mutant):
    mutant("wiped-node-votes")
    c = SimCluster(3, seed=30)
    with pytest.raises(SafetyViolation):
        values, a, new_b, cc = disk_loss_repro(c)
        assert new_b == broker_of(new_b)  # the mutant: same replica id, empty state
        c.run(300)
        c.recover(a)
        c.run(300)
        elect(c)
        reference = {d for _, d in c.replicas[c.leader()].sm.applied}
        lost = [v for v in values if v not in reference]
        assert not lost, f"acknowledged entries lost: {lost}"  # turns into the checker's verdict
        raise AssertionError("the mutant went unnoticed")


def single_server_bug(c: SimCluster):
    """Ongaro's 2015 single-server membership bug, scripted: two changes in different terms.

    Voters 1-4, learner 5. Leader S1 promotes 5 (config D) but only 5 gets it; S1 crashes.
    S2 wins term t+1 and, before any entry of its term is on a majority, removes S1
    (config E), committed on S2+S3 only. S2 crashes, S3 is slow; S1 returns and, counting
    D's voters (itself, S4, S5), wins a later term without E. Returns S1, S2 and S2's node.
    """
    s1 = elect(c)
    add_spare(c, 5)
    c.change_membership(add_learner(c.membership(), 5))
    c.run(20)
    s2, s3, s4 = [i for i in sorted(c.replicas) if i not in (s1, 5)]
    for x in (s2, s3, s4):
        c.blocked |= {(s1, x), (x, s1)}
    c.change_membership(promote(c.membership(), 5))  # D reaches only 5 (no tick: nobody times out)
    while c.network:
        c.deliver(0)
    assert c.replicas[5].node.membership.is_voter(5)
    c.crash(s1)
    c.isolate(5)
    leader2 = c.replicas[s2].node
    leader2.campaign(transfer=True)
    c.persist(s2)
    while c.network and leader2.role is not Role.LEADER:
        c.deliver(0)
    assert leader2.role is Role.LEADER
    c.isolate(s4)  # S4 voted, and will get nothing of term t+1
    leader2.propose_membership(remove(leader2.membership, s1))  # E
    c.persist(s2)
    c.run(3)
    return s1, s2, leader2


def test_a_new_leader_changes_membership_only_after_committing_its_own_entry():
    c = SimCluster(4, seed=31)
    with pytest.raises(MembershipChangeError, match="not yet committed an entry of term"):
        single_server_bug(c)


def test_membership_before_own_term_mutant_elects_a_leader_without_a_committed_change(mutant):
    mutant("membership-before-own-term")
    c = SimCluster(4, seed=31)
    s1, s2, leader2 = single_server_bug(c)
    assert leader2.commit == leader2.log.last_index  # E is committed (S2 + S3 of voters 2, 3, 4)
    s3 = next(i for i in c.replicas if i not in (s1, s2, 5) and c.replicas[i].node.log.last_index == leader2.commit)
    c.crash(s2)
    c.heal()
    c.isolate(s3)  # slow: only S1, S4 and S5 take part from here
    c.recover(s1)
    with pytest.raises(SafetyViolation):
        c.run(300)


# ---------------------------------------------------------------- planning

replica_sets = st.frozensets(st.sampled_from([1, 2, 3, 4, 5, replica_id(2, 7), replica_id(3, 9), replica_id(3, 11)]),
                             min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(replica_sets, replica_sets)
def test_planned_steps_are_valid_and_reach_the_desired_voters(start, desired):
    if len({broker_of(r) for r in desired}) < len(desired):
        return  # one replica per broker, as the broker asks for
    current = Membership.of(start)
    for _ in range(30):
        step = next_step(current, desired, caught_up=current.learners)
        if step is None:
            break
        current = change(current, step)
    assert current == Membership.of(desired)


def test_a_lost_replica_is_swapped_for_its_successor_first():
    lost, successor = 3, replica_id(3, 9)
    current = Membership.of([1, 2, lost])
    desired = frozenset({1, 2, successor})
    step = next_step(current, desired, caught_up=frozenset())
    assert step == Membership.of([1, 2], [successor])
    assert next_step(step, desired, caught_up=frozenset()) is None  # waits for the learner
    assert next_step(step, desired, caught_up=frozenset({successor})) == Membership.of([1, 2, successor])


@settings(max_examples=300, deadline=None)
@given(replica_sets, replica_sets, st.frozensets(st.sampled_from([1, 2, 3, 4, 5, 6, 7, replica_id(6, 3)]),
                                                  max_size=4))
def test_planned_steps_reach_the_desired_voters_and_learners(start, desired, learners):
    learners = learners - desired
    if len({broker_of(r) for r in desired | learners}) < len(desired | learners):
        return  # one replica per broker, as the broker asks for
    current = Membership.of(start)
    for _ in range(40):
        step = next_step(current, desired, caught_up=current.learners, learners=learners)
        if step is None:
            break
        current = change(current, step)
    assert current == Membership.of(desired, learners)


def test_a_seat_changes_hands_through_a_learner_and_the_old_voter_stays_on_as_a_learner():
    current = Membership.of([1, 2, 3], [4])
    desired, learners = frozenset({1, 2, 4}), frozenset({3})
    assert next_step(current, desired, frozenset(), learners) is None  # 4 has not caught up: 3 keeps its seat
    promoted = next_step(current, desired, frozenset({4}), learners)
    assert promoted == Membership.of([1, 2, 3, 4])
    assert next_step(promoted, desired, frozenset(), learners) == Membership.of([1, 2, 4], [3])
