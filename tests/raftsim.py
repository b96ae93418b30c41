"""A deterministic in-memory cluster for testing `raftka.raft.core` without sockets.

`SimCluster` owns N replicas of one group, a network (a list of messages in
flight that the test delivers, drops, duplicates or reorders at will) and the
host's duties (persist, then send, then apply).  `MemoryLog` implements the
`RaftLog` protocol with an explicit synced prefix, so `crash()` loses exactly
what was never fsynced.  After every host step the cluster checks Raft's safety
properties (`check`) and raises `SafetyViolation` with the evidence:

* election safety: at most one leader per term;
* log matching: an (index, term) pair ever stored anywhere names one entry with
  one predecessor term, i.e. two logs that agree at an index agree on the whole
  prefix (also checked pairwise on the logs as they are: `check_logs_match`);
* committed => durable on a majority: every replica's commit index points at an
  entry that a majority holds in its synced (crash-surviving) storage, and no
  index is ever committed with two different entries;
* leader completeness: a leader holds every entry committed in an earlier term;
* lease safety: no replica may read while a newer term's leader exists;
* state-machine safety: every applied entry is the committed one.

`faults` counts what the test injected, by kind (the chaos statistics).
"""

from __future__ import annotations

import random
from collections import Counter

import orjson

from raftka.raft.core import MembershipChangeError, RaftConfig, RaftNode, Role
from raftka.raft.membership import Membership
from raftka.raft.messages import ENTRY_CONFIG, Entry, Message, MessageType, decode_message, encode_message
from raftka.raft.replica import broker_of, format_replica, incarnation_for_empty_data_dir, replica_id


LEADER_MESSAGES = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT})


class SafetyViolation(AssertionError):
    """A Raft safety property failed; the message carries the evidence."""


class LivenessFailure(AssertionError):
    """The healed cluster did not elect a leader in time (not a safety violation)."""


def named(replicas) -> str:
    """Replica ids as people read them ('2', or '2.1f2e3d4c' for a later incarnation of broker 2)."""
    if isinstance(replicas, int):
        return format_replica(replicas)
    return "[" + ", ".join(format_replica(r) for r in replicas) + "]"


CONFIG_MARK = b"@config "


def applied_form(entry: Entry) -> bytes:
    """What the simulated state machine records for an entry (the host hands it a no-op for a
    configuration entry; the simulation keeps the configuration visible, to check it like data)."""
    return CONFIG_MARK + entry.data if entry.kind == ENTRY_CONFIG else entry.data


