"""Raft consensus for one group as a pure, deterministic state machine.

In the style of etcd's `raft` package: no sockets, no clocks, no threads.  The
host drives a `RaftNode` with three inputs —

* `tick()`            logical time (the host calls it every `tick_ms`),
* `step(message)`     a message from a peer,
* `propose(data)`     a new entry (leader only),

and collects three outputs —

* `take_messages()`   messages to send, **only after** the group's log and hard
                      state have been persisted (fsynced) by the host,
* `take_committed()`  committed entries to apply to the state machine, in order,
* `persisted()`       the host's call after an fsync; the leader counts itself
                      toward a majority only for entries that are durable.

Implemented: elections with pre-vote (a partitioned node cannot disrupt a
healthy leader when it returns), ordered successors (a follower's election
timeout grows with its place in an order of the voters every replica computes
alike, so the survivors of a dead leader do not split their votes; a refused
pre-vote says when the voter's leader stickiness ends), check-quorum (a leader
that hears from no majority for an election timeout steps down: neither answers
in its group nor, where the host tracks them, anything from their brokers) and
leader stickiness; log replication with per-follower flow control (probe /
replicate / snapshot);
commit only of entries of the leader's own term (Raft §5.4.2, with a no-op
appended on election when entries are left to commit: otherwise every
committed entry is already known committed); leader leases for reads
(`read_allowed`); leadership transfer (`transfer_leadership`); catch-up of a
follower whose entries were compacted away through a chunked snapshot stream
supplied by the state machine (`Snapshotter`); and quiescence:
a leader whose followers are all caught up and know the commit index sends one
last "quiesce" heartbeat and then stays silent, and its followers stop their
election timers, so an idle group costs no messages (a follower whose broker
the host reports down does not hold a quorum's quiescence back).  Any other
message, a proposal, or the host's `wake()` (it watches broker-level liveness:
a quiesced follower whose leader's broker went silent is woken) ends the quiet.

Membership (see `membership`): voters elect and count toward quorums;
learners replicate like followers but never vote, campaign or count.  A
configuration is an ENTRY_CONFIG entry and takes effect as soon as it is
appended (dissertation §4.1); truncating it reverts to the one before.  A
replica that no configuration names (a broker back with an empty disk, so a
new replica id) neither campaigns nor counts: it can only be added as a
learner.  `propose_membership` changes one voter at a time, and only once the
leader has committed an entry of its own term and no other change is
uncommitted; it promotes only a learner that has caught up to the commit
index.  A leader that removed itself keeps leading until the change commits,
then hands over (TimeoutNow to the most caught-up voter) and steps down.
Votes and acknowledgements count only from voters of the counting node's
configuration, so nothing said by a replica outside it can elect a leader or
commit an entry.

Storage faults: `set_storage_failed(True)` tells the node that the host can no
longer write this group's journal or state (disk full, I/O error, read-only
file system).  Until it is cleared the node stops acting for the group: it
never campaigns, rejects vote and pre-vote requests, drops appends, snapshots
and TimeoutNow (it could not store them, so it must not acknowledge them) and
hands out no committed entries; a leader transfers leadership to its most
caught-up follower and steps down if that has not happened within an election
timeout.  A failed node still answers heartbeats: that keeps a healthy leader's
lease, which is safe because the node votes for nobody.
"""

from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import dataclass
from typing import Protocol

from . import canary
from .membership import Membership, change as membership_change
from .messages import ENTRY_CONFIG, Entry, Message, MessageType as MT


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class NotLeaderError(Exception):
    """A proposal or read reached a replica that is not the group's leader."""

    def __init__(self, group: str, leader: int | None):
        self.group = group
        self.leader = leader
        super().__init__(f"not the leader of {group}; leader is {leader if leader is not None else 'unknown'}")


class MembershipChangeError(Exception):
    """A membership change the leader cannot start now (the message says why; retry later)."""


class RaftLog(Protocol):
    """Durable Raft log of one group: entries after a compaction point, plus hard state.

    Configuration entries (kind ENTRY_CONFIG) are tracked by the log so that
    `config_at` answers without reading entries back; `snapshot_config` is the
    membership in effect at the compaction point (b"": none known yet).
    """

    snapshot_index: int
    snapshot_term: int
    snapshot_config: bytes
    term: int  # hard state: current term
    vote: int | None  # hard state: vote in current term

    @property
    def last_index(self) -> int: ...
    @property
    def synced_index(self) -> int: ...
    def term_at(self, index: int) -> int | None: ...
    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]: ...
    def append(self, entries: list[Entry]) -> None: ...
    def truncate_from(self, index: int) -> None: ...
    def reset(self, snapshot_index: int, snapshot_term: int, config: bytes) -> None: ...
    def set_hard_state(self, term: int, vote: int | None) -> None: ...
    def config_at(self, index: int) -> tuple[int, bytes]: ...  # (index of the config entry, or snapshot_index; data)
    def bootstrap_config(self, config: bytes) -> None: ...  # an empty log's first membership (hard state)
    def stage_snapshot(self, index: int, term: int, config: bytes) -> None: ...  # durable before finish_install
    def staged_config(self, index: int) -> bytes: ...  # what stage_snapshot recorded for index, else b""


class Snapshotter(Protocol):
    """State-machine side of snapshot transfer to a lagging follower.

    The leader streams chunks; the follower answers each with the cursor of the
    next chunk it wants, so the leader keeps no per-follower transfer state.
    """

    def begin_install(self) -> bytes: ...
    def read_chunk(self, cursor: bytes) -> tuple[bytes, bool, int]: ...
    def install_chunk(self, data: bytes) -> bytes: ...
    def finish_install(self, index: int, term: int) -> bool: ...


