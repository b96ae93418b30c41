"""Specification tests for the pure Raft core (raftka.raft.core) on a simulated network:
one scenario per rule, hypothesis-generated schedules, and seeded chaos runs (tests/raftchaos.py)
whose statistics are printed under "raft simulation statistics" at the end of the test log."""

import os
import random
import statistics
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import simreport
from raftka.raft.core import NotLeaderError, RaftConfig, RaftNode, Role
from raftka.raft.messages import (Entry, Message, MessageDecodeError, MessageType, decode_frame, decode_message,
                                  encode_frame, encode_frames, encode_message)

from raftchaos import BUDGET_ENV, DEFAULT_PLANS, SEED_ENV, ChaosPlan, converge, elect, run_chaos
from raftsim import MemoryLog, SimCluster


def commit_values(c: SimCluster, count: int):
    leader = c.leader()
    values = [c.propose(leader) for _ in range(count)]
    c.run(5)
    return values


def applied_data(c: SimCluster, i):
    return [d for _, d in c.replicas[i].sm.applied if d]


def test_three_nodes_elect_one_leader_and_replicate():
    c = SimCluster(3, seed=1)
    elect(c)
    values = commit_values(c, 10)
    assert all(v in c.acked for v in values)
    for i in c.replicas:
        assert applied_data(c, i) == values
    assert sum(r.node.role is Role.LEADER for r in c.replicas.values()) == 1


def test_follower_rejects_proposals_with_leader_hint():
    c = SimCluster(3, seed=2)
    leader = elect(c)
    follower = next(i for i in c.replicas if i != leader)
    try:
        c.replicas[follower].node.propose(b"x")
    except NotLeaderError as e:
        assert e.leader == leader
    else:
        raise AssertionError("a follower accepted a proposal")


def test_leader_crash_elects_new_leader_and_keeps_committed_entries():
    c = SimCluster(5, seed=3)
    old = elect(c)
    values = commit_values(c, 5)
    c.crash(old)
    new = elect(c, 100)
    assert new != old
    more = commit_values(c, 5)
    c.recover(old)
    c.run(30)
    for i in c.replicas:
        assert applied_data(c, i) == values + more


def test_unsynced_entries_are_never_counted_by_the_leader():
    c = SimCluster(3, seed=4)
    leader = elect(c)
    node = c.replicas[leader].node
    node.propose(b"not-durable")
    # Followers acknowledge, but the host has not synced the leader's own log yet.
    for m in node.take_messages():
        follower = c.replicas[m.dst]
        follower.node.step(m)
        follower.log.sync()
        for resp in follower.node.take_messages():
            node.step(resp)
    node.persisted()
    assert node.log.synced_index < node.log.last_index
    assert node.commit == node.log.last_index  # two followers are a majority of three
    c2 = SimCluster(5, seed=4)
    leader2 = elect(c2)
    node2 = c2.replicas[leader2].node
    node2.propose(b"not-durable")
    acks = 0
    for m in node2.take_messages():
        if acks == 2:
            break  # only two followers answer: with the leader that would be 3 of 5
        follower = c2.replicas[m.dst]
        follower.node.step(m)
        follower.log.sync()
        for resp in follower.node.take_messages():
            node2.step(resp)
        acks += 1
    node2.persisted()
    assert node2.commit < node2.log.last_index, "leader counted its unsynced entry toward the majority"
    c2.persist(leader2)
    assert node2.commit == node2.log.last_index


def test_rejoining_partitioned_follower_does_not_disrupt_the_leader():
    c = SimCluster(3, seed=5)
    leader = elect(c)
    term = c.replicas[leader].node.log.term
    follower = next(i for i in c.replicas if i != leader)
    c.isolate(follower)
    c.run(100)  # the isolated node pre-votes in vain; its term does not grow
    c.heal()
    c.run(20)
    assert c.leader() == leader
    assert c.replicas[leader].node.log.term == term


def test_a_leader_knows_when_its_followers_commit_without_it():
    """The host lets a leader's own fsync wait only while enough other voters answer appends promptly to
    commit without it: both followers of three, not one of them, and never the one follower of two."""
    c = SimCluster(3, seed=7)
    leader = elect(c)
    node = c.replicas[leader].node
    commit_values(c, 2)
    assert node.followers_commit_alone()
    assert not any(c.replicas[i].node.followers_commit_alone() for i in c.replicas if i != leader)
    follower = next(i for i in c.replicas if i != leader)
    c.isolate(follower)
    c.run(2 * node.cfg.heartbeat_ticks + 2)
    commit_values(c, 2)  # the other follower answers; the isolated one has been silent too long
    assert node.role is Role.LEADER and not node.followers_commit_alone()
    c.heal()
    c.run(10)
    commit_values(c, 2)
    assert node.followers_commit_alone()
    pair = SimCluster(2, seed=8)
    first = elect(pair)
    commit_values(pair, 2)
    assert not pair.replicas[first].node.followers_commit_alone()


