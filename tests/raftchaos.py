"""Seeded chaos runs of the Raft core on `SimCluster`: the fault schedule, its statistics and
readable failures.

A run is fully determined by its `ChaosPlan` (group size, seed, steps, pre-vote on or off).
The seed also draws the fault rates, each from a range bounded away from zero, so every
fault kind occurs in nearly every run: message loss, reordering (delay), duplication,
steps whose fsync has not happened yet, crashes that lose unsynced entries, restarts,
symmetric partitions and one-way link cuts, heals, compactions (followers then catch up
through snapshots), leadership transfers, leaders that send before their own fsync, disk
loss with the membership repair the broker would plan after it, and membership moves (the
group grows by a new replica, or shrinks by one, as a reassignment would) — one membership
matter at a time, each carried out in single steps by `membership.next_step`.
Each step ticks every replica, proposes
1-3 entries to the leader most of the time and delivers the network under those faults;
`SimCluster.check` runs after every host step.  At the end the cluster is healed and must
converge without losing an acknowledged entry.

A failure is a `ChaosFailure` naming the plan (enough to reproduce it), the step, the
violated property and the last notable events.  `ChaosResult.summary()` is the one-line
statistics that tests/conftest.py prints in the "raft simulation" section of the test log.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from raftka.raft.core import RaftConfig
from raftka.raft.core import MembershipChangeError, NotLeaderError
from raftka.raft.membership import Membership, next_step
from raftka.raft.messages import MessageType
from raftka.raft.replica import format_replica

from raftsim import LivenessFailure, SafetyViolation, SimCluster

STEPS = 1000
SNAPSHOT_CHUNK = 40  # entries per chunk: a snapshot of a few hundred entries takes about ten round trips
RATE_RANGES = {  # per message (loss, delay, duplicate, unsynced) or per step (the others)
    "loss": (0.02, 0.15),
    "delay": (0.05, 0.3),
    "duplicate": (0.01, 0.05),
    "unsynced": (0.1, 0.4),
    "send early": (0.2, 0.6),  # an unsynced leader sends its appends before its fsync
    "crash": (0.01, 0.04),
    "restart": (0.05, 0.2),  # per down replica
    "partition": (0.01, 0.04),
    "cut": (0.005, 0.02),
    "heal": (0.05, 0.2),
    "compact": (0.02, 0.08),
    "transfer": (0.005, 0.02),
    "disk loss": (0.002, 0.006),  # one at a time: the next waits until the membership is repaired
    "membership move": (0.003, 0.008),  # grow by a new replica or shrink by one, like a reassignment
}
MIN_VOTERS, MAX_EXTRA_VOTERS = 3, 2  # moves keep the group between 3 and n + 2 voters


BUDGET_ENV = "RAFTKA_SIM_BUDGET"  # seconds of extra chaos runs (fresh seeds) for test_chaos_budget
SEED_ENV = "RAFTKA_SIM_SEED"  # first seed of those runs (default: random, printed)


@dataclass(frozen=True)
class ChaosPlan:
    n: int
    seed: int
    steps: int = STEPS
    pre_vote: bool = True

    def rates(self) -> dict[str, float]:
        rng = random.Random(f"rates-{self.seed}")
        return {kind: rng.uniform(lo, hi) for kind, (lo, hi) in RATE_RANGES.items()}

    def __str__(self) -> str:
        return f"ChaosPlan(n={self.n}, seed={self.seed}, steps={self.steps}, pre_vote={self.pre_vote})"


DEFAULT_PLANS = [ChaosPlan(n, seed, STEPS, pre_vote)
                 for seed in range(16) for n in (3, 5) for pre_vote in (True, False)]


@dataclass
class ChaosResult:
    plan: ChaosPlan
    acked: int
    max_term: int
    leaders: int  # terms that had a leader
    faults: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults.items()))
        return (f"n={self.plan.n} seed={self.plan.seed} pre-vote {'on ' if self.plan.pre_vote else 'off'}: "
                f"{self.acked} acked, max term {self.max_term}, {self.leaders} leaders, {self.seconds:.2f} s | "
                f"{faults}")


class ChaosFailure(SafetyViolation):
    """A safety property failed in a chaos run; says how to reproduce it."""


def raft_config(pre_vote: bool) -> RaftConfig:
    return RaftConfig(election_ticks=10, heartbeat_ticks=2, max_append_bytes=64, max_inflight=4, pre_vote=pre_vote)


def run_chaos(plan: ChaosPlan) -> ChaosResult:
    started = time.perf_counter()
    c = SimCluster(plan.n, seed=plan.seed, cfg=raft_config(plan.pre_vote), snapshot_chunk=SNAPSHOT_CHUNK)
    events: deque[str] = deque(maxlen=12)
    rates = plan.rates()
    unsynced: set[int] = set()  # replicas whose last steps are not fsynced yet
    step = 0
    try:
        for step in range(1, plan.steps + 1):
            _chaos_step(c, plan, rates, step, events, unsynced)
            if step % 25 == 0:
                c.check_logs_match()
        step = plan.steps + 1
        events.append("end: heal, restart all, converge")
        converge(c)
    except SafetyViolation as violation:
        raise ChaosFailure(f"{plan} step {step}: {violation}\n  last events: " + "; ".join(events)) from None
    return ChaosResult(plan, len(c.acked), c.max_term(), len(c.leaders_by_term), c.faults,
                       time.perf_counter() - started)


def _chaos_step(c: SimCluster, plan: ChaosPlan, rates: dict[str, float], step: int, events: deque[str],
                unsynced: set[int]) -> None:
    rng = c.rng
    ids = list(c.replicas)
    leader_before = c.leader()
    c.tick_all(unsynced)
    if rng.random() < 0.7:
        leader = c.leader()
        if leader is not None:
            for _ in range(rng.randrange(1, 4)):
                persist = leader not in unsynced and rng.random() > rates["unsynced"]
                c.propose(leader, persist=persist)
                if not persist:
                    unsynced.add(leader)
    leader = c.leader()
    if leader in unsynced and rng.random() < rates["send early"]:
        c.send_before_sync(leader)
    batch, c.network = c.network, []
    rng.shuffle(batch)
    for m in batch:
        roll = rng.random()
        if roll < rates["loss"]:
            c.faults["loss"] += 1
            continue
        c.network.append(m)
        if roll < rates["loss"] + rates["delay"]:
            c.faults["delay"] += 1
            continue
        if m.type is MessageType.SNAPSHOT and m.final:
            c.faults["snapshot install"] += 1
        if rng.random() < rates["duplicate"]:
            c.deliver(len(c.network) - 1, duplicate=True)
        persist = m.dst not in unsynced and rng.random() > rates["unsynced"]
        c.deliver(len(c.network) - 1, persist=persist)
        if not persist and m.dst in c.replicas:  # (not to a replica whose disk was lost)
            unsynced.add(m.dst)
    if rng.random() < rates["crash"]:
        up = [i for i in ids if c.replicas[i].up]
        # Mostly a majority stays up; one crash in five may take the group below it for a while.
        if len(up) - 1 > plan.n // 2 or (len(up) > 1 and rng.random() < 0.2):
            victim = rng.choice(sorted(unsynced) if unsynced and rng.random() < 0.5 else up)
            events.append(f"{step}: crash {victim} (unsynced {c.replicas[victim].log.last_index}"
                          f">{c.replicas[victim].log.synced_index})")
            c.crash(victim)
            unsynced.discard(victim)
    for i in sorted(unsynced):  # the others' steps stay unsynced into the next step
        if rng.random() < 0.5 or not c.replicas[i].up:
            c.persist(i)
            unsynced.discard(i)
    for i in ids:
        if not c.replicas[i].up and rng.random() < rates["restart"]:
            events.append(f"{step}: restart {i}")
            c.recover(i)
    roll = rng.random()
    if roll < rates["partition"]:
        c.heal()
        side = rng.sample(ids, rng.randrange(1, len(ids)))
        for i in side:
            for j in ids:
                if j not in side:
                    c.blocked |= {(i, j), (j, i)}
        c.faults["partition"] += 1
        events.append(f"{step}: partition {sorted(side)}|{sorted(set(ids) - set(side))}")
    elif roll < rates["partition"] + rates["cut"]:
        src, dst = rng.sample(ids, 2)
        c.blocked.add((src, dst))
        c.faults["one-way cut"] += 1
        events.append(f"{step}: cut {src}->{dst}")
    elif c.blocked and rng.random() < rates["heal"]:
        events.append(f"{step}: heal")
        c.heal()
    if rng.random() < rates["compact"]:
        victim = c.leader() if rng.random() < 0.5 and c.leader() is not None else rng.choice(ids)
        before = c.replicas[victim].log.snapshot_index
        c.compact(victim)
        if c.replicas[victim].log.snapshot_index > before:
            events.append(f"{step}: compact {victim} to {c.replicas[victim].log.snapshot_index}")
    if rng.random() < rates["disk loss"] and not repair_pending(c):
        victim = rng.choice(ids)
        new = c.wipe(victim)
        unsynced.discard(victim)
        events.append(f"{step}: disk of {format_replica(victim)} lost, back as {format_replica(new)}")
    elif rng.random() < rates["membership move"] and not repair_pending(c):
        desired = wanted(c)
        if rng.random() < 0.5 and len(desired) < plan.n + MAX_EXTRA_VOTERS:
            new = c.add_spare()
            c.faults["grow"] += 1
            events.append(f"{step}: move: add replica {format_replica(new)}")
        elif len(desired) > MIN_VOTERS:
            victim = rng.choice(sorted(desired))
            c.leaving.add(victim)
            c.faults["shrink"] += 1
            events.append(f"{step}: move: remove replica {format_replica(victim)}")
    repair_membership(c, events, step)
    retire_removed(c, events, step, unsynced)
    if rng.random() < rates["transfer"]:
        leader = c.leader()
        if leader is not None:
            target = c.replicas[leader].node.transfer_leadership()
            if target is not None:
                c.faults["transfer"] += 1
                events.append(f"{step}: transfer {leader}->{target}")
                c.persist(leader)
    leader = c.leader()
    if leader != leader_before and leader is not None:
        events.append(f"{step}: {leader} leads term {c.replicas[leader].node.log.term}")


def wanted(c: SimCluster) -> frozenset[int]:
    """The voters the group should have: every replica there is, but those leaving."""
    return frozenset(c.replicas) - c.leaving


def repair_pending(c: SimCluster) -> bool:
    """Does a replica's membership differ from the wanted voters, or is a replica still leaving?"""
    desired = Membership.of(wanted(c))
    return bool(c.leaving) or any(c.replicas[r].node.membership != desired for r in wanted(c))


