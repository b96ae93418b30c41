"""A deterministic in-memory cluster for testing `raftka.raft.core` without sockets.

`SimCluster` owns N replicas of one group, a network (a list of messages in
flight that the test delivers, drops, duplicates or reorders at will) and the
host's duties (persist, then send, then apply).  `MemoryLog` implements the
`RaftLog` protocol with an explicit synced prefix, so `crash()` loses exactly
what was never fsynced.  After every action the cluster checks Raft's safety
properties and raises `SafetyViolation` with the evidence.
"""

from __future__ import annotations

import random

import orjson

from raftka.raft.core import RaftConfig, RaftNode, Role
from raftka.raft.membership import Membership
from raftka.raft.replica import broker_of, incarnation_for_empty_data_dir, replica_id
from raftka.raft.messages import ENTRY_CONFIG, Entry, Message, decode_message, encode_message


class SafetyViolation(AssertionError):
    pass


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
        self._entries.extend(entries)

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


class ListMachine:
    """State machine: the list of applied (index, data); also its own snapshotter."""

    CHUNK = 3

    def __init__(self):
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
        part = self.applied[start:start + self.CHUNK]
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
    def __init__(self, node_id, peers, cfg, rng):
        self.id = node_id
        self.peers = peers
        self.cfg = cfg
        self.rng = rng
        self.log = MemoryLog()
        self.sm = ListMachine()
        self.up = True
        self.restart()

    def restart(self):
        self.node = RaftNode("g", self.id, self.peers, self.log, self.cfg, applied=len(self.sm.applied),
                             applied_term=self.sm.applied_term, snapshotter=self.sm, rng=random.Random(self.rng.random()))