def test_isolated_leader_steps_down_and_loses_its_lease():
    c = SimCluster(3, seed=6)
    leader = elect(c)
    commit_values(c, 2)
    assert c.replicas[leader].node.read_allowed()
    c.isolate(leader)
    c.run(40)
    old = c.replicas[leader].node
    assert not old.read_allowed()
    assert old.role is not Role.LEADER
    others = [i for i in c.replicas if i != leader]
    assert c.leader() in others


def test_lagging_follower_catches_up_through_a_snapshot():
    c = SimCluster(3, seed=7)
    elect(c)
    lagging = next(i for i in c.replicas if c.replicas[i].node.role is not Role.LEADER)
    c.crash(lagging)
    values = commit_values(c, 20)
    for i in c.replicas:
        c.compact(i)
    leader = c.leader()
    assert c.replicas[leader].log.snapshot_index > 5
    c.recover(lagging)
    c.run(60)
    assert applied_data(c, lagging) == values
    more = commit_values(c, 3)
    assert applied_data(c, lagging) == values + more


def test_leadership_transfer_hands_over_without_losing_entries():
    c = SimCluster(3, seed=8)
    leader = elect(c)
    values = commit_values(c, 3)
    target = c.replicas[leader].node.transfer_leadership()
    c.persist(leader)
    c.run(10)
    assert c.leader() == target
    more = commit_values(c, 2)
    for i in c.replicas:
        assert applied_data(c, i) == values + more


def test_single_node_group_commits_after_persist():
    c = SimCluster(1, seed=9)
    leader = elect(c)
    values = commit_values(c, 3)
    assert applied_data(c, leader) == values


def test_message_codec_round_trip():
    m = Message(MessageType.APPEND, "topic-0", 1, 2, 7, index=5, log_term=6, commit=4, context=99, reject=True,
                final=True, entries=[Entry(7, b"a" * 100), Entry(7, b"")], payload=b"xyz")
    assert decode_message(encode_message(m)) == m
    frame = encode_frame([encode_message(m), encode_message(m)])
    assert decode_frame(frame) == [m, m]