def retire_removed(c: SimCluster, events: deque[str], step: int | str, unsynced: set[int]) -> None:
    """A leaving replica whose removal the leader has committed is stopped and deleted (as its broker would)."""
    leader = c.leader()
    if leader is None:
        return
    node = c.replicas[leader].node
    if node.membership_index > node.commit:
        return
    for r in sorted(c.leaving - node.membership.members):
        c.leaving.discard(r)
        c.retire(r)
        unsynced.discard(r)
        events.append(f"{step}: replica {format_replica(r)} removed and deleted")


def repair_membership(c: SimCluster, events: deque[str], step: int | str) -> None:
    """What the broker's membership planner does: the leader takes the next single step toward
    every present replica as a voter (a lost replica swapped for its successor, promoted once
    caught up)."""
    leader = c.leader()
    if leader is None:
        return
    node = c.replicas[leader].node
    caught_up = frozenset(p for p in node.membership.learners if node.progress[p].match >= node.commit)
    target = next_step(node.membership, wanted(c), caught_up)
    if target is None:
        return
    try:
        node.propose_membership(target)
    except (MembershipChangeError, NotLeaderError):
        return  # not now: an uncommitted change, no entry of this term yet, or a transfer
    c.faults["membership change"] += 1
    events.append(f"{step}: {leader} proposes {target.describe()}")
    c.persist(leader)


def elect(c: SimCluster, ticks: int = 60) -> int:
    for _ in range(ticks):
        c.run(1)
        if c.leader() is not None:
            return c.leader()
    raise LivenessFailure("no leader elected")


def converge(c: SimCluster) -> None:
    """Heal everything: the replicas must agree and keep every acknowledged entry."""
    c.heal()
    for i in c.replicas:
        c.persist(i)
        c.recover(i)
    for _ in range(100):  # finish a membership change in progress: every wanted replica a voter
        c.run(5)
        if not repair_pending(c):
            break
        repair_membership(c, deque(), "end")
        retire_removed(c, deque(), "end", set())
    c.run(150)
    leader = elect(c, 100)
    c.propose(leader)
    c.run(30)
    reference = c.replicas[leader].sm.applied
    for i, r in c.replicas.items():
        if r.sm.applied != reference:
            raise SafetyViolation(f"replica {i} diverged after heal: {len(r.sm.applied)} applied entries vs "
                                  f"{len(reference)} on leader {leader}")
    applied_values = {d for _, d in reference}
    lost = [v for v in c.acked if v not in applied_values]
    if lost:
        raise SafetyViolation(f"acknowledged entries lost: {lost[:10]}")
    c.check_logs_match()