class SimCluster:
    def __init__(self, n=3, seed=0, cfg: RaftConfig | None = None):
        self.rng = random.Random(seed)
        self.cfg = cfg or RaftConfig(election_ticks=10, heartbeat_ticks=2, max_append_bytes=64, max_inflight=4)
        peers = list(range(1, n + 1))
        self.initial = peers  # the bootstrap membership every replica is started with (as the broker does)
        self.replicas = {i: Replica(i, peers, self.cfg, self.rng) for i in peers}
        self.network: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()
        self.leaders_by_term: dict[int, int] = {}
        self.committed: dict[int, bytes] = {}  # index -> data, as applied anywhere
        self.commit_term: dict[int, int] = {}  # index -> a term by which it was known committed
        self.acked: dict[bytes, int] = {}  # proposals known committed at their leader
        self.pending: dict[int, dict[int, tuple[int, bytes]]] = {i: {} for i in peers}
        self.counter = 0

    # --- host duties -------------------------------------------------------

    def persist(self, i):
        r = self.replicas[i]
        if not r.up:
            return
        r.log.sync()
        r.node.persisted()
        for m in r.node.take_messages():
            # Every message crosses the wire codec, so the codec is exercised too.
            self.network.append(decode_message(encode_message(m)))
        for index, entry in r.node.take_committed():
            entry = Entry(entry.term, applied_form(entry))
            r.sm.apply(index, entry)
            self._record_commit(i, index, entry)
        self.check()

    def _record_commit(self, i, index, entry):
        prev = self.committed.get(index)
        if prev is not None and prev != entry.data:
            raise SafetyViolation(f"state machine safety: index {index} applied as {prev!r} and {entry.data!r}")
        self.committed[index] = entry.data
        self.commit_term.setdefault(index, self.replicas[i].node.log.term)
        waiting = self.pending[i].pop(index, None)
        if waiting is not None and waiting[0] == entry.term:
            self.acked[waiting[1]] = index

    def tick_all(self):
        for i, r in self.replicas.items():
            if r.up:
                self.wake_like_host(i)
                r.node.tick()
                self.persist(i)

    def reachable(self, src, dst):
        return src in self.replicas and self.replicas[src].up and (src, dst) not in self.blocked

    def wake_like_host(self, i):
        """What RaftHost does from broker-level liveness for a quiesced replica."""
        node = self.replicas[i].node
        if not node.quiesced:
            return
        if node.role is Role.LEADER:
            if not node.quorum_with(j for j in node.others if self.reachable(j, i)):
                node.wake()  # a quorum's brokers went silent: resume heartbeats and check-quorum
        elif node.leader is not None and not self.reachable(node.leader, i):
            node.wake(leader_lost=True)

    def propose(self, i, persist=True):
        r = self.replicas[i]
        if not r.up or r.node.role is not Role.LEADER:
            return None
        self.counter += 1
        data = b"v%d" % self.counter
        index, term = r.node.propose(data)
        self.pending[i][index] = (term, data)
        if persist:
            self.persist(i)
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
        dst.node.step(m)
        if persist:
            self.persist(m.dst)

    def drop(self, k):
        if self.network:
            self.network.pop(k % len(self.network))

    def crash(self, i):
        r = self.replicas[i]
        r.up = False
        r.node.take_messages()  # never sent: the host had not synced
        r.log.crash()
        self.pending[i].clear()
        self.network = [m for m in self.network if m.src != i]

    def recover(self, i):
        r = self.replicas[i]
        if r.up:
            return
        r.up = True
        r.restart()

    def compact(self, i):
        r = self.replicas[i]
        if r.up:
            r.log.compact(min(len(r.sm.applied), r.log.synced_index))

    def wipe(self, i):
        """Disk loss: replica i's broker restarts with an empty data dir; returns the new replica's id."""
        self.crash(i)
        incarnation = incarnation_for_empty_data_dir(cluster_formed=True, rng=self.rng)
        new = replica_id(broker_of(i), incarnation)
        del self.replicas[i]
        self.replicas[new] = Replica(new, self.initial, self.cfg, self.rng)
        self.pending[new] = {}
        return new

    def change_membership(self, target: Membership):
        """Propose `target` at the current leader (raises what propose_membership raises)."""
        leader = self.leader()
        self.replicas[leader].node.propose_membership(target)
        self.persist(leader)

    def membership(self) -> Membership:
        return self.replicas[self.leader()].node.membership

    def isolate(self, i):
        for j in self.replicas:
            if j != i:
                self.blocked |= {(i, j), (j, i)}

    def heal(self):
        self.blocked.clear()

    def run(self, ticks, deliver_all=True):
        for _ in range(ticks):
            self.tick_all()
            while deliver_all and self.network:
                self.deliver(0)

    def leader(self):
        leaders = [i for i, r in self.replicas.items() if r.up and r.node.role is Role.LEADER]
        return max(leaders, key=lambda i: self.replicas[i].node.log.term) if leaders else None

    # --- safety properties -------------------------------------------------

    def check(self):
        for i, r in self.replicas.items():
            n = r.node
            if r.up and n.role is Role.LEADER:
                other = self.leaders_by_term.setdefault(n.log.term, i)
                if other != i:
                    raise SafetyViolation(f"election safety: {other} and {i} both leaders in term {n.log.term}")
                # Leader completeness: entries committed in earlier terms are in the leader's log.
                for index, data in self.committed.items():
                    if self.commit_term[index] >= n.log.term:
                        continue
                    if index > n.log.snapshot_index and index <= n.log.last_index:
                        if applied_form(n.log.entries(index, index + 1, 1 << 30)[0]) != data:
                            raise SafetyViolation(f"leader {i} term {n.log.term} lacks committed index {index}")
                    elif index > n.log.last_index:
                        raise SafetyViolation(f"leader {i} term {n.log.term} misses committed index {index}")
        readers = [i for i, r in self.replicas.items() if r.up and r.node.read_allowed()]
        for i in readers:
            newer = [j for j, r in self.replicas.items()
                     if j != i and r.up and r.node.role is Role.LEADER
                     and r.node.log.term > self.replicas[i].node.log.term]
            if newer:
                raise SafetyViolation(f"lease: {i} may read while {newer} lead a newer term")
        for i, r in self.replicas.items():
            for index, data in r.sm.applied:
                if self.committed.get(index) != data:
                    raise SafetyViolation(f"replica {i} applied {data!r} at {index} not committed as such")