@given(st.lists(st.integers(0, 300), max_size=40), st.integers(0, 2000))
def test_messages_for_one_peer_are_split_into_frames_that_fit_in_order(payload_sizes, spare_bytes):
    messages = [encode_message(Message(MessageType.APPEND, "g", 1, 2, 3, index=i, entries=[Entry(3, b"v" * size)]))
                for i, size in enumerate(payload_sizes)]
    max_frame_bytes = max((len(m) + 8 for m in messages), default=8) + spare_bytes  # each message fits alone
    frames = encode_frames(messages, max_frame_bytes)
    assert all(len(frame) <= max_frame_bytes for frame in frames)
    assert [m for frame in frames for m in decode_frame(frame)] == [decode_message(m) for m in messages]
    assert len(frames) <= max(1, 2 * sum(len(m) + 4 for m in messages) // max_frame_bytes + 1)  # frames are filled


@given(st.binary(max_size=200))
def test_message_decoder_rejects_garbage_cleanly(data):
    try:
        decode_message(data)
    except MessageDecodeError:
        pass
    try:
        decode_frame(data)
    except MessageDecodeError:
        pass


def action(kind, arguments, weight=1):
    """`weight` alternatives for one kind of action: st.one_of picks among alternatives evenly."""
    return [st.tuples(st.just(kind), arguments)] * weight


NODE, MESSAGE = st.integers(1, 5), st.integers(0, 50)
ACTIONS = st.lists(
    st.one_of(
        *action("settle", st.integers(1, 5), 3), *action("propose", NODE, 3), *action("tick", st.integers(1, 3)),
        *action("tick", st.integers(5, 15)), *action("deliver", MESSAGE, 3), *action("deliver-all", st.just(0)),
        *action("drop", MESSAGE), *action("duplicate", MESSAGE), *action("deliver-unsynced", MESSAGE),
        *action("persist", NODE), *action("send-early", NODE), *action("propose-unsynced", NODE),
        *action("crash", NODE), *action("recover", NODE, 2),
        *action("isolate", NODE), *action("heal", st.just(0), 2), *action("compact", NODE),
    ),
    min_size=100, max_size=400,
)
SCHEDULE_STATS: list[tuple[int, int, int]] = []  # (actions, acknowledged entries, max term) per example


def run_random_schedule(n, seed, actions):
    c = SimCluster(n, seed=seed)
    for kind, arg in actions:
        node = (arg - 1) % n + 1
        if kind == "tick":
            for _ in range(arg):
                c.tick_all()
        elif kind == "settle":  # a few ticks with every message delivered: elections and commits happen
            c.run(arg)
        elif kind == "deliver":
            c.deliver(arg)
        elif kind == "deliver-all":
            while c.network:
                c.deliver(0)
        elif kind == "deliver-unsynced":
            c.deliver(arg, persist=False)
        elif kind == "persist":
            c.persist(node)
        elif kind == "send-early":
            c.send_before_sync(node)
        elif kind == "propose-unsynced":
            for _ in range(arg):
                c.propose(c.leader() or node, persist=False)
        elif kind == "drop":
            c.drop(arg)
        elif kind == "duplicate":
            c.deliver(arg, duplicate=True)
        elif kind == "propose":
            for _ in range(arg):
                c.propose(c.leader() or node)
        elif kind == "crash":
            if sum(r.up for r in c.replicas.values()) > 1:
                c.crash(node)
        elif kind == "recover":
            c.recover(node)
        elif kind == "isolate":
            c.isolate(node)
        elif kind == "heal":
            c.heal()
        elif kind == "compact":
            c.compact(node)
    converge(c)  # healed, the cluster agrees and keeps every acknowledged entry
    return c


def schedule_summary() -> str:
    actions, acked, terms = zip(*SCHEDULE_STATS)
    return (f"random schedules (hypothesis): {len(SCHEDULE_STATS)} examples; actions median "
            f"{statistics.median(actions):.0f} (max {max(actions)}), acknowledged entries median "
            f"{statistics.median(acked):.0f} (max {max(acked)}), max term median {statistics.median(terms):.0f} "
            f"(max {max(terms)})")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([3, 5]), st.integers(0, 10_000), ACTIONS)
def test_random_schedules_never_violate_safety(n, seed, actions):
    c = run_random_schedule(n, seed, actions)
    SCHEDULE_STATS.append((len(actions), len(c.acked), c.max_term()))
    simreport.record("random schedules", schedule_summary)


@pytest.mark.parametrize("plan", DEFAULT_PLANS, ids=lambda p: f"n{p.n}-seed{p.seed}-prevote{int(p.pre_vote)}")
def test_chaos_never_violates_safety_nor_loses_acknowledged_entries(plan):
    """Seeded chaos (tests/raftchaos.py): every fault kind at a rate bounded away from zero;
    SimCluster.check after every host step, convergence without loss at the end."""
    result = run_chaos(plan)
    simreport.record(f"chaos {plan}", result.summary())


@pytest.mark.skipif(not os.environ.get(BUDGET_ENV), reason=f"long chaos run: set {BUDGET_ENV}=<seconds>")
@pytest.mark.timeout(0)
def test_chaos_budget():
    """Fresh seeds for RAFTKA_SIM_BUDGET seconds (first seed RAFTKA_SIM_SEED, else random)."""
    budget = float(os.environ[BUDGET_ENV])
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(1 << 30))
    first, runs, acked, terms = seed, 0, [], []
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        for n in (3, 5):
            for pre_vote in (True, False):
                result = run_chaos(ChaosPlan(n, seed, 2 * DEFAULT_PLANS[0].steps, pre_vote))
                runs += 1
                acked.append(result.acked)
                terms.append(result.max_term)
        seed += 1
    simreport.record("chaos budget", f"{BUDGET_ENV}={budget:.0f}: {runs} runs, seeds {first}..{seed - 1}, "
                                     f"acknowledged entries median {statistics.median(acked):.0f}, max term median "
                                     f"{statistics.median(terms):.0f}")


