"""Runs every Raft group of one broker in one asyncio event loop.

One `RaftHost` per broker owns the broker's single Raft port (`PeerTransport`),
one ticker for all groups, and the I/O that the pure `RaftNode`s ask for:

* **Event-driven pump.**  Incoming frames, proposals and ticks only mark groups
  active; a pump then, for each active group, takes the messages the node
  produced and fsyncs its journal if dirty (group commit: every append since
  the last pump in one fsync), and only then sends those messages and applies
  newly committed entries (a leader's appends and heartbeats go out before its
  own fsync: Raft thesis §10.2.1; it counts itself only for fsynced entries,
  and applies and answers what its followers' acknowledgements commit while
  its own fsync still runs, so one slow disk under a leader holds back nothing
  a majority made durable; checkpoints never get ahead of the durable journal).
  While its followers commit without it, a leader lets its own fsync wait
  (`leader_sync_delay_ms`, one fsync for many rounds instead of one per round)
  and starts it at once when its entries stay uncommitted for `commit_lag_ms`
  (a follower is slow, and the leader's disk would make the majority).
  The fsyncs run in worker threads while the loop
  keeps serving requests and appending (a pump's only fsync runs on the loop
  itself while fsyncs are fast: `sync_policy`); each group has at most one sync in
  flight, and what arrives meanwhile forms its next group commit, while other
  groups' messages go out as soon as their own syncs are done (one busy or
  slow group never holds back another's heartbeats or votes).  Every
  group's hard state (term, vote, compaction point) lives in one store per
  broker (`hardstate`), synced once per pump before the journals: an election
  of thousands of groups costs one fsync per round, not two per group.
  Messages of all groups to the same peer travel in one frame.
* **One ticker.**  Groups advance by elapsed time (`tick_ms`), catching up after
  a stall so that a paused leader sees its lease expire; reads check that the
  clock was ticked recently.  Which groups a tick advances, which quiesced ones
  it wakes and which elections their timers may start is `liveness`'s decision
  (only awake groups are ticked; a campaign budget per broker).  An idle
  ticker's beats fall on the multiples of the beat on the monotonic clock, where
  the broker's periodic tasks and its peers wake too (`wake_grid`).
* **Broker-level liveness.**  Every heartbeat interval the host sends one
  heartbeat to each peer broker (group ""), whatever the number of groups; it
  also answers the peer's last heartbeat (echoes its stamp), so an idle pair of
  brokers exchanges two frames per interval, not four; while none of its groups
  is awake, a broker beats at half that rate (`HostConfig.idle_beat_ticks`: an
  election timeout still spans several beats).  Heartbeats carry the
  broker's announcement, including a tag of the groups it leads (the broker
  layer asks a peer for its leaders only when that tag changed).
  Idle groups quiesce (see `core`), even with a follower whose broker is
  silent (after a broker's death, the groups it led would otherwise never go
  quiet again, and thousands of them heartbeating kept the survivors too busy
  to hold their leaders); what the host hears from its peers (`liveness`) wakes
  quiesced groups whose leader or quorum fell silent and grants a quiesced
  leader its read lease from these broker-level acknowledgements.
* **Read index.**  `read_index` lets a follower serve a read that is as fresh
  as the leader's state: it asks the leader (under its lease) for its commit
  index and waits until it has applied that far (etcd's ReadIndex, answered
  by the host so that a quiesced leader's broker-level lease counts too).
* **Membership.**  `propose_membership` starts one step of a membership change
  on the leader; broker heartbeats carry each broker's data-directory
  incarnation (`announce`), so a leader sees at once that a follower's broker
  came back with an empty disk (`replica_lost`).
* **Catch-up throttle.**  With `learner_catchup_bytes_per_sec` set, snapshot
  chunks sent to learners (replicas being added by a reassignment) share one
  byte-rate limit per broker (`throttle`): a learner's request for the next
  chunk is held back while the budget is spent, and the leader is told not to
  restart the transfer meanwhile.  Voters catching up are never held back.
* **Peers change.**  `set_peers` adopts a new broker map (brokers join and
  leave); announcements may carry what the broker layer wants its peers to
  know (`extra`: its addresses, its rack).
* **Checkpoints.**  A state machine that applied `journal_keep_entries` since
  its last checkpoint (or `checkpoint_max_age_s` ago) makes its applied state
  durable, its fsyncs in worker threads, and the journal is compacted up to
  it: memory and disk do not grow with retained data, and replay after a
  restart starts at the checkpoint.  (Checkpointing every changed group every
  few seconds was a burst of fsyncs on the event loop after every election of
  thousands of groups.)
* **Storage faults.**  A write for a group that the disk refuses (disk full,
  I/O error, read-only file system; see `storage_health`) stops that replica
  (`RaftNode.set_storage_failed`: it hands over leadership, stops voting and
  acknowledging), and while free space is below the low-disk watermark every
  non-critical group (the partitions) is stopped too; the critical metadata
  group lives on the space under the watermark.  Proposals to a stopped replica
  raise `StorageUnavailableError` (nothing was appended).  Stopped replicas
  still checkpoint and compact their journals to the checkpoint.  Once the
  disk is usable again (free space sampled every few ticks; a write probe with
  backoff after a failure) a replica whose write failed is reopened from its
  checkpoint — journal, state machine and node — and catches up like any
  follower, without a restart.  A follower whose disk lost writes it had
  acknowledged as fsynced (a disk that lies) cannot catch up from its leader;
  the leader logs it.

State machines implement `StateMachine` (apply + checkpoint + the snapshot
stream of `core.Snapshotter`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import shutil
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from raftka.storage.fsutil import try_lock_directory

from . import canary
from .core import MembershipChangeError, NotLeaderError, RaftConfig, RaftNode, Role
from .hardstate import HardStateStore
from .journal import Journal
from .liveness import Liveness
from .loop_lag import LoopLag
from .membership import Membership
from .messages import (ENTRY_NORMAL, Message, MessageDecodeError, MessageType, decode_frame, encode_frame,
                       encode_frames, encode_message)
from .replica import broker_of, format_replica, incarnation_of
from .storage_health import StorageMonitor, journal_segment_bytes, storage_failure_reason
from .sync_policy import InlineSyncPolicy
from .throttle import ByteRateLimiter
from .transport import PeerTransport
from .warning_throttle import WarningThrottle
from .wake_grid import broker_phase, grid_delay, grid_floor, set_beat

log = logging.getLogger("raftka.raft.host")

_APPLIED = object()  # a waiting proposal's answer: whatever the state machine's apply returns

FSYNC_THREADS = 16
SLOW_SYNC_WARNING_INTERVAL_S = 1.0
LOST_ENTRY_WARNING_INTERVAL_S = 60.0  # per follower replica whose disk lost acknowledged entries


class StateMachine(Protocol):
    applied_index: int  # durable checkpoint on open; advanced by apply()
    applied_term: int

    def apply(self, index: int, term: int, data: bytes) -> Any: ...
    def checkpoint(self) -> int: ...  # make applied state durable; returns the durable index
    # the same in two steps: the state taken now, on the loop; the job (its writes and fsyncs) run in a worker thread
    # while entries are applied meanwhile; checkpoint_done(), if the machine has it, called on the loop after the job
    def begin_checkpoint(self) -> tuple[int, Callable[[], None]]: ...
    def close(self) -> None: ...
    def reopen(self) -> None: ...  # after a storage failure: back to the last durable checkpoint
    # snapshot stream, see core.Snapshotter
    def begin_install(self) -> bytes: ...
    def read_chunk(self, cursor: bytes) -> tuple[bytes, bool, int]: ...
    def install_chunk(self, data: bytes) -> bytes: ...
    def finish_install(self, index: int, term: int) -> bool: ...
    # Optional, with raft_log = True (the state machine's log is the group's Raft log, see partition_journal):
    # open_journal(hard_states, name, cache_bytes) -> the RaftLog; admit(data, term) -> partition.Admission,
    # asked by the leader before proposing; proposed(index, data) after.


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class Announcement:
    """What a broker says of itself in every broker heartbeat.

    `incarnation`: its data directory's incarnation (None while a broker with an
    empty directory is still deciding); `formed`: the cluster has formed as far as
    it knows (its metadata group has seen a term, or it is a later incarnation), so
    a broker with an empty directory must come back as a new incarnation.
    """

    incarnation: int | None
    formed: bool
    seen: float  # monotonic time it arrived (0 for our own)
    extra: dict | None = None  # the broker layer's own fields (addresses, rack), opaque here
    leadership: str | None = None  # its `leadership_tag`: changes whenever the set of groups it leads does


class ProposalDroppedError(Exception):
    """The entry was overwritten by another leader's log: it was definitely not applied."""


class ProposalOutcomeUnknownError(Exception):
    """The entry's fate cannot be known here (a snapshot covered its index): it may have been applied."""


class GroupClosedError(Exception):
    """The group was removed (topic deleted or broker stopping) while the request waited."""


class GroupStateLost(Exception):
    """This replica's durable state is gone while its replica id lives on: hosting it could vote as its old self."""


