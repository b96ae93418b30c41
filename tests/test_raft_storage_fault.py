"""The Raft core under storage faults: `RaftNode.set_storage_failed` (disk full, I/O error, read-only fs).

A replica that cannot write stops acting for its group: a leader hands leadership to its most
caught-up follower (or steps down), a failed node never campaigns, rejects vote and pre-vote
requests, acknowledges nothing and applies nothing, and acts normally again once cleared.
Runs on the simulated network of tests/raftsim.py.
"""

from hypothesis import HealthCheck, example, given, settings, strategies as st

from raftka.raft.core import NotLeaderError, Role

from raftsim import SafetyViolation, SimCluster


def elect(c: SimCluster, ticks: int = 80) -> int:
    for _ in range(ticks):
        c.run(1)
        if c.leader() is not None:
            return c.leader()
    raise AssertionError("no leader elected")


def commit_values(c: SimCluster, count: int) -> list[bytes]:
    leader = c.leader()
    values = [c.propose(leader) for _ in range(count)]
    c.run(5)
    return values


def fail(c: SimCluster, i: int, failed: bool = True) -> None:
    c.replicas[i].node.set_storage_failed(failed)
    c.persist(i)


def applied_data(c: SimCluster, i: int) -> list[bytes]:
    return [d for _, d in c.replicas[i].sm.applied if d]


def test_failed_leader_hands_leadership_to_the_most_caught_up_follower():
    c = SimCluster(3, seed=11)
    leader = elect(c)
    values = commit_values(c, 4)
    behind, ahead = [i for i in c.replicas if i != leader]
    c.crash(behind)  # misses what follows: `ahead` is the most caught-up follower
    values += commit_values(c, 3)
    c.recover(behind)
    fail(c, leader)
    c.run(c.cfg.election_ticks)  # within one election timeout
    assert c.leader() == ahead
    assert c.replicas[leader].node.role is Role.FOLLOWER
    more = commit_values(c, 2)
    c.run(20)
    assert applied_data(c, ahead) == applied_data(c, behind) == values + more


def test_failed_leader_steps_down_when_no_follower_can_take_over():
    c = SimCluster(3, seed=12)
    leader = elect(c)
    commit_values(c, 2)
    for i in c.replicas:
        if i != leader:
            c.crash(i)
    fail(c, leader)
    c.run(c.cfg.election_ticks + 1)
    assert c.replicas[leader].node.role is Role.FOLLOWER
    c.run(100)
    assert c.replicas[leader].node.role is Role.FOLLOWER, "a node that cannot write stood for election"


def test_failed_single_node_group_steps_down_at_once_and_stays_down():
    c = SimCluster(1, seed=13)
    leader = elect(c)
    fail(c, leader)
    assert c.replicas[leader].node.role is Role.FOLLOWER
    c.run(100)
    assert c.leader() is None
    fail(c, leader, False)
    c.run(40)
    assert c.leader() == leader


def test_failed_node_never_campaigns_and_rejects_votes_so_no_minority_leader_is_elected():
    c = SimCluster(3, seed=14)
    leader = elect(c)
    values = commit_values(c, 3)
    failed, healthy = [i for i in c.replicas if i != leader]
    fail(c, failed)
    c.crash(leader)
    c.run(200)
    assert c.leader() is None, "one healthy replica of three became leader: the failed one voted for it"
    assert c.replicas[failed].node.role is Role.FOLLOWER
    fail(c, failed, False)  # space returned
    new = elect(c, 100)
    assert new in (failed, healthy)
    assert applied_data(c, new)[:3] == values


def test_failed_follower_acknowledges_nothing_and_applies_nothing_until_cleared():
    c = SimCluster(3, seed=15)
    leader = elect(c)
    before = commit_values(c, 2)
    failed, other = [i for i in c.replicas if i != leader]
    fail(c, failed)
    c.crash(other)
    node = c.replicas[leader].node
    commit = node.commit
    value = c.propose(leader)
    c.run(30)
    assert node.commit == commit, "the leader committed with an acknowledgement from a failed follower"
    assert value not in c.acked
    assert c.replicas[failed].node.log.last_index < node.log.last_index  # dropped, never stored
    assert node.role is Role.LEADER  # the failed follower still answers heartbeats
    c.recover(other)
    c.run(30)
    assert value in c.acked  # committed with the healthy follower
    assert applied_data(c, failed) == before, "a failed replica applied entries"
    fail(c, failed, False)
    c.run(30)
    assert applied_data(c, failed) == applied_data(c, leader) == before + [value]