def test_old_term_entries_are_not_committed_by_counting_replicas():
    """Raft §5.4.2 (figure 8): a leader commits an entry of an earlier term only by
    committing one of its own term on top; otherwise a later leader may overwrite it."""
    from raftka.raft.core import RaftConfig

    cfg = RaftConfig(election_ticks=10, heartbeat_ticks=2, max_append_bytes=1, max_inflight=4)
    c = SimCluster(5, seed=10, cfg=cfg)
    logs = {1: [1, 2], 2: [1, 2], 3: [1], 4: [1], 5: [1, 3]}
    for i, terms in logs.items():
        r = c.replicas[i]
        r.log.append([Entry(t, b"e%d" % t) for t in terms])
        r.log.set_hard_state(3, None)
        r.log.sync()
        r.restart()
        r.node.now = 100  # past the boot-time lease
    for i in (4, 5):
        c.isolate(i)
    s1 = c.replicas[1].node
    s1.campaign()
    c.persist(1)
    while c.network and s1.role is not Role.LEADER:
        c.deliver(0)
    assert s1.role is Role.LEADER and s1.log.term == 4
    # Replicate until node 3 holds index 2 (only: appends carry one entry).
    while c.network and s1.progress[3].match < 2:
        c.deliver(0)
    assert s1.progress[3].match == 2 and s1.progress[2].match >= 2
    assert s1.commit < 2, "leader committed a term-2 entry by counting replicas"
    c.crash(1)
    c.heal()
    c.isolate(1)
    c.isolate(2)  # only node 5 can now win (its last term 3 beats node 3's and node 4's)
    s5 = c.replicas[5].node
    for _ in range(60):
        while c.network:
            c.deliver(0)
        c.tick_all()
    assert s5.role is Role.LEADER
    # Node 5 overwrote index 2: legal only because it was never committed (check() raises otherwise).
    assert c.committed[2] == b"e3"


def test_idle_group_quiesces_and_wakes_on_proposal_or_leader_loss():
    c = SimCluster(3, seed=11)
    leader = elect(c)
    values = commit_values(c, 3)
    c.run(10)
    assert all(r.node.quiesced for r in c.replicas.values()), [r.node.status() for r in c.replicas.values()]
    c.tick_all()
    c.tick_all()
    assert c.network == [], "a quiesced group still sends messages"
    more = [c.propose(leader)]
    c.run(5)
    assert all(applied_data(c, i) == values + more for i in c.replicas)
    c.run(10)
    assert all(r.node.quiesced for r in c.replicas.values())
    c.crash(leader)  # followers learn it from broker-level liveness, then elect a new leader
    new = elect(c, 100)
    assert new != leader
    assert c.propose(new) is not None


def test_a_leader_quiesces_without_a_follower_whose_broker_is_down_and_wakes_when_it_is_back():
    """After a broker dies, the groups it led elect new leaders; each still has the dead broker as a
    follower.  They must go quiet anyway (thousands of groups heartbeating kept a 10,000-partition
    cluster from ever settling), and catch that follower up once its broker speaks again."""
    c = SimCluster(3, seed=13)
    leader = elect(c)
    down = next(i for i in c.replicas if i != leader)
    c.crash(down)
    values = commit_values(c, 3)
    c.run(3 * c.cfg.election_ticks)
    up = [i for i in c.replicas if i != down]
    assert all(c.replicas[i].node.quiesced for i in up), [c.replicas[i].node.status() for i in up]
    assert c.replicas[leader].node.role is Role.LEADER
    c.network.clear()
    c.tick_all()
    c.tick_all()
    assert c.network == [], "a quiesced group still sends messages"
    c.replicas[leader].node.peer_silence = None  # the rule is the hook's: without it the leader stays awake
    c.replicas[leader].node.wake()
    c.run(3 * c.cfg.election_ticks)
    assert not c.replicas[leader].node.quiesced
    c.replicas[leader].node.peer_silence = lambda j: c.silence(leader, j)
    c.run(3 * c.cfg.election_ticks)
    assert c.replicas[leader].node.quiesced
    c.recover(down)
    c.tick_all()  # its broker is heard again, long before its own election timer could wake anyone
    assert not c.replicas[leader].node.quiesced, "the leader was not woken for the follower that is back"
    c.run(3 * c.cfg.election_ticks)
    assert applied_data(c, down)[-3:] == values, "the returning follower was not caught up"
    assert c.leader() == leader
    c.run(3 * c.cfg.election_ticks)
    assert all(r.node.quiesced for r in c.replicas.values()), [r.node.status() for r in c.replicas.values()]