class MemoryLog:
    """RaftLog kept in memory; `sync()` marks everything durable, `crash()` drops the rest."""

    def __init__(self):
        self.snapshot_index = 0
        self.snapshot_term = 0
        self.snapshot_config = b""
        self.term = 0
        self.vote = None
        self._entries: list[Entry] = []
        self._synced = 0  # index up to which entries are durable
        self._staged: tuple[int, bytes] | None = None  # durable at once, as the journal writes it
        self._durable = (0, 0, b"", 0, None, [])  # (snap idx, snap term, snap config, term, vote, entries)
        self.appended: list[tuple[int, int, bytes, int]] = []  # (index, term, applied form, prev. term): check()

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self._entries)

    @property
    def synced_index(self) -> int:
        return self._synced

    def term_at(self, index: int):
        if index == self.snapshot_index:
            return self.snapshot_term
        if self.snapshot_index < index <= self.last_index:
            return self._entries[index - self.snapshot_index - 1].term
        return None

    def entries(self, lo, hi, max_bytes):
        out, size = [], 0
        for i in range(max(lo, self.snapshot_index + 1), min(hi, self.last_index + 1)):
            e = self._entries[i - self.snapshot_index - 1]
            if out and size + len(e.data) > max_bytes:
                break
            out.append(e)
            size += len(e.data)
        return out

    def append(self, entries):
        for entry in entries:
            self.appended.append((self.last_index + 1, entry.term, applied_form(entry), self.term_at(self.last_index)))
            self._entries.append(entry)

    def truncate_from(self, index):
        del self._entries[index - self.snapshot_index - 1:]
        self._synced = min(self._synced, index - 1)

    def reset(self, snapshot_index, snapshot_term, config):
        self.snapshot_index, self.snapshot_term, self.snapshot_config = snapshot_index, snapshot_term, config
        self._entries = []
        self._staged = None
        self.sync()  # the journal writes a reset durably at once

    def config_at(self, index):
        for i in range(min(index, self.last_index), self.snapshot_index, -1):
            entry = self._entries[i - self.snapshot_index - 1]
            if entry.kind == ENTRY_CONFIG:
                return i, entry.data
        return self.snapshot_index, self.snapshot_config

    def bootstrap_config(self, config):
        self.snapshot_config = config

    def stage_snapshot(self, index, term, config):
        self._staged = (index, config)

    def staged_config(self, index):
        return self._staged[1] if self._staged is not None and self._staged[0] == index else b""

    def compact(self, upto):
        if upto <= self.snapshot_index or upto > self._synced:
            return
        self.snapshot_config = self.config_at(upto)[1]
        self.snapshot_term = self.term_at(upto)
        del self._entries[:upto - self.snapshot_index]
        self.snapshot_index = upto

    def set_hard_state(self, term, vote):
        self.term, self.vote = term, vote

    def sync(self):
        self._synced = self.last_index
        self._durable = (self.snapshot_index, self.snapshot_term, self.snapshot_config, self.term, self.vote,
                         list(self._entries))

    def crash(self):
        self.snapshot_index, self.snapshot_term, self.snapshot_config, self.term, self.vote, entries = self._durable
        self._entries = list(entries)
        self._synced = self.last_index

    def durably_holds(self, index, term) -> bool:
        """Would entry (index, term) survive a crash now (in synced entries or below the snapshot)?"""
        snapshot_index, snapshot_term, _, _, _, entries = self._durable
        if index < snapshot_index:
            return True  # compacted: applied, hence committed (check() verifies applied entries)
        if index == snapshot_index:
            return snapshot_term == term
        i = index - snapshot_index - 1
        return i < len(entries) and entries[i].term == term


class ListMachine:
    """State machine: the list of applied (index, data); also its own snapshotter."""

    def __init__(self, chunk=3):
        self.chunk = chunk  # entries per snapshot chunk
        self.applied: list[tuple[int, bytes]] = []
        self.applied_term = 0
        self.staging: list[tuple[int, bytes]] | None = None
        self.staging_base = 0

    def apply(self, index, entry):
        assert index == len(self.applied) + 1, (index, len(self.applied))
        self.applied.append((index, entry.data))
        self.applied_term = entry.term

    def begin_install(self) -> bytes:
        self.staging_base = len(self.applied)
        self.staging: list[tuple[int, bytes]] = []
        return str(self.staging_base).encode()

    def read_chunk(self, cursor: bytes):
        start = int(cursor)
        part = self.applied[start:start + self.chunk]
        done = start + len(part) >= len(self.applied)
        return orjson.dumps([[i, d.hex()] for i, d in part]), done, len(self.applied) if done else 0

    def install_chunk(self, data: bytes) -> bytes:
        """Stage a chunk; the live state changes only in finish_install."""
        staged = self.staging
        if staged is None:
            return self.begin_install()
        for i, d in orjson.loads(data):
            if i == self.staging_base + len(staged) + 1:
                staged.append((i, bytes.fromhex(d)))
        return str(self.staging_base + len(staged)).encode()

    def finish_install(self, index: int, term: int) -> bool:
        staged, self.staging = self.staging, None
        if staged is None or self.staging_base != len(self.applied) or self.staging_base + len(staged) != index:
            return False
        self.applied.extend(staged)
        self.applied_term = term
        return True