class ReadIndexError(Exception):
    """No read index now: no leader known, the leader's lease lapsed, or it did not answer in time."""


class StorageUnavailableError(Exception):
    """This replica cannot write (disk full, I/O error, low disk): the proposal was not appended.

    ``reason`` says why ("disk full", ...); ``leader`` is the group's leader if another is known.
    """

    def __init__(self, group: str, reason: str, leader: int | None):
        super().__init__(f"raft group {group}: storage unavailable: {reason}")
        self.group, self.reason, self.leader = group, reason, leader


def _timed(job) -> float:
    """Run `job`; the seconds it took."""
    started = time.perf_counter()
    job()
    return time.perf_counter() - started


def _after(first, then):
    """A job that runs `first`, then `then` (not if `first` raised)."""
    def job() -> None:
        first()
        then()
    job.__qualname__ = getattr(then, "__qualname__", "job")  # named for what it is for
    return job


@dataclass
class HostConfig:
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    idle_heartbeat_ticks: int | None = None  # broker heartbeats while no group is awake; None: see idle_beat_ticks
    max_append_bytes: int = 1 << 20
    max_inflight: int = 16
    checkpoint_interval_s: float = 5.0  # how often groups are looked at for a checkpoint ...
    checkpoint_max_age_s: float = 60.0  # ... made once journal_keep_entries were applied since the last, or this late
    journal_cache_bytes: int = 4 << 20
    journal_keep_entries: int = 200
    journal_segment_bytes: int | None = None  # None: by the filesystem's size (storage_health)
    min_free_bytes: int | None = 0  # low-disk watermark; None: storage_health's default; 0: none
    storage_check_ticks: int = 5  # how often free space is sampled
    max_campaigns_per_s: int = 1000  # elections this broker's groups may start per second on their timers
    max_successor_campaigns_per_s: int = 2000  # and more, uncontested ones (a dead leader's first successors)
    learner_catchup_bytes_per_sec: int = 0  # 0: unlimited (see the module docstring)
    max_frame_bytes: int = 64 << 20  # one transport frame; a pump's messages to a peer are split to fit
    inline_sync_max_ms: float = 1.0  # a lone journal fsync runs on the loop after a streak this fast (sync_policy)
    leader_sync_delay_ms: float = 50.0  # a leader whose followers commit alone fsyncs at most this late (0: at once)
    commit_lag_ms: float = 2.0  # ... or once its entries stay uncommitted this long (a follower is slow: it is needed)

    @property
    def election_timeout_s(self) -> float:
        """Also how long a silent peer broker is given before it counts as gone."""
        return self.election_ticks * self.tick_ms / 1000

    @property
    def idle_beat_ticks(self) -> int:
        """Ticks between broker heartbeats while no group of the broker is awake: twice `heartbeat_ticks` by
        default, unless a peer's echo of a heartbeat could then come too late for a quiesced leader's lease
        (see `RaftHost._answer_at_once`)."""
        if self.idle_heartbeat_ticks is not None:
            return self.idle_heartbeat_ticks
        doubled = 2 * self.heartbeat_ticks
        return doubled if self.echo_in_time(doubled) else self.heartbeat_ticks

    def echo_in_time(self, beat_ticks: int) -> bool:
        """Does a peer's echo of our heartbeat, when the peer beats every `beat_ticks`, come in time for a quiesced
        leader's lease (`election_ticks - 1` ticks)?  It comes at most two beats and a tick of slack after the beat."""
        return 2 * beat_ticks + 2 <= self.election_ticks - 1

    def raft_config(self) -> RaftConfig:
        return RaftConfig(election_ticks=self.election_ticks, heartbeat_ticks=self.heartbeat_ticks,
                          max_append_bytes=self.max_append_bytes, max_inflight=self.max_inflight)


class RaftGroup:
    """One replica of one group on this broker: node + journal + state machine."""

    def __init__(self, name: str, node: RaftNode, journal: Journal, sm: StateMachine, directory: str,
                 critical: bool = False):
        self.name = name
        self.node = node
        self.journal = journal
        self.sm = sm
        self.directory = directory
        self.critical = critical  # keeps running below the low-disk watermark (the metadata group)
        self.storage_error: str | None = None  # a write failed ("disk full", ...): stopped until reopened
        # index -> [(term, future, answer)]: proposals (answer _APPLIED: the state machine's result) and retries
        # of them admitted with a known answer (see StateMachine.admit), resolved once the entry is applied
        self.waiting: dict[int, list[tuple[int, asyncio.Future, Any]]] = {}
        self.reads: dict[int, asyncio.Future] = {}  # read-index requests in flight, by request id
        self.read_waits: list[tuple[int, asyncio.Future]] = []  # (commit index, future): resolved once applied
        self.checkpointed = sm.applied_index
        self.closed = False
        self.known_leader: tuple[int | None, int] = (None, 0)  # (leader, term) last logged
        self.asleep_since: int | None = None  # host tick at which the ticker stopped ticking it (quiesced)
        self.synced: asyncio.Future | None = None  # set while its sync is in flight, resolved when done
        self.held: list[Message] = []  # a leader's messages taken while its sync ran, which wait for the next one
        self.sync_timer: asyncio.TimerHandle | None = None  # a leader's deferred fsync (leader_sync_delay_ms)
        self.lag_timer: asyncio.TimerHandle | None = None  # ... unless its entries wait uncommitted (commit_lag_ms)
        self.sync_due = False  # the deferred fsync's time has come: the next pump starts it
        self.led_term: int | None = None  # the term in which this replica leads the group (None: it does not)
        self.checkpoint_job: asyncio.Future | None = None  # a checkpoint's fsyncs in flight (a worker thread)
        self.checkpointed_at = time.monotonic()  # when its last checkpoint started

    def status(self, tick_ms: int) -> dict:
        st = self.node.status()
        now = self.node.now
        for peer, info in st["followers"].items():
            pr = self.node.progress[peer]
            info["last_contact_ms"] = max(0, now - pr.acked_tick) * tick_ms if pr.acked_tick > -(1 << 59) else None
        st["journal_bytes"] = self.journal.size_bytes()
        st["read_allowed"] = self.node.read_allowed()
        st["storage_error"] = self.storage_error
        return st


class DataDirectoryInUse(Exception):
    """Another process (or another RaftHost in this one) has this data directory open."""


def lock_directory(path: str) -> int:
    """An flock on the data directory, held for the host's life (the descriptor to close to release it)."""
    fd = try_lock_directory(path)
    if fd is None:
        raise DataDirectoryInUse(f"data directory {path} is in use by another broker process")
    return fd