def test_a_leader_goes_quiet_while_answers_take_longer_than_an_election_timeout_and_their_brokers_are_heard():
    """Thousands of groups electing at once can keep two brokers so busy that a round trip takes longer than an
    election timeout.  A leader that went quiet only once every follower had answered this group within an
    election timeout then never did, and the heartbeats of all those awake groups kept the round trips that long
    (10,000 partitions lost every leader after a broker's death and did not settle in a minute).  A caught-up
    follower whose broker is heard (broker heartbeats) is enough."""
    c = SimCluster(3, seed=19)
    leader = elect(c)
    values = commit_values(c, 2)
    term = c.max_term()
    values.append(c.propose(leader))  # the group wakes up, and from now on ...
    delay = c.cfg.election_ticks + 2  # ... every message arrives this many ticks after it was sent
    in_flight: list[tuple[int, Message]] = []
    for _ in range(10 * delay):
        c.tick_all()  # broker heartbeats get through every tick
        in_flight += [(c.ticks + delay, m) for m in c.network]
        c.network.clear()
        due = [m for at, m in in_flight if at <= c.ticks]
        in_flight = [(at, m) for at, m in in_flight if at > c.ticks]
        for m in due:
            c.network.append(m)
            c.deliver(len(c.network) - 1)
    assert (c.leader(), c.max_term()) == (leader, term), "slow answers alone must not cost an election"
    assert all(r.node.quiesced for r in c.replicas.values()), [r.node.status() for r in c.replicas.values()]
    assert all(applied_data(c, i)[-3:] == values for i in c.replicas)


@pytest.mark.parametrize("quiesced", [False, True], ids=["busy", "quiesced"])
def test_when_a_leader_dies_its_first_successor_stands_alone_and_wins(quiesced):
    """Ordered successors: the survivors of a dead leader do not all time out together and split their
    votes (a 10,000-partition cluster churned for minutes after a broker's death); the first successor
    stands alone, as soon as the leader's lease can have run out (a busy group) or the host saw the
    leader's broker fall silent (a quiesced one), and wins."""
    c = SimCluster(5, seed=14)
    leader = elect(c)
    commit_values(c, 2)
    if quiesced:
        c.run(3 * c.cfg.election_ticks)
        assert all(r.node.quiesced for r in c.replicas.values())
    ranks = {i: c.replicas[i].node._successor_rank() for i in c.replicas if i != leader}
    assert sorted(ranks.values()) == [0, 1, 2, 3]
    first = min(ranks, key=ranks.get)
    c.crash(leader)
    stood = set()
    for ticks in range(1, 4 * c.cfg.election_ticks):
        c.run(1, deliver_all=False)
        while c.network:
            if c.network[0].type in (MessageType.PREVOTE, MessageType.VOTE):
                stood.add(c.network[0].src)
            c.deliver(0)
        if c.leader() not in (None, leader):
            break
    assert c.leader() == first and stood == {first}, (c.leader(), stood, first)
    limit = 2 * c.cfg.election_ticks + c.cfg.heartbeat_ticks + 2  # silence seen, then within a heartbeat
    assert ticks <= limit, f"the first successor took {ticks} ticks"


@pytest.mark.parametrize("seed", range(8))
def test_two_survivors_that_stand_at_once_elect_one_of_them_in_one_round(seed):
    """The dead leader's two survivors both stand at the same moment (the successor order normally keeps them
    apart; most likely a busy broker's campaign budget held the first back until the second's turn): each used to grant
    the other's pre-vote, vote for itself in the next term and wait out a random election timeout after the
    split (one group in a few hundred after a broker's death, the last second of a 10,000-partition failover).
    Of two pre-candidates with the same log, the one placed first in the group's order refuses the other."""
    c = SimCluster(3, seed=seed)
    leader = elect(c)
    commit_values(c, 2)
    term = c.max_term()
    c.crash(leader)
    survivors = [i for i in c.replicas if i != leader]
    for i in survivors:
        c.replicas[i].node.campaign()  # their timers expire together
        c.persist(i)
    while c.network:  # every message of that round, the one pre-vote request each way first
        c.deliver(0)
    assert c.leader() in survivors and c.max_term() == term + 1, [c.replicas[i].node.status() for i in survivors]


def test_successor_orders_differ_from_group_to_group():
    """Leadership of a dead broker's groups spreads over the survivors instead of piling onto one."""
    firsts = []
    for g in range(300):
        log = MemoryLog()
        node = RaftNode(f"t/{g}", 2, [1, 2, 3], log, RaftConfig())
        node._become_follower(1, 1)
        firsts.append(2 if node._successor_rank() == 0 else 3)
    assert 100 < firsts.count(2) < 200, firsts.count(2)