class Replica:
    def __init__(self, node_id, peers, cfg, rng, snapshot_chunk=3, peer_silence=None):
        self.id = node_id
        self.peer_silence = peer_silence  # the host's liveness hook (RaftNode.peer_silence)
        self.peers = peers
        self.cfg = cfg
        self.rng = rng
        self.log = MemoryLog()
        self.sm = ListMachine(snapshot_chunk)
        self.up = True
        self.held: list[Message] = []  # taken from the node, to be sent once the host has synced
        self.restart()

    def restart(self):
        self.node = RaftNode("g", self.id, self.peers, self.log, self.cfg, applied=len(self.sm.applied),
                             applied_term=self.sm.applied_term, snapshotter=self.sm, rng=random.Random(self.rng.random()))
        self.node.peer_silence = self.peer_silence


class SimCluster:
    def __init__(self, n=3, seed=0, cfg: RaftConfig | None = None, snapshot_chunk=3):
        self.rng = random.Random(seed)
        self.cfg = cfg or RaftConfig(election_ticks=10, heartbeat_ticks=2, max_append_bytes=64, max_inflight=4)
        peers = list(range(1, n + 1))
        self.initial = peers  # the bootstrap membership every replica is started with (as the broker does)
        self.retired: set[int] = set()  # replicas removed from the group and deleted
        self.leaving: set[int] = set()  # replicas a membership move takes out of the group (chaos runs)
        self.snapshot_chunk = snapshot_chunk
        self.replicas = {i: self.new_replica(i, peers) for i in peers}
        self.network: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()
        self.leaders_by_term: dict[int, int] = {}
        self.committed: dict[int, bytes] = {}  # index -> data of the entry known committed there
        self.committed_term: dict[int, int] = {}  # index -> term of that entry
        self.commit_term: dict[int, int] = {}  # index -> a term by which it was known committed
        self.acked: dict[bytes, int] = {}  # proposals known committed at their leader
        self.pending: dict[int, dict[int, tuple[int, bytes]]] = {i: {} for i in peers}
        self.counter = 0
        self.faults: Counter[str] = Counter()
        self.lost_logs: list[tuple[int, MemoryLog]] = []  # (replica, its durable log) of disks lost by wipe()
        self.ticks = 0
        self.last_heard: dict[tuple[int, int], int] = {}  # (i, j) -> tick at which i's broker last heard j's
        self._ever_stored: dict[tuple[int, int], tuple[bytes, int]] = {}  # (index, term) -> (data, previous term)
        self._noted_commit: dict[int, int] = {}  # replica -> its commit index already checked
        self._complete_upto: dict[int, int] = {}  # term -> committed index up to which its leader was checked
        self._applied_checked: dict[int, int] = {}  # replica -> applied entries already checked

    # --- host duties -------------------------------------------------------

    def new_replica(self, i, peers) -> Replica:
        """Replica i, hooked to broker-level liveness as RaftHost hooks its nodes."""
        return Replica(i, peers, self.cfg, self.rng, self.snapshot_chunk, peer_silence=lambda j: self.silence(i, j))

    def persist(self, i):
        r = self.replicas[i]
        if not r.up:
            return
        r.log.sync()
        r.node.persisted()
        held, r.held = r.held, []
        for m in held + r.node.take_messages():
            # Every message crosses the wire codec, so the codec is exercised too.
            self.network.append(decode_message(encode_message(m)))
        for index, entry in r.node.take_committed():
            entry = Entry(entry.term, applied_form(entry))
            r.sm.apply(index, entry)
            self._record_commit(i, index, entry.term, entry.data)
            waiting = self.pending[i].pop(index, None)
            if waiting is not None and waiting[0] == entry.term:
                self.acked[waiting[1]] = index
        self.check()

    def _record_commit(self, i, index, term, data):
        prev = self.committed.get(index)
        if prev is not None and (prev, self.committed_term[index]) != (data, term):
            raise SafetyViolation(f"state machine safety: index {index} committed as {prev!r} "
                                  f"(term {self.committed_term[index]}) and as {data!r} (term {term}) on {named(i)}")
        self.committed[index] = data
        self.committed_term[index] = term
        self.commit_term.setdefault(index, self.replicas[i].node.log.term)

    def send_before_sync(self, i):
        """A leader's host may send its appends before its own fsync (Raft thesis 10.2.1), as long
        as the leader counts itself only for synced entries; anything else waits for the sync."""
        r = self.replicas[i]
        if not r.up or r.node.role is not Role.LEADER:
            return
        self.faults["leader sends before fsync"] += 1
        for m in r.node.take_messages():
            if m.type in LEADER_MESSAGES and m.term == r.node.log.term:
                self.network.append(decode_message(encode_message(m)))
            else:
                r.held.append(m)

    def tick_all(self, unsynced=()):
        """One tick everywhere; replicas in `unsynced` are not persisted (their fsync is late)."""
        self.ticks += 1
        for i in self.replicas:
            for j in self.replicas:
                if j != i and self.reachable(j, i):
                    self.last_heard[i, j] = self.ticks  # broker-level heartbeats get through
        for i, r in self.replicas.items():
            if r.up:
                self.wake_like_host(i)
                r.node.tick()
                if i not in unsynced:
                    self.persist(i)

    def reachable(self, src, dst):
        return src in self.replicas and self.replicas[src].up and (src, dst) not in self.blocked

    def silence(self, i, j) -> int:
        """Ticks since i's broker last heard j's (RaftHost's broker liveness)."""
        return self.ticks - self.last_heard.get((i, j), 0)

    def silent(self, i, j):
        """Has j's broker been silent to i's for an election timeout?"""
        return self.silence(i, j) >= self.cfg.election_ticks

    def wake_like_host(self, i):
        """What RaftHost does from broker-level liveness for a quiesced replica."""
        node = self.replicas[i].node
        if not node.quiesced:
            return
        if node.role is Role.LEADER:
            if not node.quorum_with(j for j in node.others if not self.silent(i, j)):
                node.wake()  # a quorum's brokers went silent: resume heartbeats and check-quorum
            elif node.follower_behind():
                node.wake()  # a follower that was down when the group went quiet is back: catch it up
        elif node.leader is not None and self.silent(i, node.leader):
            node.wake(leader_lost=True)

    def propose(self, i, persist=True):
        r = self.replicas[i]
        if not r.up or r.node.role is not Role.LEADER or r.node.transfer_target is not None:
            return None
        self.counter += 1
        data = b"v%d" % self.counter
        index, term = r.node.propose(data)
        self.pending[i][index] = (term, data)
        if persist:
            self.persist(i)
        else:
            self.faults["unsynced proposal"] += 1
        return data

    def deliver(self, k, duplicate=False, persist=True):
        """Deliver message k; with persist=False the host has not fsynced yet (a crash loses the step)."""
        if not self.network:
            return
        k %= len(self.network)
        m = self.network[k] if duplicate else self.network.pop(k)
        dst = self.replicas.get(m.dst)  # None: addressed to a replica whose disk was lost
        if dst is None or not dst.up or (m.src, m.dst) in self.blocked:
            return
        if duplicate:
            self.faults["duplicate"] += 1
        if not persist:
            self.faults["unsynced step"] += 1
        dst.node.step(m)
        if persist:
            self.persist(m.dst)

    def drop(self, k):
        if self.network:
            self.network.pop(k % len(self.network))
            self.faults["loss"] += 1

    def crash(self, i):
        r = self.replicas[i]
        if r.up:
            self.faults["crash"] += 1
            self.faults["unsynced entries lost"] += r.log.last_index - r.log.synced_index
        r.up = False
        r.node.take_messages()  # never sent: the host had not synced
        r.held = []
        r.log.crash()
        self.pending[i].clear()
        self.network = [m for m in self.network if m.src != i]

    def recover(self, i):
        r = self.replicas[i]
        if r.up:
            return
        self.faults["restart"] += 1
        r.up = True
        r.restart()

    def compact(self, i):
        r = self.replicas[i]
        if r.up:
            before = r.log.snapshot_index
            r.log.compact(min(len(r.sm.applied), r.log.synced_index))
            if r.log.snapshot_index > before:
                self.faults["compaction"] += 1

    def wipe(self, i):
        """Disk loss: replica i's broker restarts with an empty data dir; returns the new replica's id."""
        self.crash(i)
        self.faults["disk loss"] += 1
        incarnation = incarnation_for_empty_data_dir(cluster_formed=True, rng=self.rng)
        new = replica_id(broker_of(i), incarnation)
        self.lost_logs.append((i, self.replicas[i].log))  # what the lost disk held (see _check_commit_index)
        del self.replicas[i]
        self.replicas[new] = self.new_replica(new, self.initial)
        self.pending[new] = {}
        return new

    def add_spare(self) -> int:
        """Start a replica on a broker the group never had (the broker hosts it with the group's first
        membership, which does not name it): it joins only once a leader adds it as a learner."""
        broker = max(broker_of(r) for r in [*self.replicas, *self.initial, *self.retired]) + 1
        new = replica_id(broker, 0)
        self.replicas[new] = self.new_replica(new, self.initial)
        self.pending[new] = {}
        return new

    def retire(self, i):
        """Replica i was removed from the group: its broker stops hosting it and deletes its data."""
        self.crash(i)
        del self.replicas[i]
        self.retired.add(i)

    def change_membership(self, target: Membership):
        """Propose `target` at the current leader (raises what propose_membership raises)."""
        leader = self.leader()
        try:
            self.replicas[leader].node.propose_membership(target)
        except MembershipChangeError as exc:
            if "not yet committed an entry of term" not in str(exc):
                raise
            self.run(5)  # the refusal appended the leader's no-op (a new leader appends one only if it must)
            leader = self.leader()
            self.replicas[leader].node.propose_membership(target)
        self.persist(leader)

    def membership(self) -> Membership:
        return self.replicas[self.leader()].node.membership

    def isolate(self, i):
        self.faults["isolation"] += 1
        for j in self.replicas:
            if j != i:
                self.blocked |= {(i, j), (j, i)}

    def heal(self):
        if self.blocked:
            self.faults["heal"] += 1
        self.blocked.clear()

    def run(self, ticks, deliver_all=True):
        for _ in range(ticks):
            self.tick_all()
            while deliver_all and self.network:
                self.deliver(0)

    def leader(self):
        leaders = [i for i, r in self.replicas.items() if r.up and r.node.role is Role.LEADER]
        return max(leaders, key=lambda i: self.replicas[i].node.log.term) if leaders else None

    def max_term(self) -> int:
        return max(r.log.term for r in self.replicas.values())

    # --- safety properties -------------------------------------------------

    def check(self):
        self._check_log_matching()
        for i, r in self.replicas.items():
            n = r.node
            if r.up and n.role is Role.LEADER:
                other = self.leaders_by_term.setdefault(n.log.term, i)
                if other != i:
                    raise SafetyViolation(f"election safety: {named(other)} and {named(i)} both leaders in term "
                                          f"{n.log.term}")
        for i, r in self.replicas.items():
            if r.up:
                self._check_commit_index(i)
        for i, r in self.replicas.items():
            if r.up and r.node.role is Role.LEADER:
                self._check_leader_completeness(i)
        readers = [i for i, r in self.replicas.items() if r.up and r.node.read_allowed()]
        for i in readers:
            newer = [j for j, r in self.replicas.items()
                     if j != i and r.up and r.node.role is Role.LEADER
                     and r.node.log.term > self.replicas[i].node.log.term]
            if newer:
                raise SafetyViolation(f"lease: {named(i)} may read while {named(newer)} lead a newer term")
        for i, r in self.replicas.items():
            for index, data in r.sm.applied[self._applied_checked.get(i, 0):]:
                if self.committed.get(index) != data:
                    raise SafetyViolation(f"replica {named(i)} applied {data!r} at {index} not committed as such")
            self._applied_checked[i] = len(r.sm.applied)

    def _check_log_matching(self):
        """Every (index, term) ever stored names one entry and one predecessor term."""
        for i, r in self.replicas.items():
            for index, term, data, prev_term in r.log.appended:
                known = self._ever_stored.setdefault((index, term), (data, prev_term))
                if known != (data, prev_term):
                    raise SafetyViolation(
                        f"log matching: replica {named(i)} stores index {index} term {term} as {data!r} after term "
                        f"{prev_term}; another log has {known[0]!r} after term {known[1]}")
            r.log.appended.clear()

    def _check_commit_index(self, i):
        """What replica i considers committed is one entry per index, durably stored on a majority."""
        r = self.replicas[i]
        commit = r.node.commit
        noted = self._noted_commit.get(i, 0)
        if commit <= noted:
            return
        for index in range(noted + 1, commit + 1):
            if index <= r.log.snapshot_index:
                data, term = r.sm.applied[index - 1][1], self.committed_term.get(index)
                if term is None:
                    continue  # installed from a snapshot: the applied-entries check covers it
            else:
                term = r.log.term_at(index)
                data = applied_form(r.log.entries(index, index + 1, 1 << 30)[0])
            self._record_commit(i, index, term, data)
        self._noted_commit[i] = commit
        term = self.committed_term.get(commit)
        if term is None:
            return
        logs = [(j, o.log) for j, o in self.replicas.items()] + self.lost_logs  # lost later: held when committed
        holders = {j for j, log in logs if log.durably_holds(commit, term)}
        # A majority of the voters of the configuration at that index on i, or of any replica's newest
        # one: a leader counts with its newest configuration, one voter changes at a time.
        configs = [Membership.decode(data) for data in {r.log.config_at(commit)[1]} | {
            o.log.config_at(o.log.last_index)[1] for o in self.replicas.values()} if data]
        if configs and not any(len(holders & c.voters) > len(c.voters) // 2 for c in configs):
            raise SafetyViolation(f"replica {named(i)} has index {commit} (term {term}) committed, but only "
                                  f"{named(sorted(holders))} hold it durably "
                                  f"(voters {named(sorted(configs[-1].voters))})")

    def _check_leader_completeness(self, i):
        """The leader of term T holds every entry committed in an earlier term."""
        r = self.replicas[i]
        n = r.node
        term = n.log.term
        index = self._complete_upto.get(term, 0) + 1
        while index in self.committed:
            if self.commit_term[index] < term:
                if index <= n.log.snapshot_index:
                    held = r.sm.applied[index - 1][1] if index <= len(r.sm.applied) else None
                elif index <= n.log.last_index:
                    held = applied_form(n.log.entries(index, index + 1, 1 << 30)[0])
                else:
                    raise SafetyViolation(f"leader completeness: leader {named(i)} of term {term} misses committed "
                                          f"index {index}")
                if held != self.committed[index]:
                    raise SafetyViolation(f"leader completeness: leader {named(i)} of term {term} has {held!r} at "
                                          f"committed index {index}, not {self.committed[index]!r}")
            index += 1
        self._complete_upto[term] = index - 1

    def check_logs_match(self):
        """Log matching on the logs as they are now: where two logs agree on (index, term), so do their prefixes."""
        ids = sorted(self.replicas)
        for a in ids:
            for b in ids:
                if a >= b:
                    continue
                la, lb = self.replicas[a].log, self.replicas[b].log
                lo = max(la.snapshot_index, lb.snapshot_index) + 1
                hi = min(la.last_index, lb.last_index)
                agree = next((k for k in range(hi, lo - 1, -1) if la.term_at(k) == lb.term_at(k)), None)
                if agree is None:
                    continue
                ea, eb = la.entries(lo, agree + 1, 1 << 30), lb.entries(lo, agree + 1, 1 << 30)
                if ea != eb:
                    k = next(lo + x for x, (p, q) in enumerate(zip(ea, eb)) if p != q)
                    raise SafetyViolation(f"log matching: replicas {named(a)} and {named(b)} agree at index {agree} "
                                          f"(term {la.term_at(agree)}) but differ at {k}: {ea[k - lo]} vs {eb[k - lo]}")