class RaftHost:
    def __init__(self, node_id: int, data_dir: str, *, listen: tuple[str, int] | None = None,
                 peers: dict[int, tuple[str, int]] | None = None, secret: bytes | None = None,
                 config: HostConfig | None = None, cluster_id: str = "raftka"):
        """With a `secret` the host listens for peers even when it has none yet (brokers may join)."""
        self.id = node_id
        self.replica = node_id  # this broker's replica id in every group (see `replica`): incarnation 0 until set
        self.data_dir = data_dir
        self.cfg = config or HostConfig()
        self.groups: dict[str, RaftGroup] = {}
        os.makedirs(data_dir, exist_ok=True)
        self.hard_states = HardStateStore(os.path.join(data_dir, "raft"))  # every group's term, vote, ...
        self.storage = StorageMonitor(data_dir, self.cfg.min_free_bytes)
        self._journal_segment_bytes = (self.cfg.journal_segment_bytes
                                       or journal_segment_bytes(self.storage.usage.total_bytes))
        self._recovery: asyncio.Task | None = None  # probe + reopen of replicas whose writes failed
        others = {p: a for p, a in (peers or {}).items() if p != node_id}
        if others and not secret:
            raise ValueError("refusing to start: a cluster secret is required for a multi-broker cluster")
        self._data_dir_lock = lock_directory(data_dir)  # the groups' logs are opened without locks of their own
        self.transport = (PeerTransport(node_id, listen or ("127.0.0.1", 0), others, secret, self._on_frame,
                                        cluster_id=cluster_id, max_frame_bytes=self.cfg.max_frame_bytes)
                          if others or secret else None)
        self._active: set[RaftGroup] = set()
        self.liveness = Liveness(self.cfg, self.groups, replica_lost=self.replica_lost, activate=self._activate,
                                 note_role=self._note_role, wake_ticker=self._wake_ticker)
        self.leading: set[str] = set()  # groups this broker's replica leads
        self.leadership_version = 0  # bumped whenever `leading` or the term of a group in it changes
        self.leaderships_won = 0  # terms in which one of this broker's replicas became its group's leader
        self._instance = uuid.uuid4().hex[:8]  # tells this process's leadership versions from a restarted one's
        self._leadership_waiters: list[asyncio.Future] = []  # see leadership_change
        self._pump_scheduled = False
        self._deferred: set[RaftGroup] = set()  # activated while their sync was in flight
        self._synced: list = []  # groups whose sync finished, to be finished together
        self._finish_scheduled = False
        # fsyncs of different files overlap on the device: many groups syncing at once (an election of
        # thousands of groups) need many threads, a few busy partitions a few
        self._fsync_pool = concurrent.futures.ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix=f"raft-fsync-{node_id}")
        self.sync_policy = InlineSyncPolicy(self.cfg.inline_sync_max_ms / 1000)
        self._slow_sync_warnings = WarningThrottle(log, SLOW_SYNC_WARNING_INTERVAL_S)
        self._lost_entry_warnings = WarningThrottle(log, LOST_ENTRY_WARNING_INTERVAL_S)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task | None = None
        self._ticker_nap: asyncio.Future | None = None  # resolved to end the ticker's sleep early
        self.ticker_rounds = 0  # times the ticker woke up (an idle broker: once per idle heartbeat interval)
        self.ticker_lag = LoopLag()  # how late the ticker woke after its naps (event loop lag)
        self._last_tick = grid_floor(time.monotonic(), self.cfg.tick_ms / 1000)  # ticks count on the grid
        self._busy_phase = broker_phase(node_id, self.cfg.tick_ms / 1000)  # see _tick_forever
        self._rng = random.Random()
        self.dropped_messages = 0
        self._stamp_from: dict[int, int] = {}  # broker -> stamp of its newest heartbeat, echoed in our next one
        # A peer's heartbeat is answered in our next heartbeat to it (its echo), unless that could leave the
        # peer's freshest acknowledgement older than its lease (a heartbeat interval close to half the
        # election timeout): then at once, with a HEARTBEAT_RESP.  (An idle broker beats less often.)
        self._answer_at_once = not self.cfg.echo_in_time(max(self.cfg.heartbeat_ticks, self.cfg.idle_beat_ticks))
        self._peers = sorted(others)
        self._peer_addresses = {p: tuple(a) for p, a in others.items()}
        self.peer_announcements: dict[int, Announcement] = {}
        self._announcement_from: dict[int, bytes] = {}  # broker -> its last announcement as received
        self.incarnations_heard: dict[int, dict[int, float]] = defaultdict(dict)  # broker -> incarnation -> last heard
        self._read_seq = 0
        rate = self.cfg.learner_catchup_bytes_per_sec
        self.catchup_limiter = ByteRateLimiter(rate, burst=max(rate // 10, 1 << 20)) if rate > 0 else None
        self._held: deque[tuple[RaftGroup, int, Message]] = deque()  # snapshot-chunk requests held back
        self._release_timer: asyncio.TimerHandle | None = None
        self._announced: tuple[str, bytes] | None = None  # (leadership tag, announcement encoded with it)
        self.announce(0, True)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.transport is not None:
            await self.transport.start()
        self._last_tick = grid_floor(time.monotonic(), self.cfg.tick_ms / 1000)
        set_beat(self.cfg.tick_ms * self.cfg.idle_beat_ticks / 1000)  # the broker's periodic tasks wake with it
        self._ticker = asyncio.create_task(self._tick_forever(), name=f"raft-ticker-{self.id}")

    @property
    def port(self) -> int | None:
        return self.transport.port if self.transport else None

    def peer_silence_s(self, broker: int) -> float:
        """Seconds since any frame from `broker` arrived, not counting the time this broker's event loop stood
        still (`Liveness.note_late`); very large for a broker never heard."""
        return self.liveness.silence_s(broker, time.monotonic())

    @property
    def peer_acked(self) -> dict[int, float]:
        """Broker -> send time of the newest broker heartbeat it answered."""
        return self.liveness.peer_acked

    @property
    def host_ticks(self) -> int:
        """Ticks since start (quiesced groups are not ticked: see `Liveness.catch_up`)."""
        return self.liveness.host_ticks

    async def stop(self, transfer_timeout: float = 1.0) -> None:
        """Hand over leaderships, then close every group and the transport."""
        leading = [g for g in self.groups.values() if g.node.role is Role.LEADER and g.node.others]
        for g in leading:
            g.node.transfer_leadership()
            self._activate(g)
        deadline = time.monotonic() + transfer_timeout
        while leading and time.monotonic() < deadline and any(g.node.role is Role.LEADER for g in leading):
            await asyncio.sleep(self.cfg.tick_ms / 1000)
        if self._release_timer is not None:
            self._release_timer.cancel()
        for task in (self._ticker, self._recovery):
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        for name in list(self.groups):
            await self.remove_group(name)
        if self.transport is not None:
            await self.transport.close()
        self._fsync_pool.shutdown(wait=True)
        try:
            self.hard_states.close()
        except OSError as exc:  # a failed disk: whatever was not synced was never relied upon
            log.warning("broker %d: closing the hard state store: %r", self.id, exc)
        os.close(self._data_dir_lock)

    # --------------------------------------------------------------- groups

    def add_group(self, name: str, members: Membership | list[int] | None, sm: StateMachine, *,
                  critical: bool = False, opened: tuple[Journal, RaftNode] | None = None) -> RaftGroup:
        """Host this broker's replica of group `name`.

        `members`: the group's first membership (replica ids), used only if the
        journal holds none; None for a replica that joins an existing group
        (it learns the membership from the leader once added as a learner).
        A `critical` group (the metadata group) keeps running below the low-disk watermark.
        `opened`: what `open_replica` returned for it (its files opened in a worker thread).
        """
        if name in self.groups:
            if opened is not None:
                opened[0].close()
            raise ValueError(f"raft group {name} already exists on broker {self.id}")
        directory = self.group_directory(name)
        journal, node = opened or self._open_replica(name, directory, members, sm)
        group = RaftGroup(name, node, journal, sm, directory, critical)
        self.liveness.hook(group)
        self.groups[name] = group
        self._apply_storage_state(group)
        self._activate(group)  # replay committed journal entries beyond the checkpoint
        return group

    def set_peers(self, peers: dict[int, tuple[str, int]]) -> None:
        """Adopt a new broker map (broker id -> Raft address, this broker's own entry ignored)."""
        others = {p: tuple(a) for p, a in peers.items() if p != self.id}
        if others == self._peer_addresses:
            return
        if self.transport is None:
            if others:
                raise ValueError("refusing to add peers: this broker has no cluster secret")
            return
        self.transport.set_peers(others)
        self._peer_addresses = others
        self._peers = sorted(others)

    def set_cluster_id(self, cluster_id: str) -> None:
        if self.transport is not None:
            self.transport.set_cluster_id(cluster_id)

    def group_directory(self, name: str) -> str:
        return os.path.join(self.data_dir, "raft", name.replace("/", "~"))

    def open_replica(self, name: str, members: Membership | list[int] | None,
                     sm: StateMachine) -> tuple[Journal, RaftNode]:
        """The blocking part of `add_group` (creating or reading the journal's files), for a worker thread:
        many groups are opened in parallel and the event loop keeps serving meanwhile. The journal is
        closed again if the group is never added."""
        return self._open_replica(name, self.group_directory(name), members, sm)

    def _open_replica(self, name: str, directory: str, members: Membership | list[int] | None,
                      sm: StateMachine) -> tuple[Journal, RaftNode]:
        if getattr(sm, "raft_log", False):  # the state machine's log is the Raft log (partition_journal)
            journal = sm.open_journal(self.hard_states, name, self.cfg.journal_cache_bytes)
        else:
            journal = Journal(directory, segment_bytes=self._journal_segment_bytes,
                              cache_bytes=self.cfg.journal_cache_bytes, hard_states=self.hard_states, name=name,
                              lock=False)
        if sm.applied_index < journal.snapshot_index:
            journal.close()
            raise GroupStateLost(f"raft group {name}: the state machine is at index {sm.applied_index} but the "
                                 f"journal was compacted to {journal.snapshot_index}: the state machine's data is gone")
        node = RaftNode(name, self.replica, members, journal, self.cfg.raft_config(), applied=sm.applied_index,
                        applied_term=sm.applied_term, snapshotter=sm, rng=random.Random(self._rng.random()))
        return journal, node

    async def remove_group(self, name: str, *, delete_data: bool = False) -> None:
        group = self.groups.pop(name, None)
        if group is None:
            return
        group.closed = True
        self._active.discard(group)
        self._disarm_sync_timer(group)
        self.liveness.awake.discard(group)
        self._note_role(group)
        for fut in [f for waits in group.waiting.values() for _, f, _ in waits] + list(group.reads.values()) + \
                [f for _, f in group.read_waits]:
            if not fut.done():
                fut.set_exception(GroupClosedError(f"raft group {name} closed"))
        group.waiting.clear()
        group.reads.clear()
        group.read_waits.clear()
        await self._io_settled(group)  # also: a checkpoint in flight must not land after the final one below
        steps = [group.sm.close, group.journal.close]
        if not delete_data and group.storage_error is None:
            steps.insert(0, _after(group.journal.begin_sync() or (lambda: None), group.sm.checkpoint))
        if delete_data:  # after closing: a journal puts a changed hard state into the store as it closes
            steps.append(group.journal.remove_hard_state)
        for step in steps:  # each one even if another failed (a full disk must not keep the files open)
            try:
                step()
            except Exception as exc:
                log.warning("raft group %s: closing it: %s failed: %r", name, step.__qualname__, exc)
        if delete_data:  # in a worker thread: removing a topic's thousands of replicas must not stall the loop
            await asyncio.to_thread(shutil.rmtree, group.directory, ignore_errors=True)

    def group(self, name: str) -> RaftGroup:
        group = self.groups.get(name)
        if group is None:
            raise KeyError(f"raft group {name} is not hosted on broker {self.id}")
        return group

    # ------------------------------------------------------- client requests

    async def propose(self, name: str, data: bytes) -> Any:
        """Replicate `data` in group `name`; returns the state machine's result once applied here.

        Raises NotLeaderError (with a leader hint) at once on a follower, and
        ProposalDroppedError if another leader overwrote the entry.
        """
        group = self.group(name)
        self.liveness.catch_up(group)
        reason = self.storage_stop_reason(group)
        if reason is not None:
            raise StorageUnavailableError(name, reason, self._other_leader(group))
        node, sm = group.node, group.sm
        admit = getattr(sm, "admit", None) if getattr(sm, "raft_log", False) else None
        if admit is not None:
            if node.role is not Role.LEADER or node.transfer_target is not None or node.storage_failed:
                raise NotLeaderError(name, None if node.leader is None else broker_of(node.leader))
            verdict = admit(data, node.log.term)
            if verdict.result is not None:  # refused, or a retry of a batch already in the log
                if not verdict.wait_index or verdict.wait_index <= node.applied:
                    return verdict.result
                fut = self._loop.create_future()
                group.waiting.setdefault(verdict.wait_index, []).append((verdict.wait_term, fut, verdict.result))
                return await fut
        try:
            index, term = node.propose(data)
        except NotLeaderError as exc:
            raise NotLeaderError(name, None if exc.leader is None else broker_of(exc.leader)) from None
        except Exception as exc:
            if self._storage_failed(group, exc, "appending to the journal"):
                raise StorageUnavailableError(name, group.storage_error, None) from exc
            raise
        if admit is not None:
            sm.proposed(index, data)
        fut = self._loop.create_future()
        group.waiting.setdefault(index, []).append((term, fut, _APPLIED))
        self._activate(group)
        return await fut

    def read_allowed(self, name: str) -> bool:
        """Leader-lease check: may this broker serve reads of the group's committed state now?"""
        group = self.group(name)
        self.liveness.catch_up(group)
        node = group.node
        now = time.monotonic()
        tick_s = self.cfg.tick_ms / 1000
        if node.quiesced and node.role is Role.LEADER:
            if node.applied < node.term_start_index or node.lease_forfeited:
                return False
            lease_s = (self.cfg.election_ticks - 1) * tick_s
            return node.quorum_with(p for p in node.others if self.liveness.acked_lately(p, now, lease_s))
        # The node counts the lease in ticks; time since our last tick (a busy or paused
        # process) is not counted yet, so take it off what is left.
        return node.lease_remaining() * tick_s - (now - self._last_tick) > 0

    def ensure_leader(self, name: str) -> RaftGroup:
        group = self.group(name)
        if not self.read_allowed(name):
            raise NotLeaderError(name, None if group.node.role is Role.LEADER else self.leader_of(name))
        return group

    def live_leader_of(self, name: str, election_timeouts: float = 2.0) -> int | None:
        """The broker leading group `name` if that leader (this very replica of it) was heard within
        `election_timeouts` election timeouts; None otherwise."""
        leader = self.group(name).node.leader
        if leader is None:
            return None
        if leader == self.replica:
            return self.id
        window_s = election_timeouts * self.cfg.election_timeout_s
        return broker_of(leader) if self.liveness.heard_lately(leader, time.monotonic(), window_s) else None

    def broker_reachable(self, broker: int) -> bool:
        """Is this broker's Raft link to `broker` up?  It goes down at once when that broker's process dies
        (its socket closes), an election timeout before its silence proves anything."""
        return self.transport is None or broker == self.id or self.transport.is_connected(broker)

    def leader_of(self, name: str) -> int | None:
        """The broker that leads group `name`, as far as this replica knows."""
        leader = self.group(name).node.leader
        return None if leader is None else broker_of(leader)

    def transfer_leadership(self, name: str, target: int) -> bool:
        """Ask the leader's replica of group `name` to hand leadership to voter `target` (a replica id)."""
        group = self.group(name)
        self.liveness.catch_up(group)
        if group.node.transfer_leadership(target) is None:
            return False
        self._activate(group)
        return True

    def propose_membership(self, name: str, target: Membership) -> int:
        """Start one membership step (leader only); returns the index of its configuration entry.

        Raises NotLeaderError, MembershipError (an invalid step) or
        MembershipChangeError (not now: a change is in flight, or a learner lags).
        """
        group = self.group(name)
        self.liveness.catch_up(group)
        try:
            index, _ = group.node.propose_membership(target)
        finally:
            if group.node.has_ready():
                self._activate(group)  # also the no-op a refusal may have appended (an entry of the leader's term)
        log.info("raft group %s: membership change to %s proposed at index %d", name, target.describe(), index)
        return index

    async def read_index(self, name: str, timeout: float) -> None:
        """Return once this replica has applied everything the leader had committed when asked.

        The leader answers only under its lease, so what is read here afterwards
        is at least as fresh as a read on the leader at the time of the call.
        Raises ReadIndexError (no leader, no lease, no answer in time).
        """
        group = self.group(name)
        node = group.node
        loop = self._loop
        deadline = loop.time() + timeout
        while not self.read_allowed(name) and (node.leader is None or node.leader == node.id):
            if loop.time() >= deadline or group.closed:  # no leader known yet, or ours has no lease yet
                raise ReadIndexError(f"{name}: no leader with a lease known on broker {self.id}")
            await asyncio.sleep(self.cfg.tick_ms / 1000)
        if self.read_allowed(name):
            target = node.commit
        else:
            leader = node.leader
            if self.transport is None:
                raise ReadIndexError(f"{name}: no transport to reach leader {format_replica(leader)}")
            self._read_seq += 1
            fut = group.reads[self._read_seq] = loop.create_future()
            request = Message(MessageType.READ_INDEX, name, node.id, leader, node.log.term, context=self._read_seq)
            self.transport.send(broker_of(leader), encode_frame([encode_message(request)]))
            try:
                async with asyncio.timeout_at(deadline):
                    target = await fut
            except asyncio.TimeoutError:
                raise ReadIndexError(f"{name}: the leader did not answer a read-index request in time") from None
            finally:
                group.reads.pop(request.context, None)
        if node.applied >= target:
            return
        fut = loop.create_future()
        group.read_waits.append((target, fut))
        try:
            async with asyncio.timeout_at(deadline):
                await fut
        except asyncio.TimeoutError:
            raise ReadIndexError(f"{name}: this replica did not reach index {target} in time") from None

    def _on_read_index(self, group: RaftGroup, m: Message) -> None:
        """Leader side of read_index, and the follower side of its answer."""
        if m.type is MessageType.READ_INDEX:
            allowed = group.node.role is Role.LEADER and self.read_allowed(group.name)
            reply = Message(MessageType.READ_INDEX_RESP, group.name, group.node.id, m.src, group.node.log.term,
                            index=group.node.commit if allowed else 0, context=m.context, reject=not allowed)
            if self.transport is not None:
                self.transport.send(broker_of(m.src), encode_frame([encode_message(reply)]))
            return
        fut = group.reads.get(m.context)
        if fut is not None and not fut.done():
            if m.reject:
                fut.set_exception(ReadIndexError(f"{group.name}: the leader holds no lease"))
            else:
                fut.set_result(m.index)

    def _resolve_reads(self, group: RaftGroup) -> None:
        applied = group.node.applied
        ready = [(t, f) for t, f in group.read_waits if t <= applied]
        if ready:
            group.read_waits = [(t, f) for t, f in group.read_waits if t > applied]
            for _, fut in ready:
                if not fut.done():
                    fut.set_result(None)

    def status(self, names: set[str] | None = None) -> list[dict]:
        out = []
        for g in list(self.groups.values()):
            if names is not None and g.name not in names:
                continue
            st = g.status(self.cfg.tick_ms)
            for replica, info in st["followers"].items():
                info["broker"] = broker_of(replica)
                info["lost"] = self.replica_lost(replica)  # its broker came back with an empty data dir
            out.append(st)
        return out

    def storage_status(self) -> dict:
        """The data directory's health: "ok", "low" (below the watermark) or "failed" (a write failed)."""
        errors = {g.name: g.storage_error for g in self.groups.values() if g.storage_error}
        state = "failed" if errors else "low" if self.storage.low else "ok"
        reason = next(iter(errors.values())) if errors else self.storage.low_reason() if self.storage.low else None
        stopped = sum(1 for g in self.groups.values() if g.node.storage_failed)
        return {"status": state, "reason": reason, "stopped_groups": stopped, "failed_groups": errors,
                **self.storage.status()}

    def storage_stop_reason(self, group: RaftGroup) -> str | None:
        """Why this replica cannot write now ("disk full", ...), None if it can."""
        if group.storage_error is not None:
            return group.storage_error
        if self.storage.low and not group.critical:
            return "disk almost full (below --min-free-bytes)"
        return None

    def transport_stats(self) -> dict:
        return self.transport.stats() if self.transport else {}

    def election_stats(self) -> dict:
        """Elections since start: started by this broker's timers, held back by the campaign budget, won here; and
        leaders here that stepped down on their own (they heard no quorum for an election timeout)."""
        return {"started": self.liveness.campaigns_started, "deferred": self.liveness.campaigns_deferred,
                "won": self.leaderships_won, "stepped_down": self.liveness.stepped_down}

    # ----------------------------------------------------------------- pump

    def _wake_ticker(self) -> None:
        if self._ticker_nap is not None:
            _resolve(self._ticker_nap)  # the ticker napped with no group awake: tick again

    def _activate(self, group: RaftGroup) -> None:
        self._active.add(group)
        self.liveness.mark_awake(group)  # it may have woken up: the ticker looks at it (and drops it once quiesced)
        if not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Take every active group's messages; send them at once, or after the group's own fsync.

        Each group syncs on its own (a group with a sync in flight waits for it and is pumped again
        after): one slow or busy group never holds back another's messages.  Hard states put by this
        pump are synced once for all of them, before their journals.
        """
        self._pump_scheduled = False
        active, self._active = self._active, set()
        ready: list[tuple[RaftGroup, list[Message]]] = []
        syncing: list[tuple[RaftGroup, list[Message], Any]] = []  # (group, messages, journal job or None)
        early: dict[int, list[bytes]] = defaultdict(list)  # a leader's appends, sent while it syncs
        for group in active:
            if group.closed:
                continue
            if group.synced is not None:
                self._deferred.add(group)  # pumped again once its sync in flight is done
                if group.node.role is Role.LEADER:
                    self._apply_committed(group)  # its followers' acknowledgements may commit entries meanwhile
                    # New entries go to the followers now, not after this sync: the leader writes them with
                    # its next one (§10.2.1 again); what else it says waits for that sync.
                    group.held += self._split_early(group.node.take_messages(), early)
                continue
            # Messages are taken before the sync: they speak of the state now being made durable.
            messages = group.held + group.node.take_messages()
            group.held = []
            staged = group.journal.stage_hard_state()  # into the shared store, synced below for all groups
            if not staged and self._defers_sync(group):
                messages = self._split_early(messages, early)
                if not messages:  # only entries and heartbeats: its followers commit them; it fsyncs a little later
                    self._arm_sync_timer(group)
                    ready.append((group, messages))
                    continue
            job = group.journal.begin_sync()
            if job is None and not staged:
                group.sync_due = False  # a checkpoint's fsync covered it
                ready.append((group, messages))
                continue
            self._disarm_sync_timer(group)
            group.synced = self._loop.create_future()
            if canary.enabled("send-before-fsync"):  # mutant: send and apply first, fsync after
                ready.append((group, messages))
                messages = []
            elif group.node.role is Role.LEADER and messages:
                messages = self._split_early(messages, early)
            syncing.append((group, messages, job))
        if early and self.transport is not None:
            for peer, payloads in early.items():
                for frame in encode_frames(payloads, self.transport.max_frame_bytes):
                    self.transport.send(peer, frame)
        if self.hard_states.pending:  # nobody speaks before the store holds every hard state put so far
            for group, messages in ready:
                group.synced = self._loop.create_future()
                syncing.append((group, messages, None))
            ready = []
        if ready:
            self._finish(ready, set())
        if not syncing:
            return
        if self.hard_states.pending:  # every group's new term or vote in one fsync, before their entries
            store = self._loop.run_in_executor(self._fsync_pool, self.hard_states.sync)
            store.add_done_callback(lambda f: self._after_hard_states(f, syncing))
        else:
            for group, messages, job in syncing:
                self._submit_sync(group, messages, job, alone=len(syncing) == 1, sends_first=bool(early))

    def _defers_sync(self, group: RaftGroup) -> bool:
        """Does a leader let its journal fsync wait (group commit over `leader_sync_delay_ms`)?

        Only while its followers commit without it (`RaftNode.followers_commit_alone`): the fsync it saves is
        one of three per round on a three-replica group, and the commit never waited for it.  It fsyncs at
        once when a follower falls silent or behind, or when its messages need more than its entries and
        heartbeats; a checkpoint fsyncs the journal first (`_checkpoint_all`).
        """
        node = group.node
        return (node.role is Role.LEADER and self.cfg.leader_sync_delay_ms > 0 and not group.sync_due
                and group.journal.synced_index < node.log.last_index and node.followers_commit_alone())

    def _arm_sync_timer(self, group: RaftGroup) -> None:
        """The deferred fsync starts `leader_sync_delay_ms` after the first entry it covers, or once entries
        have waited `commit_lag_ms` uncommitted (a follower is slow: the leader's fsync would commit them; a round
        between brokers nearby takes well under that)."""
        if group.sync_timer is None:
            group.sync_timer = self._loop.call_later(self.cfg.leader_sync_delay_ms / 1000, self._sync_deferred, group)
        self._watch_commit(group)

    def _watch_commit(self, group: RaftGroup) -> None:
        """While entries are uncommitted, look again `commit_lag_ms` later whether the newest of them now is."""
        node = group.node
        if node.commit >= node.log.last_index or group.closed:
            if group.lag_timer is not None:
                group.lag_timer.cancel()
                group.lag_timer = None
        elif group.lag_timer is None:
            group.lag_timer = self._loop.call_later(self.cfg.commit_lag_ms / 1000, self._commit_lagged, group,
                                                    node.log.last_index)

    def _disarm_sync_timer(self, group: RaftGroup) -> None:
        for timer in (group.sync_timer, group.lag_timer):
            if timer is not None:
                timer.cancel()
        group.sync_timer = group.lag_timer = None

    def _commit_lagged(self, group: RaftGroup, index: int) -> None:
        group.lag_timer = None
        if group.node.commit < index:
            self._sync_deferred(group)
        else:
            self._watch_commit(group)

    def _sync_deferred(self, group: RaftGroup) -> None:
        self._disarm_sync_timer(group)
        if not group.closed:
            group.sync_due = True
            self._activate(group)

    @staticmethod
    def _split_early(messages: list[Message], early: dict[int, list[bytes]]) -> list[Message]:
        """Put a leader's appends into `early` (sent before its fsync ends) and return the messages that wait.

        Raft §10.2.1: a leader sends its entries while it writes them; it counts itself toward a commit only
        for entries it has fsynced (core), so nothing claims what is not durable.  A final heartbeat (followers
        may sleep) waits: a failed sync must still wake them (see _finish).
        """
        later = []
        for m in messages:
            if m.type is MessageType.APPEND or m.type is MessageType.HEARTBEAT and not m.final:
                early[broker_of(m.dst)].append(encode_message(m))
            else:
                later.append(m)
        return later

    def _after_hard_states(self, store: asyncio.Future, syncing: list) -> None:
        error = store.exception() if not store.cancelled() else asyncio.CancelledError()
        for group, messages, job in syncing:
            if error is None:
                self._submit_sync(group, messages, job)
            else:  # none of them may speak: any may have had its hard state in there
                self._sync_done(group, messages, error, "syncing the hard state")

    def _submit_sync(self, group: RaftGroup, messages: list[Message], job, alone: bool = False,
                     sends_first: bool = False) -> None:
        """Run a group's journal sync in a worker thread, or on the loop when it is the pump's only one and
        syncs have been fast (`sync_policy`); either way its messages wait for it (`_sync_done`). `sends_first`:
        this pump queued a leader's appends, which go out before its own fsync (the transport's flush runs
        first: it was scheduled first)."""
        deferred, group.sync_due = group.sync_due, False
        if job is None:  # only its hard state changed, and that is durable now
            self._sync_done(group, messages, None, "")
            return
        # A leader's deferred fsync waits for nobody: in a thread, it never stalls the loop under a round.
        if alone and not deferred and self.sync_policy.inline():
            if sends_first:
                self._loop.call_soon(self._sync_inline, group, messages, job)
            else:
                self._sync_inline(group, messages, job)
            return
        future = self._loop.run_in_executor(self._fsync_pool, _timed, job)
        future.add_done_callback(lambda f: self._pool_sync_done(group, messages, f))

    def _sync_inline(self, group: RaftGroup, messages: list[Message], job) -> None:
        self.sync_policy.inline_count += 1
        try:
            self._record_sync(group, _timed(job), inline=True)
            error = None
        except Exception as exc:
            self.sync_policy.record(float("inf"))
            error = exc
        self._sync_done(group, messages, error, "syncing the journal")

    def _pool_sync_done(self, group: RaftGroup, messages: list[Message], future: asyncio.Future) -> None:
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        self._record_sync(group, future.result() if error is None else float("inf"), inline=False)
        self._sync_done(group, messages, error, "syncing the journal")

    def _record_sync(self, group: RaftGroup, seconds: float, inline: bool) -> None:
        """Feed the sync policy; log a slow sync (at most one line a second, with how many were not logged)."""
        if self.sync_policy.record(seconds, inline):
            self._slow_sync_warnings.warn(
                "slow fsync", "raft group %s: a journal fsync took %.0f ms (%s)", group.name, seconds * 1000,
                "on the event loop: this broker did nothing else meanwhile" if inline else "in a worker thread")

    def _sync_done(self, group: RaftGroup, messages: list[Message], error: BaseException | None, action: str) -> None:
        """A group's sync finished: queue its messages; all groups done by now are finished together."""
        self._synced.append((group, messages, error, action))
        if not self._finish_scheduled:
            self._finish_scheduled = True
            self._loop.call_soon(self._finish_synced)

    def _finish_synced(self) -> None:
        self._finish_scheduled = False
        done, self._synced = self._synced, []
        failed = set()
        for group, _, error, action in done:
            if error is not None:
                # Nothing of this group may be acknowledged: its messages are dropped (peers retry).
                self._storage_failed(group, error, action, fallback="I/O error")
                failed.add(group)
        self._finish([(group, messages) for group, messages, _, _ in done], failed)
        for group, _, _, _ in done:
            synced, group.synced = group.synced, None
            if synced is not None and not synced.done():
                synced.set_result(None)
            if group in self._deferred:
                self._deferred.discard(group)
                self._activate(group)

    def _finish(self, batch, failed: set) -> None:
        frames: dict[int, list[bytes]] = defaultdict(list)
        for group, messages in batch:
            if group.closed:
                continue
            if group in failed:
                # The sync failed: nothing of this group may be acknowledged or claimed; the replica waits
                # for the disk. Only heartbeats go out: they claim nothing unsynced, and they wake quiesced
                # followers, which must elect another leader once this one steps down.
                for m in messages:
                    if m.type is MessageType.HEARTBEAT and not m.final:
                        frames[broker_of(m.dst)].append(encode_message(m))
                continue
            try:
                self._drive(group, messages, frames)
            except Exception as exc:
                if not self._storage_failed(group, exc, "driving the group"):
                    log.exception("raft group %s: unexpected error while driving it", group.name)
        if self.transport is not None:
            for peer, payloads in frames.items():
                for frame in encode_frames(payloads, self.transport.max_frame_bytes):
                    self.transport.send(peer, frame)

    def _drive(self, group: RaftGroup, messages: list[Message], frames: dict[int, list[bytes]]) -> None:
        node = group.node
        node.persisted()
        limiter = self.catchup_limiter
        for m in messages:
            if limiter is not None and m.type is MessageType.SNAPSHOT and m.payload and node.membership is not None \
                    and m.dst in node.membership.learners:
                limiter.charge(len(m.payload))
            frames[broker_of(m.dst)].append(encode_message(m))
        self._apply_committed(group)
        if node.has_ready():
            self._activate(group)
        self._note_role(group)
        if (node.leader, node.log.term) != group.known_leader and node.leader is not None:
            group.known_leader = (node.leader, node.log.term)
            log.info("raft group %s: leader is replica %s in term %d", group.name, format_replica(node.leader),
                     node.log.term)

    def _apply_committed(self, group: RaftGroup) -> None:
        """Apply the group's newly committed entries and answer their proposals.

        A follower applies only what its own journal holds durably.  A leader applies whatever is committed,
        also while its own fsync of those entries is still running: a majority of followers has fsynced them
        (the core counts the leader only for entries it synced), so a slow fsync on the leader's disk does not
        hold back answers that the followers' disks already made safe.  The state machine's checkpoint never
        gets ahead of the journal's durable entries (`_checkpoint_all`), so after a crash the replica reopens
        at a point its own journal holds, and takes the rest from the new leader.
        """
        node = group.node
        limit = None if node.role is Role.LEADER else group.journal.synced_index
        for index, entry in node.take_committed(limit):
            if group.storage_error is not None:
                break  # the state machine failed: it is reopened from its checkpoint once the disk works
            # A configuration entry is the core's business: the state machine sees a no-op.
            self._apply(group, index, entry.term, entry.data if entry.kind == ENTRY_NORMAL else b"")
        if group.waiting and node.applied >= min(group.waiting):
            self._fail_skipped(group)
        if group.read_waits:
            self._resolve_reads(group)

    def _note_role(self, group: RaftGroup) -> None:
        node = group.node
        term = node.log.term if node.role is Role.LEADER and not group.closed else None
        if term != group.led_term:
            group.led_term = term
            self.leaderships_won += term is not None
            (self.leading.add if term is not None else self.leading.discard)(group.name)
            self.leadership_version += 1
            for waiter in self._leadership_waiters:
                _resolve(waiter)
            self._leadership_waiters.clear()

    async def leadership_change(self, since: int, timeout: float) -> None:
        """Return once `leadership_version` is no longer `since`, or after `timeout` seconds."""
        if self.leadership_version != since:
            return
        waiter = self._loop.create_future()
        self._leadership_waiters.append(waiter)
        try:
            await self._resolved_or_timeout(waiter, timeout)
        finally:
            if waiter in self._leadership_waiters:
                self._leadership_waiters.remove(waiter)

    async def _resolved_or_timeout(self, future: asyncio.Future, timeout: float) -> None:
        """Wait until `future` is resolved (see `_resolve`), or resolve it after `timeout` seconds."""
        timer = self._loop.call_later(timeout, _resolve, future)
        try:
            await future
        finally:
            timer.cancel()

    def _apply(self, group: RaftGroup, index: int, term: int, data: bytes) -> None:
        try:
            result: Any = group.sm.apply(index, term, data)
            error = None
        except Exception as exc:  # a state machine bug must not take the broker down
            if not self._storage_failed(group, exc, f"applying index {index}"):
                log.exception("raft group %s: applying index %d failed", group.name, index)
            result, error = None, exc
        for proposed_term, fut, answer in group.waiting.pop(index, ()):
            if fut.done():
                continue
            if proposed_term != term:
                fut.set_exception(ProposalDroppedError(f"{group.name}: entry {index} was replaced by a new leader"))
            elif error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result if answer is _APPLIED else answer)

    def _fail_skipped(self, group: RaftGroup) -> None:
        """Proposals at indexes covered by an installed snapshot have an unknown fate here."""
        for index in [i for i in group.waiting if i <= group.node.applied]:
            for _, fut, _ in group.waiting.pop(index):
                if not fut.done():
                    fut.set_exception(ProposalOutcomeUnknownError(
                        f"{group.name}: entry {index} outcome unknown (snapshot)"))

    # ------------------------------------------------------------ network

    def _on_frame(self, peer: int, payload: bytes) -> None:
        self.liveness.heard_from(peer, time.monotonic())
        try:
            messages = decode_frame(payload)
        except MessageDecodeError as exc:
            log.warning("broker %d sent an undecodable raft frame: %s", peer, exc)
            return
        for m in messages:
            self._deliver(peer, m)

    def _deliver(self, peer: int, m: Message) -> None:
        if not m.group:
            self._on_broker_heartbeat(peer, m)
            return
        group = self.groups.get(m.group)
        if group is None or m.dst != self.replica or broker_of(m.src) != peer:
            self.dropped_messages += 1
            return
        self.liveness.catch_up(group)
        if m.type in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP):
            self._on_read_index(group, m)
            return
        if self._throttled(group, m):
            self._held.append((group, peer, m))
            self._schedule_release()
            return
        self._step(group, peer, m)

    def _step(self, group: RaftGroup, peer: int, m: Message) -> None:
        if m.type is MessageType.APPEND_RESP and m.reject:
            self._check_lost_entries(group, peer, m)
        try:
            group.node.step(m)
        except Exception as exc:
            if not self._storage_failed(group, exc, f"storing {m.type.name} from broker {peer}"):
                log.exception("raft group %s: message %s from %d failed", group.name, m.type.name, peer)
            return
        self.liveness.after_step(group)
        self._activate(group)

    def _check_lost_entries(self, group: RaftGroup, peer: int, m: Message) -> None:
        """A follower refused an append at the very entry it had acknowledged as durable (the rejected index is
        its match index, its log ends below it): its disk lost writes it had fsynced.  Raft cannot repair a disk
        that lies; the leader keeps probing just above what it was told, so the replica stays behind until
        another replica leads the group.  Say so, at most once a minute per replica."""
        node = group.node
        pr = node.progress.get(m.src) if node.role is Role.LEADER and m.term == node.log.term else None
        if pr is not None and 0 < pr.match == m.log_term and m.index < pr.match:
            self._lost_entry_warnings.warn(
                (group.name, peer), "raft group %s: broker %d's replica no longer holds entry %d, which it had "
                "acknowledged as written to disk (its log ends at %d): its disk lost fsynced writes; it stays "
                "behind until another replica leads the group", group.name, peer, pr.match, m.index)

    # -------------------------------------------------------- catch-up throttle

    def _throttled(self, group: RaftGroup, m: Message) -> bool:
        """Is `m` a learner's request for the next snapshot chunk that must wait for the byte budget?"""
        node = group.node
        if self.catchup_limiter is None or m.type is not MessageType.SNAPSHOT_RESP or m.final or m.reject \
                or node.role is not Role.LEADER or node.membership is None or m.src not in node.membership.learners:
            return False
        return bool(self._held) or self.catchup_limiter.wait_s() > 0

    def _schedule_release(self) -> None:
        if self._release_timer is None and self._held and self._loop is not None:
            delay = max(0.001, self.catchup_limiter.wait_s())
            self._release_timer = self._loop.call_later(delay, self._release_held)

    def _release_held(self) -> None:
        """Hand one held request to its group (its chunk is charged when sent), then wait for the budget again."""
        self._release_timer = None
        while self._held and self.catchup_limiter.wait_s() <= 0:
            group, peer, m = self._held.popleft()
            if not group.closed:
                self._step(group, peer, m)
                break
        self._schedule_release()

    def _keep_held_transfers_alive(self) -> None:
        for group, _, m in self._held:
            if not group.closed:
                group.node.hold_snapshot(m.src)

    def _on_broker_heartbeat(self, peer: int, m: Message) -> None:
        """A peer's broker heartbeat (or an answer to ours).

        A heartbeat's `context` is its send time (microseconds, monotonic) and its `index` echoes the
        newest heartbeat stamp its sender received from us (0: none yet).  The echo is the peer's
        acknowledgement: quiesced leaders hold their read lease from it (`read_allowed`).  One heartbeat
        each way per interval thus carries both brokers' beats and answers; a heartbeat without an echo
        (the peer has not heard from us yet) is answered at once with a HEARTBEAT_RESP, as is every one
        when the echo would come too late for the lease (`_answer_at_once`).
        """
        self._note_announcement(peer, m.payload)
        if m.type is MessageType.HEARTBEAT:
            self._stamp_from[peer] = m.context
            if m.index:
                self._note_acked(peer, m.index)
            if (m.index == 0 or self._answer_at_once) and self.transport is not None:
                reply = Message(MessageType.HEARTBEAT_RESP, "", self.id, peer, 0, context=m.context,
                                payload=self._announcement_payload())
                self.transport.send(peer, encode_frame([encode_message(reply)]))
        elif m.type is MessageType.HEARTBEAT_RESP:
            self._note_acked(peer, m.context)

    def _note_acked(self, peer: int, stamp_us: int) -> None:
        stamp = stamp_us / 1e6
        if stamp <= time.monotonic():  # a stamp from before this machine's clock restarted is not ours
            self.liveness.peer_acked[peer] = max(self.liveness.peer_acked.get(peer, 0.0), stamp)

    def _send_broker_heartbeats(self) -> None:
        if self.transport is None:
            return
        stamp = int(time.monotonic() * 1e6)
        payload = self._announcement_payload()
        for peer in self._peers:
            beat = Message(MessageType.HEARTBEAT, "", self.id, peer, 0, index=self._stamp_from.get(peer, 0),
                           context=stamp, payload=payload)
            self.transport.send(peer, encode_frame([encode_message(beat)]))

    # -------------------------------------------------------- announcements

    def announce(self, incarnation: int | None, formed: bool, extra: dict | None = None) -> None:
        """What every broker heartbeat says about this broker (see `Announcement`); `extra` is kept from the
        previous call when not given."""
        if extra is None and getattr(self, "announcement", None) is not None:
            extra = self.announcement.extra
        self.announcement = Announcement(incarnation, formed, 0.0, extra)
        self._announced = None  # encoded again for the next heartbeat
        if self._loop is not None:
            self._send_broker_heartbeats()

    @property
    def leadership_tag(self) -> str:
        """Names this process's set of led groups and their terms: equal tags, equal sets."""
        return f"{self._instance}:{self.leadership_version}"

    def _announcement_payload(self) -> bytes:
        """The announcement as heartbeats carry it, encoded once per change (of it or of `leadership_tag`)."""
        tag = self.leadership_tag
        if self._announced is None or self._announced[0] != tag:
            ann = self.announcement
            doc = {"incarnation": ann.incarnation, "formed": ann.formed, "leadership": tag}
            if ann.extra:
                doc["extra"] = ann.extra
            self._announced = (tag, orjson.dumps(doc))
        return self._announced[1]

    def _note_announcement(self, peer: int, payload: bytes) -> None:
        if not payload:
            return
        now = time.monotonic()
        announced = self.peer_announcements.get(peer)
        if announced is not None and payload == self._announcement_from.get(peer):
            announced.seen = now  # unchanged (most heartbeats): nothing to decode
        else:
            try:
                doc = orjson.loads(payload)
                incarnation, formed, extra = doc["incarnation"], bool(doc["formed"]), doc.get("extra")
                leadership = doc.get("leadership")
                if incarnation is not None and not isinstance(incarnation, int):
                    raise TypeError("incarnation")
                if extra is not None and not isinstance(extra, dict):
                    raise TypeError("extra")
                if leadership is not None and not isinstance(leadership, str):
                    raise TypeError("leadership")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("broker %d sent a malformed announcement %r", peer, payload[:80])
                return
            if announced is not None and announced.incarnation != incarnation:
                self.liveness.note_incarnation_change(now)
            announced = self.peer_announcements[peer] = Announcement(incarnation, formed, now, extra, leadership)
            self._announcement_from[peer] = payload
        if announced.incarnation is None:
            return
        heard = self.incarnations_heard[peer]
        if announced.incarnation not in heard and heard:
            log.warning("broker %d now announces incarnation %08x (was %s): its data directory was replaced",
                        peer, announced.incarnation, ", ".join(f"{i:08x}" for i in heard))
        heard[announced.incarnation] = now  # "last heard": two live directories of one broker are told apart

    def replica_lost(self, replica: int) -> bool:
        """Does the replica's broker announce another incarnation (it lost the replica's state)?"""
        announced = self.peer_announcements.get(broker_of(replica))
        if broker_of(replica) == self.id:
            return replica != self.replica
        # None: the broker restarted with an empty directory and is still deciding who it is.
        return announced is not None and announced.incarnation != incarnation_of(replica)

    # --------------------------------------------------------------- ticks

    async def _tick_forever(self) -> None:
        """Count ticks on the multiples of the tick (see `wake_grid`), and beat on those of the heartbeat interval,
        or of the idle one (`HostConfig.idle_beat_ticks`) while no group is awake.  An idle ticker wakes just past
        those points (as the peers and periodic tasks do), a busy one a phase of the broker's own later."""
        tick_s = self.cfg.tick_ms / 1000
        last_checkpoint = time.monotonic()
        ticks_since_storage_check = 0
        while True:
            now = time.monotonic()
            if self.liveness.busy() or self._held:
                beat_every = self.cfg.heartbeat_ticks
                # The broker's phase past the first grid point half a tick away (a round that overran its tick
                # leaves the loop time): brokers whose busy rounds fell at the same instants started the
                # elections of groups whose timers expired on the same tick at the same instant, and such tied
                # candidacies split the votes (10,000 groups created at once never all got leaders).
                delay = grid_delay(tick_s, now + tick_s / 2 - self._busy_phase) + tick_s / 2
            else:  # an idle broker wakes once per (idle) heartbeat interval, not per tick
                beat_every = self.cfg.idle_beat_ticks
                delay = self.liveness.idle_delay(self._peers, now, self._last_tick, self._ticks_to_beat(beat_every))
            planned = now + delay
            await self._nap(delay)
            self.ticker_rounds += 1
            now = time.monotonic()
            self.ticker_lag.record(now - planned, now)
            self.liveness.note_late(now - planned, now)
            ticks = min(int((now - self._last_tick) / tick_s), self.cfg.election_ticks + 1)
            if ticks <= 0:
                continue
            beat_due = ticks >= self._ticks_to_beat(beat_every)
            if ticks > self.cfg.election_ticks:
                self._last_tick = grid_floor(now, tick_s)  # a long stall: every lease has expired anyway
            else:
                self._last_tick += ticks * tick_s
            if beat_due:
                self._send_broker_heartbeats()
            self.liveness.tick(self._peers, now, ticks)
            ticks_since_storage_check += ticks
            if ticks_since_storage_check >= self.cfg.storage_check_ticks:
                ticks_since_storage_check = 0
                self._check_storage(now)
            if self._held:
                self._keep_held_transfers_alive()
            if now - last_checkpoint >= self.cfg.checkpoint_interval_s:
                last_checkpoint = now
                self._checkpoint_all()

    def _ticks_to_beat(self, beat_every: int) -> int:
        """Ticks from `_last_tick` to the next multiple of `beat_every` ticks (1 to beat_every)."""
        tick_no = round(self._last_tick * 1000 / self.cfg.tick_ms)
        return beat_every - tick_no % beat_every

    async def _nap(self, delay: float) -> None:
        """Sleep `delay` seconds, or until a group wakes (`_wake_ticker`)."""
        nap = self._ticker_nap = self._loop.create_future()
        try:
            await self._resolved_or_timeout(nap, delay)
        finally:
            self._ticker_nap = None

    def _checkpoint_all(self) -> None:
        """Checkpoint the groups whose checkpoint lets their journal be compacted (or is older than
        `checkpoint_max_age_s`), in worker threads; the journals are compacted when each is done."""
        now = time.monotonic()
        for group in list(self.groups.values()):
            stopped = group.node.storage_failed
            if group.closed or group.synced is not None or group.checkpoint_job is not None:
                continue  # (compaction rewrites journal files: not under an fsync in flight; next time)
            ahead = group.sm.applied_index > group.journal.synced_index  # a leader applied what its fsync missed
            if stopped:  # a stopped replica serves nobody: it checkpoints (unless its writes fail) and frees what it can
                if group.storage_error is None and group.sm.applied_index > group.checkpointed and not ahead:
                    try:
                        group.checkpointed = group.sm.checkpoint()
                    except Exception as exc:
                        if not self._storage_failed(group, exc, "checkpoint"):
                            log.exception("raft group %s: checkpoint failed", group.name)
                self._compact(group, 0)
                continue
            behind = group.sm.applied_index - group.checkpointed
            if group.storage_error is not None or not getattr(group.sm, "checkpoint_wanted", False) and (
                    behind <= 0 or behind < self.cfg.journal_keep_entries
                    and now - group.checkpointed_at < self.cfg.checkpoint_max_age_s):
                continue
            group.checkpointed_at = now
            # A checkpoint never gets ahead of the journal's durable entries: a leader that applied entries its
            # own fsync has not covered yet (its followers' made them safe) fsyncs its journal first.
            journal_sync = group.journal.begin_sync() if ahead else None
            try:
                index, job = group.sm.begin_checkpoint()
            except Exception as exc:
                if not self._storage_failed(group, exc, "checkpoint"):
                    log.exception("raft group %s: checkpoint failed", group.name)
                continue
            if journal_sync is not None:
                job = _after(journal_sync, job)
            future = group.checkpoint_job = self._loop.run_in_executor(self._fsync_pool, job)
            future.add_done_callback(lambda f, group=group, index=index: self._checkpointed(group, index, f))
        if self.hard_states.pending:  # compaction points (and anything else) put since the last pump
            self._loop.run_in_executor(self._fsync_pool, self._sync_hard_states_quietly)

    def _checkpointed(self, group: RaftGroup, index: int, future: asyncio.Future) -> None:
        group.checkpoint_job = None
        if group.closed:
            return
        error = future.exception() if not future.cancelled() else None
        if error is not None:
            if not self._storage_failed(group, error, "checkpoint"):
                log.error("raft group %s: checkpoint failed: %r", group.name, error)
            return
        group.checkpointed = max(group.checkpointed, index)
        done = getattr(group.sm, "checkpoint_done", None)
        if done is not None:
            try:
                done()
            except Exception as exc:
                if not self._storage_failed(group, exc, "checkpoint"):
                    log.exception("raft group %s: finishing its checkpoint failed", group.name)
        self._compact(group, self.cfg.journal_keep_entries)

    def _compact(self, group: RaftGroup, keep: int) -> None:
        """Keep a tail of `keep` entries so that briefly lagging followers catch up from the journal."""
        try:
            group.journal.compact(group.checkpointed - keep)
        except Exception as exc:
            if group.storage_error is None and not self._storage_failed(group, exc, "compacting the journal"):
                log.exception("raft group %s: compacting the journal failed", group.name)

    def _sync_hard_states_quietly(self) -> None:
        try:
            self.hard_states.sync()
        except OSError as exc:  # what it could not write stays pending: the next pump's sync stops the groups
            log.warning("broker %d: syncing the hard state store: %r", self.id, exc)

    # ------------------------------------------------------------- storage

    def _storage_failed(self, group: RaftGroup, exc: BaseException, action: str,
                        fallback: str | None = None) -> bool:
        """A write for `group` failed: stop its replica until the disk works again (False: no storage error)."""
        reason = storage_failure_reason(exc) or fallback
        if reason is None or group.closed:
            return False
        if group.storage_error is None:
            log.error("raft group %s: %s failed (%s: %r); broker %d stops acting for the group until its disk "
                      "can be written again", group.name, action, reason, exc, self.id)
        group.storage_error = reason
        self._apply_storage_state(group)
        return True

    def _apply_storage_state(self, group: RaftGroup) -> None:
        """Stop or resume the replica as the disk's state says."""
        stop = self.storage_stop_reason(group) is not None
        if stop == group.node.storage_failed:
            return
        self.liveness.catch_up(group)
        group.node.set_storage_failed(stop)
        if stop:
            self._fail_waiting(group, "its broker's storage failed")
        self._activate(group)

    def _fail_waiting(self, group: RaftGroup, why: str) -> None:
        """Proposals in flight may still be committed by another leader: their outcome is unknown."""
        for index, fut in [(i, f) for i, waits in group.waiting.items() for _, f, _ in waits]:
            if not fut.done():
                fut.set_exception(ProposalOutcomeUnknownError(f"{group.name}: entry {index} outcome unknown ({why})"))
        group.waiting.clear()

    def _other_leader(self, group: RaftGroup) -> int | None:
        leader = self.leader_of(group.name)
        return leader if leader != self.id else None

    def _check_storage(self, now: float) -> None:
        """Sample free space; stop or resume replicas; start a probe for replicas whose writes failed."""
        was_low = self.storage.low
        try:
            low = self.storage.sample()
        except OSError as exc:
            log.warning("broker %d: cannot measure free space in %s: %s", self.id, self.data_dir, exc)
            return
        if low != was_low:
            if low:
                log.warning("broker %d: %s; its partition replicas stop (leadership moves to other brokers) "
                            "until space is freed", self.id, self.storage.low_reason())
            else:
                log.warning("broker %d: disk has %d bytes free again; partition replicas resume",
                            self.id, self.storage.usage.free_bytes)
            for group in list(self.groups.values()):
                self._apply_storage_state(group)
        failed = [g for g in self.groups.values() if g.storage_error is not None]
        if failed and not low and self._recovery is None and self.storage.probe_due(now):
            self._recovery = self._loop.create_task(self._recover(), name=f"raft-storage-recovery-{self.id}")

    async def _recover(self) -> None:
        """Probe the disk; if it takes a write, reopen every replica whose write failed."""
        try:
            reason = await self._loop.run_in_executor(self._fsync_pool, self.storage.probe, time.monotonic())
            if reason is not None:
                log.info("broker %d: disk still unusable (%s); probing again later", self.id, reason)
                return
            for group in [g for g in self.groups.values() if g.storage_error is not None]:
                await self._reopen(group)
        finally:
            self._recovery = None

    @staticmethod
    async def _io_settled(group: RaftGroup) -> None:
        """Wait until neither a journal sync nor a checkpoint of the group runs in a worker thread: its journal or
        state machine is about to be closed."""
        while group.synced is not None or group.checkpoint_job is not None:
            if group.synced is not None:
                await asyncio.shield(group.synced)
            else:
                await asyncio.wait([group.checkpoint_job])

    async def _reopen(self, group: RaftGroup) -> None:
        """Replace the replica's journal, state machine and node by fresh ones opened from disk."""
        await self._io_settled(group)
        if group.closed:
            return  # from here on nothing awaits: no pump can start a sync of the old journal
        self._active.discard(group)
        self._deferred.discard(group)
        self._disarm_sync_timer(group)
        group.held = []  # the old node's words
        self._fail_waiting(group, "the replica was reopened")
        try:
            group.journal.close()
        except Exception as exc:
            log.info("raft group %s: closing the journal before reopening: %r", group.name, exc)
        try:
            group.sm.reopen()
            journal, node = self._open_replica(group.name, group.directory, group.node.membership, group.sm)
        except Exception as exc:
            log.error("raft group %s: reopening after the storage failure failed (%r); trying again later",
                      group.name, exc)
            return
        group.journal, group.node = journal, node
        self.liveness.hook(group)
        self._note_role(group)
        group.checkpointed = group.sm.applied_index
        group.storage_error, group.asleep_since, group.known_leader = None, None, (None, 0)
        log.warning("raft group %s: the disk is writable again; reopened from the checkpoint at index %d, "
                    "catching up", group.name, group.checkpointed)
        self._apply_storage_state(group)
        self._activate(group)


__all__ = ["Announcement", "DataDirectoryInUse", "HostConfig", "RaftHost", "RaftGroup", "StateMachine", "ProposalDroppedError",
           "ProposalOutcomeUnknownError", "GroupClosedError", "GroupStateLost", "MembershipChangeError", "NotLeaderError",
           "ReadIndexError", "StorageUnavailableError"]