def test_successor_orders_differ_from_term_to_term():
    """A leader lost again and again is succeeded by each survivor alike, not by the same one every time: with
    an order by CRC-32 (affine, so the comparison of two voters' CRCs barely depends on the term) orders/0's
    first successor after broker 1 was broker 2 in every term, and a test pausing leaders to move one onto
    broker 3 never got there."""
    for group in ("orders/0", "t/5", "bulk/1", "__metadata"):
        for leader in (1, 2, 3):
            firsts = []
            for term in range(1, 201):
                node = RaftNode(group, 2 if leader != 2 else 1, [1, 2, 3], MemoryLog(), RaftConfig())
                node._become_follower(term, leader)
                firsts.append(node.id if node._successor_rank() == 0 else ({1, 2, 3} - {leader, node.id}).pop())
            assert len(set(firsts)) == 2 and 60 < firsts.count(firsts[0]) < 140, (group, leader, firsts)


def test_a_new_leader_is_judged_on_quorum_an_election_timeout_after_it_won():
    """Check quorum counts the followers that answered the leader since the last check.  It ran on the multiples
    of the election timeout of the node's own clock, so a leader elected a tick before one was judged before any
    follower could answer, and stepped down: after a broker's death, one new leader in six of 10,000 partitions'
    did (711 of 4,217), each one costing another election.  Without answers it still steps down in time."""
    c = SimCluster(3, seed=16)
    leader = 1
    node = c.replicas[leader].node
    node.peer_silence = None  # the core's own rule: no host reports the followers' brokers heard
    ticks = c.cfg.election_ticks
    node.now += (-node.now - 1) % ticks  # one tick before a multiple of the election timeout
    node.campaign()
    c.persist(leader)
    while c.network:  # the election's messages, but none of the followers' answers to the new leader
        m = c.network[0]
        if m.dst == leader and m.type in (MessageType.APPEND_RESP, MessageType.HEARTBEAT_RESP):
            c.drop(0)
        else:
            c.deliver(0)
    assert node.role is Role.LEADER and node.now % ticks == ticks - 1
    node.tick()
    assert node.role is Role.LEADER, "judged before its followers could answer"
    for _ in range(ticks - 1):
        node.tick()
    assert node.role is not Role.LEADER, "kept leading an election timeout without hearing a quorum"


def test_a_leader_whose_followers_brokers_are_heard_keeps_leading_while_their_answers_are_late():
    """With thousands of groups on a broker, a group's answer can come late behind a busy event loop while the
    broker itself is heard (the host's `peer_silence`): the leader does not step down for that; once the brokers
    fall silent for an election timeout it does, within two."""
    c = SimCluster(3, seed=17, cfg=RaftConfig(election_ticks=10, heartbeat_ticks=2, quiesce=False))
    leader = elect(c)
    node = c.replicas[leader].node
    silence = {p: 0 for p in node.others}
    node.peer_silence = silence.__getitem__  # the host's broker liveness, set by the test
    c.network.clear()
    ticks = c.cfg.election_ticks
    for _ in range(3 * ticks):  # no answer from any follower reaches the leader; their brokers are heard
        node.tick()
        node.take_messages()
    assert node.role is Role.LEADER
    for t in range(2 * ticks):
        silence.update({p: t + ticks for p in node.others})  # silent for an election timeout and more
        node.tick()
        node.take_messages()
        if node.role is not Role.LEADER:
            break
    assert node.role is not Role.LEADER


def test_a_lost_probe_to_a_follower_with_nothing_to_receive_is_sent_again():
    """A new group's first leader has nothing to replicate (no no-op: nothing is left to commit); if its
    probe to a follower is lost, heartbeats alone never moved that follower out of probe, and the group
    never went quiet (10,000 new partitions heartbeating at once churned their leaders for minutes)."""
    c = SimCluster(3, seed=15)
    leader, lost = 1, 3
    c.replicas[leader].node.campaign()
    c.persist(leader)
    while c.network:
        m = c.network[0]
        if m.type is MessageType.APPEND and m.dst == lost:
            c.drop(0)
        else:
            c.deliver(0)
    assert c.replicas[leader].node.role is Role.LEADER and c.replicas[leader].node.log.last_index == 0
    c.run(4 * c.cfg.election_ticks)
    assert all(r.node.quiesced for r in c.replicas.values()), [r.node.status() for r in c.replicas.values()]