@dataclass
class RaftConfig:
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    max_append_bytes: int = 1 << 20
    max_inflight: int = 16
    check_quorum: bool = True
    pre_vote: bool = True  # off only in tests: elections then rely on the real vote's up-to-date check alone
    quiesce: bool = True
    snapshot_retry_ticks: int = 20


class ProgressState(enum.Enum):
    PROBE = 1
    REPLICATE = 2
    SNAPSHOT = 3


class Progress:
    """The leader's view of one follower."""

    __slots__ = ("match", "next", "state", "inflight", "recent_active", "paused_ticks", "acked_tick", "resp_tick")

    def __init__(self, next_index: int):
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.inflight = 0
        self.recent_active = False
        self.paused_ticks = 0
        self.acked_tick = -(1 << 60)  # send tick of the latest message the follower answered
        self.resp_tick = 0  # our tick when the follower last answered an append

    def __repr__(self):
        return f"Progress(match={self.match}, next={self.next}, {self.state.name})"


class RaftNode:
    def __init__(self, group: str, node_id: int, peers: Membership | list[int] | None, log: RaftLog,
                 config: RaftConfig | None = None, *, applied: int = 0, applied_term: int = 0,
                 snapshotter: Snapshotter | None = None, rng: random.Random | None = None):
        """`peers`: the group's first membership (a list means all voters), used only when the
        log holds none yet; a replica added later gets None and learns it from the leader."""
        self.group = group
        self.id = node_id
        self.log = log
        if applied > log.last_index or (applied > log.snapshot_index and log.term_at(applied) != applied_term):
            # The state machine is ahead of the journal (a snapshot was installed but the
            # journal reset was not yet durable): restart the log there.
            log.reset(applied, applied_term, log.staged_config(applied))
        if peers is not None and not log.config_at(log.last_index)[1]:
            bootstrap = peers if isinstance(peers, Membership) else Membership.of(peers)
            log.bootstrap_config(bootstrap.encode())
        self.cfg = config or RaftConfig()
        self.snapshotter = snapshotter
        self.rng = rng or random.Random()
        self.role = Role.FOLLOWER
        self.leader: int | None = None
        self.commit = max(applied, log.snapshot_index)
        self.applied = self.commit
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.now = 0  # ticks since start
        self.elapsed = 0  # ticks since last leader contact / election start / heartbeat
        self.heard_from_leader = -(1 << 60)
        self.term_start_index = 0  # the leader's last index once elected (its no-op, if it appended one)
        self.led_since = 0  # our tick when we last became leader: check quorum runs an election timeout after it
        self.transfer_target: int | None = None
        self.transfer_deadline = 0
        self.lease_forfeited = False  # sent TIMEOUT_NOW in this term: no lease until re-elected
        self._broadcast_pending = False
        self.quiesced = False
        self.on_wake = None  # the host's hook: called when a quiesced node wakes up (it ticks it again)
        self.may_campaign = None  # the host's admission hook for elections its timer starts (None: always);
        # its argument: is this the dead leader's first successor (an election nobody else contends)?
        self.peer_silence = None  # the host's liveness hook: replica -> ticks since its broker was heard (None: 0)
        self._rank_key: tuple[int, int, int] | None = None  # (leader, membership index, term) of _rank
        self._rank = 0
        self.storage_failed = False  # see set_storage_failed
        self._outbox: list[Message] = []
        self.membership: Membership | None = None
        self.membership_index = 0
        self.others: list[int] = []
        self._load_membership()
        self._reset_election_timeout()

    # ------------------------------------------------------------ membership

    @property
    def is_voter(self) -> bool:
        return self.membership is not None and self.id in self.membership.voters

    @property
    def voters(self) -> frozenset[int]:
        return self.membership.voters if self.membership is not None else frozenset()

    def followers_commit_alone(self) -> bool:
        """Leader: do enough voters besides this one replicate and answer promptly to commit entries without it?

        They count while their progress is in replicate state and they answered an append within two heartbeat
        intervals and a tick (the window after which unanswered appends count as lost).  The host then lets
        its own fsync wait a little, for more entries to cover (`HostConfig.leader_sync_delay_ms`); whether
        it does or not, the leader counts itself toward a commit only for entries it has fsynced.
        """
        if self.role is not Role.LEADER:
            return False
        recent = self.now - 2 * self.cfg.heartbeat_ticks - 1
        prompt = sum(1 for p in self._counted() if p != self.id and (pr := self.progress.get(p)) is not None
                     and pr.state is ProgressState.REPLICATE and pr.resp_tick >= recent)
        return prompt >= self._quorum()

    def quorum_with(self, replicas) -> bool:
        """Would this replica plus `replicas` be a quorum of voters (host liveness checks)?"""
        counted = self._counted()
        return len(counted.intersection({self.id, *replicas})) >= self._quorum() if counted else False

    def _counted(self) -> frozenset[int]:
        """Replicas whose votes and acknowledgements count: the voters."""
        if self.membership is None:
            return frozenset()
        return self.membership.members if canary.enabled("learner-counted") else self.membership.voters

    def _quorum(self) -> int:
        return len(self._counted()) // 2 + 1

    def _load_membership(self) -> None:
        """Take the newest configuration in the log (appended, truncated or installed)."""
        index, data = self.log.config_at(self.log.last_index)
        membership = Membership.decode(data) if data else None
        if membership == self.membership and index == self.membership_index:
            return
        self.membership, self.membership_index = membership, index
        self.others = sorted(membership.members - {self.id}) if membership is not None else []
        if self.role is Role.LEADER:
            last = self.log.last_index
            for p in self.others:
                if p not in self.progress:
                    pr = self.progress[p] = Progress(last + 1)
                    pr.resp_tick = self.now
            for p in [p for p in self.progress if p not in self.others]:
                del self.progress[p]
            if self.transfer_target is not None and self.transfer_target not in self.voters:
                self.transfer_target = None
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and not self.is_voter:
            self._become_follower(self.log.term, None)

    def propose_membership(self, target: Membership) -> tuple[int, int]:
        """Append a configuration entry changing the membership to `target` (one voter at a time).

        Raises NotLeaderError, MembershipError (the change itself is invalid) or
        MembershipChangeError (valid, but not now: retry once the cause is gone).
        """
        if self.role is not Role.LEADER or self.transfer_target is not None or self.storage_failed:
            raise NotLeaderError(self.group, None if self.transfer_target else self.leader)
        if self.log.term_at(self.commit) != self.log.term and not canary.enabled("membership-before-own-term"):
            if self.log.term_at(self.log.last_index) != self.log.term:
                self.wake()
                self._append_noop()  # not appended at election (nothing was left to commit): now it is needed
                self._broadcast_pending = True
            raise MembershipChangeError(f"{self.group}: the leader has not yet committed an entry of term "
                                        f"{self.log.term}; retry shortly")
        if self.membership_index > self.commit:
            raise MembershipChangeError(f"{self.group}: the membership change at index {self.membership_index} "
                                        "is not committed yet")
        membership_change(self.membership, target)
        for p in target.voters - self.membership.voters:
            match = self.progress[p].match
            if match < self.commit and not canary.enabled("promote-lagging-learner"):
                raise MembershipChangeError(f"{self.group}: learner {p} has not caught up "
                                            f"(has {match} of {self.commit} committed entries)")
        self.wake()
        index = self.log.last_index + 1
        self.log.append([Entry(self.log.term, target.encode(), ENTRY_CONFIG)])
        self._load_membership()
        self._broadcast_pending = True
        return index, self.log.term

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self.now += 1
        if self.quiesced:
            return
        self.elapsed += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        elif self.elapsed >= self.randomized_timeout:
            if not self.is_voter or self.storage_failed:
                # learners and strangers never campaign, nor does a replica that cannot store a vote
                self._reset_election_timeout()
            elif self.may_campaign is None or self.may_campaign(self._successor_rank() == 0):
                self.campaign()
            else:  # the host holds elections back (too many at once): try again in a few ticks
                self.elapsed -= 1 + self.rng.randrange(2 * self.cfg.heartbeat_ticks)

    def step(self, m: Message) -> None:
        if self.quiesced and m.type is not MT.HEARTBEAT_RESP and not (m.type is MT.HEARTBEAT and m.final):
            # A quiesced follower heard nothing of its group lately, but its host heard the leader's broker:
            # leader stickiness holds until an election timeout after that (no lease can count on us beyond it).
            self.wake(heard_ticks_ago=self._leader_silence() if m.type in (MT.PREVOTE, MT.VOTE) else 0)
        if m.term > self.log.term:
            if m.type in (MT.PREVOTE, MT.VOTE) and not m.transfer and self._in_lease():
                if m.type is MT.PREVOTE:  # a leader may be alive: refuse, and say when our lease ends
                    self._send(MT.PREVOTE_RESP, m.src, reject=True, context=self._lease_left())
                return  # leader stickiness: disruptive candidates change nothing here
            if m.type is MT.PREVOTE:
                pass  # a pre-vote never changes our term
            elif m.type is MT.PREVOTE_RESP and not m.reject:
                pass  # granted pre-votes carry the future term
            else:
                leader = m.src if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT) else None
                self._become_follower(m.term, leader)
        elif m.term < self.log.term:
            if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
                # A stale leader: tell it about the newer term so it steps down.
                self._send(MT.APPEND_RESP, m.src, reject=True, index=self.log.last_index)
            elif m.type is MT.PREVOTE:
                self._send(MT.PREVOTE_RESP, m.src, reject=True)
            return
        if self.storage_failed and m.type in _NEEDS_STORAGE:
            return  # it could not be stored, so it must not be acknowledged
        handler = self._handlers.get(m.type)
        if handler is not None:
            handler(self, m)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append `data` as a new entry; returns (index, term). Leader only."""
        if self.role is not Role.LEADER or self.transfer_target is not None or self.storage_failed:
            raise NotLeaderError(self.group, None if self.transfer_target else self.leader)
        self.wake()
        index = self.log.last_index + 1
        self.log.append([Entry(self.log.term, data)])
        self._broadcast_pending = True  # one append per follower for all proposals of this round
        return index, self.log.term

    def wake(self, leader_lost: bool = False, heard_ticks_ago: int = 0) -> None:
        """End quiescence: a leader resumes heartbeats at once, a follower its election timer.

        `leader_lost`: the host saw the leader's broker fall silent for an election
        timeout, so the follower campaigns within a heartbeat interval if it is the
        group's first successor, an election timeout later per place otherwise.
        `heard_ticks_ago`: when the host last heard the leader's broker (the
        follower's leader stickiness runs from then; an election timeout or more
        ago counts as `leader_lost`).
        """
        if heard_ticks_ago >= self.cfg.election_ticks:
            leader_lost = True
        if not self.quiesced:
            return
        self.quiesced = False
        if self.on_wake is not None:
            self.on_wake()
        if self.role is Role.LEADER:
            self.elapsed = self.cfg.heartbeat_ticks
        elif leader_lost:
            self._reset_election_timeout()
            self.elapsed = self.cfg.election_ticks
        else:
            self.heard_from_leader = self.now - heard_ticks_ago
            self._reset_election_timeout()
            self.elapsed = heard_ticks_ago

    def persisted(self) -> None:
        """The host fsynced the log: durable entries now count toward commit."""
        if self.role is Role.LEADER:
            self._maybe_commit()

    def campaign(self, transfer: bool = False) -> None:
        if not self.is_voter:
            return
        if self.voters == {self.id}:
            self._become_candidate()
            self._become_leader()
            return
        if transfer or not self.cfg.pre_vote:
            self._become_candidate()
            self._request_votes(MT.VOTE, self.log.term, transfer=transfer)
        else:
            self._become_pre_candidate()
            self._request_votes(MT.PREVOTE, self.log.term + 1)

    def set_storage_failed(self, failed: bool) -> None:
        """The host cannot (True) or can again (False) write this group's journal and state.

        See the module docstring for what a failed node does; a leader starts handing over
        leadership at once (canary ``full-disk-keeps-leadership``: it keeps it).
        """
        if failed == self.storage_failed:
            return
        self.storage_failed = failed
        if not failed:
            self._reset_election_timeout()
            return
        if self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            self._become_follower(self.log.term, None)
        elif self.role is Role.LEADER and not canary.enabled("full-disk-keeps-leadership"):
            if self.transfer_leadership() is None:
                self._become_follower(self.log.term, None)  # nobody to hand over to

    def transfer_leadership(self, target: int | None = None) -> int | None:
        """Hand leadership to the most caught-up voter (graceful shutdown, removal)."""
        candidates = [p for p in self.others if p in self.voters]
        if self.role is not Role.LEADER or not candidates:
            return None
        self.wake()
        if target is None:
            target = max(candidates, key=lambda p: self.progress[p].match)
        elif target not in candidates:
            return None
        self.transfer_target = target
        self.transfer_deadline = self.now + self.cfg.election_ticks
        if self.progress[target].match == self.log.last_index:
            self._send_timeout_now(target)
        else:
            self._send_append(target)
        return target

    def hold_snapshot(self, peer: int) -> None:
        """The host holds back `peer`'s request for the next snapshot chunk (throttling): do not restart the
        stalled-looking transfer meanwhile (a restart would throw away what the follower has staged)."""
        pr = self.progress.get(peer)
        if pr is not None and pr.state is ProgressState.SNAPSHOT:
            pr.paused_ticks = 0

    # ----------------------------------------------------------------- outputs

    def take_messages(self) -> list[Message]:
        if self._broadcast_pending:
            self._broadcast_pending = False
            if self.role is Role.LEADER:  # deposed since the proposal: appends would claim the new term
                self._broadcast_append()
        out, self._outbox = self._outbox, []
        return out

    def has_ready(self) -> bool:
        """Is there output for the host (messages to send or entries to apply)?"""
        return bool(self._outbox) or self._broadcast_pending or (self.commit > self.applied
                                                                  and not self.storage_failed)

    def take_committed(self, limit: int | None = None) -> list[tuple[int, Entry]]:
        """Committed entries not yet handed out, up to index `limit` (the host passes its synced index)."""
        hi = self.commit if limit is None else min(self.commit, limit)
        if self.applied >= hi or self.storage_failed:
            return []
        lo = self.applied + 1
        entries = self.log.entries(lo, hi + 1, 1 << 62)
        self.applied = lo + len(entries) - 1
        return [(lo + i, e) for i, e in enumerate(entries)]

    def read_allowed(self) -> bool:
        """May this replica serve reads of committed state now (leader lease held)?

        True only for a leader that has applied an entry of its own term and has
        heard from a majority within the minimum election timeout: no other
        leader can have been elected meanwhile (voters honour leader stickiness).
        """
        return self.lease_remaining() > 0

    def lease_remaining(self) -> int:
        """Ticks left on the leader lease (<= 0: none); see read_allowed."""
        if self.role is not Role.LEADER or self.applied < self.term_start_index or self.lease_forfeited:
            return 0
        counted = self._counted()
        need = self._quorum() - (1 if self.id in counted else 0)
        if need <= 0 or canary.enabled("read-without-lease"):
            return 1 << 30
        acks = sorted((self.progress[p].acked_tick for p in self.others if p in counted), reverse=True)
        if len(acks) < need:
            return 0
        return self.cfg.election_ticks - 1 - (self.now - acks[need - 1])

    def status(self) -> dict:
        return {
            "group": self.group,
            "id": self.id,
            "role": self.role.value,
            "leader": self.leader,
            "term": self.log.term,
            "commit_index": self.commit,
            "applied_index": self.applied,
            "last_index": self.log.last_index,
            "snapshot_index": self.log.snapshot_index,
            "quiesced": self.quiesced,
            "voters": sorted(self.voters),
            "learners": sorted(self.membership.learners) if self.membership else [],
            "storage_failed": self.storage_failed,
            "followers": {
                p: {"match_index": pr.match, "next_index": pr.next, "state": pr.state.name.lower(),
                    "lag": self.log.last_index - pr.match, "learner": p not in self.voters}
                for p, pr in self.progress.items()
            } if self.role is Role.LEADER else {},
        }

    # ------------------------------------------------------------- transitions

    def _reset_election_timeout(self) -> None:
        """A follower of a known leader times out after one election timeout more per place in the group's
        order of successors (`_successor_rank`), plus a jitter under a heartbeat interval: when the leader
        dies, the first successor stands alone (no split vote among the survivors, thousands of groups at once
        after a broker's death; the next one gives it a whole election timeout) and soon after the timeout.
        Without a leader: Raft's random timeout in [election_ticks, 2 * election_ticks)."""
        self.elapsed = 0
        ticks = self.cfg.election_ticks
        rank = self._successor_rank()
        if rank is None:
            self.randomized_timeout = ticks + self.rng.randrange(ticks)
        else:
            self.randomized_timeout = ticks * (1 + rank) + self.rng.randrange(self.cfg.heartbeat_ticks)

    def _silence(self, replica: int) -> int:
        return 0 if self.peer_silence is None else self.peer_silence(replica)

    def _peer_down(self, replica: int) -> bool:
        return self._silence(replica) >= self.cfg.election_ticks

    def _broker_heard(self, replica: int) -> bool:
        """Did the host hear anything from the replica's broker within an election timeout (False without the
        host's hook)?  With thousands of groups on a broker, one group's answer can come late behind a busy
        event loop while its broker is plainly alive: such a leader need not step down (a broker cut off is
        no longer heard, and its groups' leaders still step down)."""
        return self.peer_silence is not None and not self._peer_down(replica)

    def _leader_silence(self) -> int:
        return 0 if self.leader is None or self.leader == self.id else self._silence(self.leader)

    def _successor_rank(self) -> int | None:
        """This follower's place among the voters other than its leader, in an order every replica computes
        alike (they follow the same leader in the same term) and that differs from group to group and from
        term to term (leadership spreads over the survivors; a leader lost again and again is succeeded by
        any of them alike); None if it has no leader or is not a voter. The order comes from a hash that mixes
        its input (blake2b): CRC-32 is affine over GF(2), so which of two voters' CRCs is the smaller hardly
        depends on the term, and a group's first successor after a given leader would nearly always be the same."""
        leader = self.leader
        if self.role is not Role.FOLLOWER or leader is None or not self.is_voter:
            return None
        term = self.log.term
        key = (leader, self.membership_index, term)
        if self._rank_key != key:
            prefix = b"%s/%d/" % (self.group.encode(), term)
            order = sorted(self.voters - {leader},
                           key=lambda r: hashlib.blake2b(prefix + b"%d" % r, digest_size=8).digest())
            self._rank_key, self._rank = key, order.index(self.id)
        return self._rank

    def _outranks_rival(self, m: Message) -> bool:
        """Are we a pre-candidate with exactly the requester's log, placed before it in the group's fixed order?

        Two survivors of a dead leader that stand at the same moment granted each other's pre-votes, voted for
        themselves in the next term, and split it; with the third replica gone neither could win, and both
        waited out another random election timeout (after a broker's death, one group in a few hundred).  Of
        two such rivals exactly one refuses the other's pre-vote: the order is the same on every replica and
        for every term (blake2b of group and replica), and it is asked only when both logs end alike.  So the
        refused one still grants, the other wins, and a rival with the longer log is never refused (nobody
        waits on a replica that cannot win).  A refused pre-vote changes no state: this is never unsafe."""
        if self.role is not Role.PRE_CANDIDATE:
            return False
        last = self.log.last_index
        if (m.log_term, m.index) != (self.log.term_at(last), last):
            return False
        return self._precedence(self.id) < self._precedence(m.src)

    def _precedence(self, replica: int) -> bytes:
        return hashlib.blake2b(b"%s/%d" % (self.group.encode(), replica), digest_size=8).digest()

    def _become_follower(self, term: int, leader: int | None) -> None:
        if term != self.log.term:
            self.log.set_hard_state(term, None)
        self.role = Role.FOLLOWER
        self.leader = leader
        self.transfer_target = None
        self._reset_election_timeout()

    def _become_pre_candidate(self) -> None:
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self.votes = {self.id: True}
        self._reset_election_timeout()

    def _become_candidate(self) -> None:
        self.log.set_hard_state(self.log.term + 1, self.id)
        self.role = Role.CANDIDATE
        self.leader = None
        self.votes = {self.id: True}
        self._reset_election_timeout()

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self.transfer_target = None
        self.lease_forfeited = False
        self.elapsed = 0
        last = self.log.last_index
        self.progress = {p: Progress(last + 1) for p in self.others}
        for pr in self.progress.values():
            pr.resp_tick = self.now
        if self.commit < last:
            self._append_noop()
        # Else no no-op: every committed entry is in our log (leader completeness) at or below `last`, which we
        # already know committed, so our commit index is current and reads may start once a quorum answers.
        # An election then costs no log write, only the vote's hard state (one fsync per broker for all the
        # groups electing at once): a broker's death no longer means one log fsync per group it led.
        self.term_start_index = self.log.last_index
        self.led_since = self.now
        self._broadcast_pending = True  # has_ready(): the host persists the no-op if any and sends

    def _append_noop(self) -> None:
        """An empty entry of our term: committing it commits the earlier terms' entries (Raft §5.4.2)."""
        self.log.append([Entry(self.log.term, b"")])

    def _request_votes(self, kind: MT, term: int, transfer: bool = False) -> None:
        last = self.log.last_index
        last_term = self.log.term_at(last)
        for p in self.others:
            if p in self._counted():
                self._outbox.append(Message(kind, self.group, self.id, p, term, index=last, log_term=last_term,
                                            transfer=transfer))

    # ----------------------------------------------------------------- leader

    def _tick_leader(self) -> None:
        if self.elapsed >= self.cfg.heartbeat_ticks:
            self.elapsed = 0
            quiesce = self._can_quiesce()
            for p in self.others:
                self._send(MT.HEARTBEAT, p, commit=min(self.progress[p].match, self.commit), context=self.now,
                           final=quiesce)
            if quiesce:
                self.quiesced = True
                return
        # Check quorum every election timeout since we won, not on our clock's multiples of it: a leader elected a
        # tick before such a multiple was judged before its followers could answer, and stepped down (after a
        # broker's death, one new leader in six of 10,000 partitions' did, and each one cost another election).
        if self.cfg.check_quorum and (self.now - self.led_since) % self.cfg.election_ticks == 0:
            counted = self._counted()
            active = (self.id in counted) + sum(1 for p, pr in self.progress.items()
                                                if p in counted and (pr.recent_active or self._broker_heard(p)))
            for pr in self.progress.values():
                pr.recent_active = False
            if active < self._quorum():
                self._become_follower(self.log.term, None)
                return
        for p, pr in self.progress.items():
            if pr.state is ProgressState.SNAPSHOT:
                pr.paused_ticks += 1
                if pr.paused_ticks >= self.cfg.snapshot_retry_ticks:
                    pr.paused_ticks = 0
                    self._send(MT.SNAPSHOT, p, context=self.now)  # restart a stalled transfer
        if self.transfer_target is not None and self.now >= self.transfer_deadline:
            self.transfer_target = None  # transfer timed out; keep leading ...
            if self.storage_failed and not canary.enabled("full-disk-keeps-leadership"):
                self._become_follower(self.log.term, None)  # ... unless we cannot write: step down

    def _can_quiesce(self) -> bool:
        """Idle and replicated to a quorum, with every follower that is not down caught up and heard from
        lately.  A follower the host reports down (`peer_silence`: its broker silent for an election timeout)
        does not keep the group awake: after a broker dies, the groups it led elect new leaders that could
        otherwise never go quiet, and thousands of them heartbeating at once kept a big cluster from settling.  The host
        wakes the leader when that broker speaks again (`follower_behind`).  A caught-up follower whose broker the
        host hears counts as heard even when its answers to this group are older than an election timeout: when
        thousands of groups keep two brokers so busy that a round trip takes that long, no leader could ever go
        quiet again, and their heartbeats kept the round trips that long (the quiet leader's read lease then
        rests on broker heartbeats, as always)."""
        if (not self.cfg.quiesce or not self.others or self.transfer_target is not None or self._broadcast_pending
                or self.storage_failed):
            return False  # a leader that cannot write must not put its followers to sleep: they elect another
        last = self.log.last_index
        if self.commit != last or self.applied != last:
            return False
        replicated = {self.id}
        for p, pr in self.progress.items():
            if self._peer_down(p):
                continue
            if not self._caught_up(pr) or pr.inflight:
                return False
            if self.now - pr.acked_tick >= self.cfg.election_ticks and not self._broker_heard(p):
                return False
            replicated.add(p)
        return len(self._counted() & replicated) >= self._quorum()

    def _caught_up(self, pr: Progress) -> bool:
        return pr.state is ProgressState.REPLICATE and pr.match == self.log.last_index

    def follower_behind(self) -> bool:
        """A leader: does a follower that is not down lack entries (one that was down while the group
        went quiet and is back)?  The host then wakes the leader to catch it up."""
        return self.role is Role.LEADER and any(
            not self._caught_up(pr) for p, pr in self.progress.items()
            if not self._peer_down(p))

    def _broadcast_append(self) -> None:
        for p in self.others:
            self._send_append(p)
        if not self.others:
            self._maybe_commit()  # alone: commit follows persistence (persisted())

    def _send_append(self, p: int) -> None:
        pr = self.progress[p]
        if pr.state is ProgressState.SNAPSHOT:
            return
        if pr.state is ProgressState.PROBE and pr.inflight > 0:
            return
        if pr.state is ProgressState.REPLICATE and pr.inflight >= self.cfg.max_inflight:
            return
        prev = pr.next - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None:
            self._start_snapshot(p)
            return
        last = self.log.last_index
        entries = self.log.entries(pr.next, last + 1, self.cfg.max_append_bytes) if pr.next <= last else []
        if not entries and pr.state is ProgressState.REPLICATE and pr.inflight > 0:
            return
        self._outbox.append(Message(MT.APPEND, self.group, self.id, p, self.log.term, index=prev,
                                    log_term=prev_term, commit=self.commit, context=self.now, entries=entries))
        pr.inflight += 1
        if pr.state is ProgressState.REPLICATE and entries:
            pr.next = prev + len(entries) + 1

    def _send_timeout_now(self, target: int) -> None:
        # The target's transfer campaign skips the voters' leader stickiness, so it may win while
        # our lease still runs: give the lease up for the rest of this term (even if the transfer
        # times out here, the message may still arrive).
        self.lease_forfeited = not canary.enabled("lease-through-transfer")
        self._send(MT.TIMEOUT_NOW, target)

    def _start_snapshot(self, p: int) -> None:
        pr = self.progress[p]
        if self.snapshotter is None:
            raise RuntimeError(f"{self.group}: follower {p} needs compacted entries and no snapshotter is set")
        pr.state = ProgressState.SNAPSHOT
        pr.paused_ticks = 0
        pr.inflight = 0
        self._send(MT.SNAPSHOT, p, context=self.now)

    def _answered(self, m: Message) -> Progress | None:
        """A follower answered us as leader: note it is alive and when our message was sent."""
        if self.role is not Role.LEADER:
            return None
        pr = self.progress.get(m.src)
        if pr is not None:
            pr.recent_active = True
            pr.acked_tick = max(pr.acked_tick, m.context)
        return pr

    def _on_append_resp(self, m: Message) -> None:
        pr = self._answered(m)
        if pr is None:
            return
        if pr.state is ProgressState.SNAPSHOT:
            return
        if m.reject:
            # m.log_term carries the rejected prev index; ignore rejections of superseded appends.
            if pr.state is ProgressState.REPLICATE and m.log_term <= pr.match:
                return
            if pr.state is ProgressState.PROBE and m.log_term != pr.next - 1:
                return
            # m.index is the follower's hint (its last index): jump back to it, never below what it
            # acknowledged (a delayed rejection's hint may be older than a later acknowledgement).
            pr.next = max(pr.match + 1, min(pr.next - 1, m.index + 1))
            pr.state = ProgressState.PROBE
            pr.inflight = 0
            self._send_append(m.src)
            return
        pr.inflight = max(0, pr.inflight - 1)
        pr.resp_tick = self.now
        if m.index > pr.match:
            pr.match = m.index
        if pr.next <= m.index:
            pr.next = m.index + 1
        if pr.state is ProgressState.PROBE:
            pr.state = ProgressState.REPLICATE
            pr.inflight = 0
        self._maybe_commit()
        if self.role is not Role.LEADER:
            return  # the commit removed us: we handed over
        if self.transfer_target == m.src and pr.match == self.log.last_index:
            self._send_timeout_now(m.src)
        if pr.next <= self.log.last_index:
            self._send_append(m.src)

    def _on_heartbeat_resp(self, m: Message) -> None:
        pr = self._answered(m)
        if pr is None:
            return
        if pr.state is ProgressState.PROBE:
            pr.inflight = 0  # the probe may have been lost
        elif (pr.state is ProgressState.REPLICATE and pr.inflight > 0
              and self.now - pr.resp_tick > 2 * self.cfg.heartbeat_ticks + 1):
            # Appends in flight went unanswered while heartbeats get through: they were lost.
            pr.state, pr.next, pr.inflight = ProgressState.PROBE, pr.match + 1, 0
        if pr.match < self.log.last_index or pr.state is ProgressState.PROBE:
            # Probe again: also when there is nothing to send (an empty log, or a new leader without a no-op
            # whose first probe was lost), or the follower would stay in probe and the group never go quiet.
            self._send_append(m.src)

    def _on_snapshot_resp(self, m: Message) -> None:
        pr = self._answered(m)
        if pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        pr.paused_ticks = 0
        if m.reject:
            self._send(MT.SNAPSHOT, m.src, context=self.now)
            return
        if m.final:
            pr.match = max(pr.match, m.index)
            pr.next = m.index + 1
            pr.state = ProgressState.PROBE
            pr.inflight = 0
            self._maybe_commit()
            if self.role is Role.LEADER:
                self._send_append(m.src)
            return
        data, done, index = self.snapshotter.read_chunk(m.payload)
        log_term = self.log.term_at(index) if done else 0
        if done and log_term is None:
            self._send(MT.SNAPSHOT, m.src, context=self.now)  # our own state moved; restart from the follower's cursor
            return
        config = self.log.config_at(index)[1] if done else b""
        self._outbox.append(Message(MT.SNAPSHOT, self.group, self.id, m.src, self.log.term, index=index if done else 0,
                                    log_term=log_term or 0, context=self.now, final=done, payload=data,
                                    config=config))

    def _maybe_commit(self) -> None:
        counted = self._counted()
        match = {p: pr.match for p, pr in self.progress.items() if p in counted}
        if self.id in counted:
            match[self.id] = self.log.last_index if canary.enabled("leader-counts-unsynced") else self.log.synced_index
        if canary.enabled("ack-before-commit"):
            candidate = max(match.values(), default=0)
        else:
            candidate = sorted(match.values(), reverse=True)[self._quorum() - 1] if len(match) >= self._quorum() else 0
        if candidate > self.commit and (self.log.term_at(candidate) == self.log.term
                                        or canary.enabled("commit-old-term")):
            self.commit = candidate  # followers learn it with the next append or heartbeat
        if not self.is_voter and self.membership_index <= self.commit:
            self._hand_over_after_removal()

    def _hand_over_after_removal(self) -> None:
        """Our removal is committed: wake the most caught-up voter and step down (dissertation §4.2.2)."""
        voters = [p for p in self.others if p in self.voters]
        if voters:
            # Followers learn the commit index (hence our removal) with this append, then the target campaigns.
            target = max(voters, key=lambda p: self.progress[p].match)
            for p in self.others:
                self._send_append(p)
            if self.progress[target].match == self.log.last_index:
                self._send(MT.TIMEOUT_NOW, target)
        self._become_follower(self.log.term, None)

    # --------------------------------------------------------------- follower

    def _on_append(self, m: Message) -> None:
        self._accept_leader(m.src)
        prev, entries = m.index, m.entries
        if prev <= self.commit:
            # Entries up to our commit index are committed, hence the leader's too: skip them.
            skip = self.commit - prev
            if skip >= len(entries):
                self._send(MT.APPEND_RESP, m.src, index=self.commit, context=m.context)
                return
            entries = entries[skip:]
            prev = self.commit
        elif self.log.term_at(prev) != m.log_term:
            hint = max(min(prev - 1, self.log.last_index), self.commit)
            self._send(MT.APPEND_RESP, m.src, reject=True, index=hint, log_term=m.index, context=m.context)
            return
        new = []
        truncated = False
        for i, entry in enumerate(entries):
            idx = prev + 1 + i
            existing = self.log.term_at(idx)
            if existing != entry.term:
                if existing is not None and canary.enabled("skip-truncate"):
                    continue
                if existing is not None:
                    assert idx > self.commit, "a committed entry conflicts with the leader's log"
                    self.log.truncate_from(idx)
                    truncated = True
                new = entries[i:]
                break
        if new:
            self.log.append(new)
        if truncated or any(e.kind == ENTRY_CONFIG for e in new):
            self._load_membership()
        last_new = prev + len(entries)
        if m.commit > self.commit:
            self.commit = min(m.commit, last_new)
        self._send(MT.APPEND_RESP, m.src, index=last_new, context=m.context)

    def _on_heartbeat(self, m: Message) -> None:
        self._accept_leader(m.src)
        if m.commit > self.commit:
            self.commit = min(m.commit, self.log.last_index)
        if m.final and self.cfg.quiesce and m.commit == self.commit == self.log.last_index:
            self.quiesced = True  # the leader went quiet with us fully caught up
        self._send(MT.HEARTBEAT_RESP, m.src, context=m.context)

    def _on_snapshot(self, m: Message) -> None:
        self._accept_leader(m.src)
        if not m.payload and not m.final:
            self._send(MT.SNAPSHOT_RESP, m.src, payload=self.snapshotter.begin_install(), context=m.context)
            return
        cursor = self.snapshotter.install_chunk(m.payload)
        if not m.final:
            self._send(MT.SNAPSHOT_RESP, m.src, payload=cursor, context=m.context)
            return
        if m.index > self.commit and self.log.term_at(m.index) == m.log_term:
            # We hold the snapshot's last entry already: keep our log, entries we acknowledged
            # beyond it included (Raft §7); the log brings us up to it.
            self.commit = m.index
        elif m.index > self.commit:
            self.log.stage_snapshot(m.index, m.log_term, m.config)
            if not self.snapshotter.finish_install(m.index, m.log_term):
                self._send(MT.SNAPSHOT_RESP, m.src, reject=True, context=m.context)
                return
            self.log.reset(m.index, m.log_term, m.config)
            self.commit = self.applied = m.index
            self._load_membership()
        self._send(MT.SNAPSHOT_RESP, m.src, final=True, index=max(m.index, self.commit), context=m.context)

    def _on_timeout_now(self, m: Message) -> None:
        if m.src == self.leader and self.role is Role.FOLLOWER:
            self.campaign(transfer=True)

    def _accept_leader(self, leader: int) -> None:
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.log.term, leader)
        self.leader = leader
        self.heard_from_leader = self.now
        self._reset_election_timeout()

    def _in_lease(self) -> bool:
        """Might a leader hold a lease that counts on us? Then refuse to help elect another.

        Also true for the first election timeout after a restart: we may have
        acknowledged a leader just before and forgotten it (a brand-new replica,
        at term 0, never acknowledged anyone).
        """
        if self.role is Role.LEADER or (self.now < self.cfg.election_ticks and self.log.term > 0):
            return True
        return self.leader is not None and self.now - self.heard_from_leader < self.cfg.election_ticks

    def _lease_left(self) -> int:
        """Ticks until `_in_lease` ends, as far as this replica can tell (a leader: an election timeout)."""
        ticks = self.cfg.election_ticks
        if self.role is Role.LEADER:
            return ticks
        left = ticks - self.now if self.log.term > 0 else 0
        if self.leader is not None:
            left = max(left, ticks - (self.now - self.heard_from_leader))
        return max(left, 1)

    # -------------------------------------------------------------- elections

    def _on_vote_request(self, m: Message) -> None:
        last = self.log.last_index
        up_to_date = (m.log_term, m.index) >= (self.log.term_at(last), last) and not self.storage_failed
        if m.type is MT.PREVOTE:
            grant = (up_to_date or canary.enabled("prevote-no-uptodate")) and m.term > self.log.term
            if grant and self._outranks_rival(m):
                grant = False  # we stand ourselves, and the group's order puts us first: no split vote
            self._send(MT.PREVOTE_RESP, m.src, term=m.term if grant else self.log.term, reject=not grant)
            return
        grant = (up_to_date or canary.enabled("vote-no-uptodate")) and self.log.vote in (None, m.src)
        if grant:
            self.log.set_hard_state(self.log.term, m.src)
            self._reset_election_timeout()
        self._send(MT.VOTE_RESP, m.src, reject=not grant)

    def _on_vote_resp(self, m: Message) -> None:
        expected = Role.PRE_CANDIDATE if m.type is MT.PREVOTE_RESP else Role.CANDIDATE
        counted = self._counted()
        if self.role is not expected or m.src not in counted:
            return  # only our configuration's voters decide an election
        self.votes[m.src] = not m.reject
        granted = sum(1 for p, v in self.votes.items() if v and p in counted)
        rejected = sum(1 for p, v in self.votes.items() if not v and p in counted)
        quorum = self._quorum()
        if granted >= quorum:
            if expected is Role.PRE_CANDIDATE:
                self._become_candidate()
                self._request_votes(MT.VOTE, self.log.term)
            else:
                self._become_leader()
            return
        if rejected > len(counted) - quorum:
            self._become_follower(self.log.term, None)
        if m.reject and m.type is MT.PREVOTE_RESP and m.context > 0:
            # Refused while the voter's leader stickiness lasts: stand again as soon as it ends, not after a
            # random election timeout (the survivors of a dead leader stop hearing it a few ms apart).
            soon = self.randomized_timeout - m.context - 1 - self.rng.randrange(self.cfg.heartbeat_ticks)
            self.elapsed = max(self.elapsed, soon)

    # ---------------------------------------------------------------- helpers

    def _send(self, kind: MT, to: int, *, term: int | None = None, **fields) -> None:
        self._outbox.append(Message(kind, self.group, self.id, to, self.log.term if term is None else term, **fields))

    _handlers = {
        MT.APPEND: _on_append,
        MT.APPEND_RESP: _on_append_resp,
        MT.HEARTBEAT: _on_heartbeat,
        MT.HEARTBEAT_RESP: _on_heartbeat_resp,
        MT.SNAPSHOT: _on_snapshot,
        MT.SNAPSHOT_RESP: _on_snapshot_resp,
        MT.PREVOTE: _on_vote_request,
        MT.VOTE: _on_vote_request,
        MT.PREVOTE_RESP: _on_vote_resp,
        MT.VOTE_RESP: _on_vote_resp,
        MT.TIMEOUT_NOW: _on_timeout_now,
    }


# Messages a node with failed storage drops: accepting them means storing something.
_NEEDS_STORAGE = frozenset({MT.APPEND, MT.SNAPSHOT, MT.TIMEOUT_NOW})