def test_failed_leader_refuses_proposals():
    c = SimCluster(3, seed=16)
    leader = elect(c)
    c.replicas[leader].node.set_storage_failed(True)
    try:
        c.replicas[leader].node.propose(b"x")
    except NotLeaderError:
        pass
    else:
        raise AssertionError("a leader whose storage failed accepted a proposal")


def test_failed_follower_ignores_timeout_now():
    c = SimCluster(3, seed=17)
    leader = elect(c)
    commit_values(c, 2)
    target = next(i for i in c.replicas if i != leader)
    fail(c, target)
    c.replicas[leader].node.transfer_leadership(target)
    c.persist(leader)
    c.run(c.cfg.election_ticks + 2)
    assert c.leader() == leader, "a replica that cannot write took leadership"
    assert c.replicas[target].node.role is Role.FOLLOWER


STORAGE_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(1, 4)),
        st.tuples(st.just("tick"), st.integers(5, 25)),
        st.tuples(st.just("deliver"), st.integers(0, 50)),
        st.tuples(st.just("deliver"), st.integers(0, 50)),
        st.tuples(st.just("deliver-all"), st.just(0)),
        st.tuples(st.just("drop"), st.integers(0, 50)),
        st.tuples(st.just("propose"), st.integers(1, 5)),
        st.tuples(st.just("fail"), st.integers(1, 5)),
        st.tuples(st.just("clear"), st.integers(1, 5)),
        st.tuples(st.just("crash"), st.integers(1, 5)),
        st.tuples(st.just("recover"), st.integers(1, 5)),
    ),
    max_size=120,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([3, 5]), st.integers(0, 10_000), STORAGE_ACTIONS)
@example(3, 0, [("tick", 5), ("tick", 6), ("deliver", 2), ("fail", 1)])  # a vote granted, in flight, then the disk fails
def test_storage_faults_keep_raft_safe_and_failed_nodes_out_of_elections(n, seed, actions):
    """Random storage failures and recoveries among message faults and crashes: Raft's safety
    properties hold (SimCluster checks them), a failed node never becomes leader of a new term and
    never grants a vote, and once everything is cleared and healed the group commits again."""
    c = SimCluster(n, seed=seed)
    elect(c)
    failed_at: dict[int, int] = {}  # node -> its term when its storage failed
    sent_while_healthy: set[int] = set()  # ids of a failed node's messages sent before its storage failed

    def check_failed_nodes():
        for i, term in failed_at.items():
            node = c.replicas[i].node
            if node.role is Role.LEADER and node.log.term > term:
                raise SafetyViolation(f"node {i} became leader in term {node.log.term} with failed storage")
            if node.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
                raise SafetyViolation(f"node {i} campaigns with failed storage")
        for m in c.network:
            if m.src in failed_at and m.type.name in ("VOTE_RESP", "PREVOTE_RESP") and not m.reject \
                    and id(m) not in sent_while_healthy:
                raise SafetyViolation(f"node {m.src} granted a vote with failed storage")

    for action, arg in actions:
        i = (arg - 1) % n + 1
        if action == "tick":
            for _ in range(arg):
                c.tick_all()
        elif action == "deliver":
            c.deliver(arg)
        elif action == "deliver-all":
            while c.network:
                c.deliver(0)
        elif action == "drop":
            c.drop(arg)
        elif action == "propose":
            try:
                c.propose(i)
            except NotLeaderError:
                pass  # a leader handing over (its disk failed) takes no proposals
        elif action == "fail" and c.replicas[i].up:
            c.replicas[i].node.set_storage_failed(True)
            failed_at[i] = c.replicas[i].node.log.term
            c.persist(i)  # what it decided before the failure (a vote it granted) is durable and goes out
            sent_while_healthy.update(id(m) for m in c.network if m.src == i)
        elif action == "clear" and c.replicas[i].up and i in failed_at:
            c.replicas[i].node.set_storage_failed(False)
            del failed_at[i]
            c.persist(i)
        elif action == "crash":
            c.crash(i)
            failed_at.pop(i, None)  # a restarted node reopens its storage
        elif action == "recover":
            c.recover(i)
        check_failed_nodes()
    for i in list(failed_at):
        c.replicas[i].node.set_storage_failed(False)
    for i in c.replicas:
        c.recover(i)
    c.heal()
    # The group commits again: a leader whose disk failed may still be handing over, or a leader of an old
    # term may not know yet that it was deposed (its proposal is then dropped, rightly): retry on the newest.
    acked = False
    for _ in range(30):
        c.run(10)
        leader = c.leader()
        if leader is None or c.replicas[leader].node.transfer_target is not None:
            continue
        value = c.propose(leader)
        c.run(20)
        if value in c.acked:
            acked = True
            break
    assert acked, "the healed group commits nothing"