def stale_candidate_setup(pre_vote: bool):
    """Three replicas: the leader crashed; `stale` missed the last commits; `current` has them and
    has not heard from the leader for an election timeout (no leader stickiness left)."""
    cfg = RaftConfig(election_ticks=10, heartbeat_ticks=2, max_append_bytes=64, max_inflight=4, pre_vote=pre_vote)
    c = SimCluster(3, seed=12, cfg=cfg)
    leader = elect(c)
    commit_values(c, 3)
    # `current` is the leader's second successor: its timer runs past the lease (the first stands as it ends)
    stale, current = sorted((i for i in c.replicas if i != leader), key=lambda i: c.replicas[i].node._successor_rank())
    c.isolate(stale)
    missed = commit_values(c, 3)
    assert all(v in applied_data(c, current) for v in missed)
    c.crash(leader)
    c.heal()
    c.network.clear()
    node = c.replicas[current].node
    while node._in_lease():
        node.tick()
        c.persist(current)
        assert node.role is Role.FOLLOWER, "precondition: the up-to-date replica must not campaign first"
    c.network.clear()
    return c, stale, current


def test_a_candidate_with_a_stale_log_gets_no_vote_without_pre_vote():
    """Raft §5.4.1, the real vote's own up-to-date check (pre-vote off, so nothing else stands in
    the way): a replica refuses its vote to a candidate whose log lacks its committed entries."""
    c, stale, current = stale_candidate_setup(pre_vote=False)
    c.replicas[stale].node.campaign()
    c.persist(stale)
    assert [m.type for m in c.network] == [MessageType.VOTE, MessageType.VOTE]
    while c.network:
        c.deliver(0)  # check() raises if the stale candidate wins and lacks committed entries
    assert c.replicas[stale].node.role is not Role.LEADER, "the stale candidate was elected"
    assert c.replicas[current].log.vote != stale, "the up-to-date replica voted for the stale candidate"


def test_a_candidate_with_a_stale_log_is_refused_its_pre_vote_and_does_not_raise_the_term():
    """Pre-vote's up-to-date check: a stale replica's campaign ends at the pre-vote, so it
    neither becomes a candidate nor raises the group's term (no disruption on rejoin)."""
    c, stale, current = stale_candidate_setup(pre_vote=True)
    term = c.replicas[current].log.term
    c.replicas[stale].node.campaign()
    c.persist(stale)
    assert [m.type for m in c.network] == [MessageType.PREVOTE, MessageType.PREVOTE]
    while c.network:
        c.deliver(0)
    assert c.replicas[stale].node.role in (Role.PRE_CANDIDATE, Role.FOLLOWER), "the stale replica became a candidate"
    assert c.replicas[stale].log.term == c.replicas[current].log.term == term, "the stale replica raised the term"


def test_a_leader_that_keeps_leading_while_cut_off_loses_its_lease_before_another_is_elected():
    """Lease safety without check-quorum's help: the isolated leader stays leader (check-quorum
    off), so only read_allowed's quorum-contact check keeps it from serving stale reads."""
    cfg = RaftConfig(election_ticks=10, heartbeat_ticks=2, max_append_bytes=64, max_inflight=4, check_quorum=False)
    c = SimCluster(3, seed=13, cfg=cfg)
    old = elect(c)
    commit_values(c, 2)
    assert c.replicas[old].node.read_allowed()
    c.isolate(old)
    for _ in range(100):
        c.run(1)  # check() raises if the old leader may read while a newer leader exists
        if c.leader() != old:
            break
    new = c.leader()
    assert new != old, "no new leader elected"
    assert c.replicas[old].node.role is Role.LEADER, "precondition: the cut-off leader did not step down"
    assert not c.replicas[old].node.read_allowed()


def test_a_leader_gives_up_its_lease_once_it_tells_a_follower_to_take_over():
    """The target of a leadership transfer campaigns at once and its voters skip leader
    stickiness, so the old leader's lease must end with its TIMEOUT_NOW, and stay ended for the
    term even when the transfer times out first and the message arrives late."""
    c = SimCluster(3, seed=14)
    leader = elect(c)
    commit_values(c, 2)
    old = c.replicas[leader].node
    assert old.read_allowed()
    target = old.transfer_leadership()
    c.persist(leader)
    late = [m for m in c.network if m.type is MessageType.TIMEOUT_NOW]
    assert [m.dst for m in late] == [target], "precondition: the target is caught up, so it is told at once"
    c.network = [m for m in c.network if m.type is not MessageType.TIMEOUT_NOW]  # delayed past the deadline
    assert not old.read_allowed(), "the leader kept its lease after telling a follower to take over"
    c.run(old.cfg.election_ticks + 1)
    assert old.role is Role.LEADER and old.transfer_target is None, "precondition: the transfer timed out"
    assert not old.read_allowed(), "the lease came back after a timed-out transfer"
    c.network += late
    c.run(5)  # the target wins; check() raises if the old leader may still read
    assert c.leader() == target


def test_a_leader_deposed_before_its_host_sends_sends_no_appends_in_the_new_term():
    """The host takes a proposal's appends at its next pump; a newer term may arrive before
    that (e.g. while an fsync is in flight). The deposed leader must not send them then: they
    would carry the new term, and followers would take it for that term's leader."""
    c = SimCluster(3, seed=15)
    leader = elect(c)
    commit_values(c, 2)
    node = c.replicas[leader].node
    node.propose(b"late")
    other = next(i for i in c.replicas if i != leader)
    node.step(Message(MessageType.APPEND_RESP, "g", other, leader, node.log.term + 1, reject=True))
    assert node.role is Role.FOLLOWER
    appends = [m for m in node.take_messages() if m.type is MessageType.APPEND]
    assert not appends, f"a follower sent appends as the leader of term {appends[0].term}"


def test_a_delayed_rejection_never_sends_a_follower_back_before_what_it_acknowledged():
    """A rejection delayed past later acknowledgements carries an old hint (the follower's last
    index back then). The leader must not go back below the acknowledged match: it would then
    send a snapshot to a follower that is already ahead of it (found by the chaos runs)."""
    c = SimCluster(3, seed=16)
    leader = elect(c)
    commit_values(c, 10)
    node = c.replicas[leader].node
    follower = next(i for i in c.replicas if i != leader)
    pr = node.progress[follower]
    stale = Message(MessageType.APPEND_RESP, "g", follower, leader, node.log.term, reject=True, index=2,
                    log_term=pr.match + 1, context=node.now)
    node.step(stale)
    assert pr.next >= pr.match + 1, f"next {pr.next} went below the acknowledged match {pr.match}"


def test_a_follower_holding_a_snapshots_last_entry_keeps_the_acknowledged_entries_after_it():
    """Raft §7: a follower that already has the snapshot's last entry keeps its log. Installing
    the snapshot instead dropped entries it had acknowledged, which the leader went on counting
    (found by the chaos runs: an entry committed on two of five replicas)."""
    c = SimCluster(3, seed=17)
    leader = elect(c)
    commit_values(c, 6)
    node = c.replicas[leader].node
    f, g = [i for i in c.replicas if i != leader]

    def take(**match):
        taken = [m for m in c.network if all(getattr(m, k) == v for k, v in match.items())]
        c.network = [m for m in c.network if m not in taken]
        return taken

    def hand(messages, to):
        for m in messages:
            c.replicas[to].node.step(m)
        c.persist(to)

    for value in (b"a", b"b"):
        node.propose(value)
    c.persist(leader)
    hand(take(dst=f), f)
    hand(take(dst=g), g)
    take(src=f)
    acks_of_g = take(src=g)
    for value in (b"c", b"d"):
        node.propose(value)
    c.persist(leader)
    hand(take(dst=f), f)  # f holds and acknowledges c and d; it still knows the old commit index
    take(dst=g)
    acks_of_f = take(src=f)
    held = c.replicas[f].log.last_index
    assert c.replicas[f].node.commit < held - 2 and all(not m.reject for m in acks_of_f)
    hand(acks_of_g, leader)  # a and b commit and are applied: the snapshot will end there
    node._start_snapshot(f)  # as a delayed rejection made the leader do (see the test above)
    c.persist(leader)
    while any(m.type in (MessageType.SNAPSHOT, MessageType.SNAPSHOT_RESP) for m in c.network):
        c.deliver(next(k for k, m in enumerate(c.network)
                       if m.type in (MessageType.SNAPSHOT, MessageType.SNAPSHOT_RESP)))
    log = c.replicas[f].log
    assert log.last_index == held and log.durably_holds(held, node.log.term), \
        f"the follower dropped entries it had acknowledged (holds {log.last_index} of {held})"
