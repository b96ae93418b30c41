"""When this broker's Raft groups tick, sleep, wake and campaign, from what it hears of peer brokers.

`host.RaftHost` does the I/O (frames, broker heartbeats, fsyncs, the ticker's clock); one
`Liveness` per host decides, without I/O, what the groups' clocks and elections do:

* **Ticks.**  Only awake groups are ticked: a quiesced group costs nothing per tick (its
  clock catches up when it is next touched: `catch_up`), and quiesced groups are looked at
  only when the set of silent brokers changes (or a broker lately announced another
  data-directory incarnation).  After a stall only leaders catch up on the ticks they missed
  (their leases run in real time); followers count one tick, so that their election timers
  do not all expire together.
* **Campaign budget.**  Elections started by timers are admitted at `max_campaigns_per_s`
  per broker (a dead leader's first successors, whose elections nobody contends, at
  `max_successor_campaigns_per_s`): thousands of groups electing at once (creation, a
  broker's death) otherwise livelock, every election timing out before the CPU gets through
  the others' votes.
* **Idle ticker.**  With no group awake, the ticker need not tick every tick: it naps until
  the next broker heartbeat or a peer's silence deadline (`idle_delay`), and a group that
  wakes ends the nap (`mark_awake`).  An idle broker wakes once per idle heartbeat interval.
* **Peer silence.**  `peer_seen` (any frame from a broker) and `peer_acked` (the newest
  broker heartbeat it answered) are the host's record of its peers.  A quiesced follower
  whose leader's broker fell silent for an election timeout is woken, and so is a quiesced
  leader that lost touch with a quorum's brokers or whose follower is back and behind;
  `acked_lately` is what grants a quiesced leader its read lease.
* **Deafness is not silence.**  While this broker's event loop stands still (a long callback,
  CPU starvation, a paused process), its peers' frames wait unread in the sockets; after it,
  uvloop runs the due timers before it reads them, so the ticker would find every peer silent
  and every leader here without a quorum.  Silence is therefore counted on a clock that stops
  while the loop does (`peer_seen` holds readings of it): the ticker reports how late it woke
  (`note_late`), and lateness beyond a heartbeat interval is taken off.  A peer really gone is
  found out that much later; the read leases are untouched (`peer_acked` and the nodes'
  acknowledgements count in real time from the send), and a quiesced follower's leader
  stickiness only lasts longer, which is the safe side.

The nodes reach it through the hooks `hook` installs (`RaftNode.on_wake`, `may_campaign`,
`peer_silence`); the host calls back with `activate` (a group has work for the pump) and
`note_role` (a leader stepped down on its own).
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .core import RaftNode, Role
from .replica import broker_of
from .wake_grid import GRID_LAG_S

if TYPE_CHECKING:
    from .host import HostConfig, RaftGroup


class Liveness:
    def __init__(self, cfg: HostConfig, groups: dict[str, RaftGroup], *, replica_lost: Callable[[int], bool],
                 activate: Callable[[RaftGroup], None], note_role: Callable[[RaftGroup], None],
                 wake_ticker: Callable[[], None]):
        """`groups`: the host's groups by name (the same dict, as it changes); `replica_lost`: does the
        replica's broker announce another data-directory incarnation; `wake_ticker`: a group woke up, the
        ticker must tick again if it napped (see `idle_delay`)."""
        self.cfg = cfg
        self._groups = groups
        self._replica_lost = replica_lost
        self._activate = activate
        self._note_role = note_role
        self._wake_ticker = wake_ticker
        self.peer_seen: dict[int, float] = {}  # broker -> when any frame from it last arrived (`hearing_time`)
        self.deaf_s = 0.0  # seconds the event loop stood still (beyond a heartbeat interval): not peers' silence
        self._now: float | None = None  # the clock's reading for the length of a tick (see peer_silence)
        self.peer_acked: dict[int, float] = {}  # broker -> send time of the newest broker heartbeat it answered
        self.host_ticks = 0  # ticks since start; quiesced groups are not ticked, see catch_up
        self.awake: set[RaftGroup] = set()  # groups the ticker ticks: every one not quiesced (and a few more)
        self._silent: frozenset[int] = frozenset()  # peers silent for an election timeout at the last tick
        self._campaign_tokens = 0.0  # elections the groups' timers may still start (see may_campaign)
        self._successor_tokens = 0.0  # and those of first successors
        self._incarnation_changed_at = -1e9  # when a peer last announced another data-directory incarnation
        self.campaigns_started = 0  # elections the groups' timers started here (admitted by the budget)
        self.campaigns_deferred = 0  # and those the budget held back for a few ticks
        self.stepped_down = 0  # leaders here that stepped down on a tick (no quorum heard: check quorum)

    def hook(self, group: RaftGroup) -> None:
        """Connect a group's node to the broker's liveness (again after the node is replaced).  The node's wake
        hook holds its group weakly: group -> node -> hook -> group would be a reference cycle, and a removed
        group would then wait for a full garbage collection (see node/cluster/heap.py) instead of being freed
        as its last reference goes."""
        group_ref = weakref.ref(group)

        def wake() -> None:
            woken = group_ref()
            if woken is not None:
                self.mark_awake(woken)

        group.node.on_wake = wake
        group.node.may_campaign = self.may_campaign
        group.node.peer_silence = self.peer_silence

    def mark_awake(self, group: RaftGroup) -> None:
        """The group may have woken up: the next tick looks at it (and drops it from `awake` once quiesced)."""
        self.awake.add(group)
        self._wake_ticker()

    def busy(self) -> bool:
        """Must the ticker tick every tick: a group is awake, or quiesced groups get a look every tick (for a
        while after a peer announced another data-directory incarnation)?"""
        return bool(self.awake) or self._sweeping(time.monotonic())

    def _sweeping(self, now: float) -> bool:
        """Do quiesced groups get a look every tick: a peer lately announced another data-directory incarnation?"""
        return now - self._incarnation_changed_at < 10 * self.cfg.election_timeout_s

    def hearing_time(self, now: float) -> float:
        """The clock silence is counted on: the monotonic clock, less the time this broker was deaf."""
        return now - self.deaf_s

    def heard_from(self, broker: int, now: float) -> None:
        """A frame from `broker` arrived."""
        self.peer_seen[broker] = self.hearing_time(now)

    def silence_s(self, broker: int, now: float) -> float:
        """Seconds since anything arrived from `broker`, not counting the time this broker could not listen."""
        return max(0.0, self.hearing_time(now) - self.peer_seen.get(broker, -1e9))

    def note_late(self, late_s: float, now: float) -> None:
        """The ticker woke `late_s` later than it planned: the event loop stood still meanwhile, and its peers'
        frames waited unread.  What exceeds a heartbeat interval (a busy loop is late by less) is not counted
        as their silence; a frame read before this report, in the same wake-up, counts as heard now."""
        deaf = late_s - self.cfg.heartbeat_ticks * self.cfg.tick_ms / 1000
        if deaf <= 0:
            return
        self.deaf_s += deaf
        heard_now = self.hearing_time(now)
        for broker, seen in self.peer_seen.items():
            if seen > heard_now:
                self.peer_seen[broker] = heard_now

    def idle_delay(self, peers: Iterable[int], now: float, last_tick: float, ticks_to_heartbeat: int) -> float:
        """Seconds a ticker with nothing `busy` may sleep: until the next broker heartbeat is due, or a peer's
        silence deadline (an election timeout after it was last heard) if that comes first, on the tick grid
        that `last_tick` set."""
        tick_s = self.cfg.tick_ms / 1000
        wake_at = last_tick + ticks_to_heartbeat * tick_s
        for peer in peers:
            if peer not in self._silent:
                silence = self.silence_s(peer, now) if peer in self.peer_seen else 0.0
                wake_at = min(wake_at, now - silence + self.cfg.election_timeout_s)
        ticks = max(1, math.ceil((wake_at - last_tick) / tick_s - 1e-6))
        return max(0.0, last_tick + ticks * tick_s - now) + GRID_LAG_S  # just past the grid point (see wake_grid)

    def peer_silence(self, replica: int) -> int:
        """Ticks since anything arrived from the replica's broker (a lost replica, one whose broker came back
        with an empty disk: forever).  A leader quiesces without a follower silent for an election timeout
        (see `RaftNode._can_quiesce`), and a quiesced follower woken by a vote request keeps its leader
        stickiness only until an election timeout after it last heard the leader's broker: any read lease
        that leader holds from this broker's acknowledgements began before that frame arrived."""
        if self._replica_lost(replica) or broker_of(replica) not in self.peer_seen:
            return 1 << 30
        now = self._now if self._now is not None else time.monotonic()  # one reading for a whole tick's groups
        return min(int(self.silence_s(broker_of(replica), now) * 1000 / self.cfg.tick_ms), 1 << 30)

    def may_campaign(self, first_successor: bool) -> bool:
        """Elections started by timers are admitted at `max_campaigns_per_s` (a burst of one tick's worth):
        thousands of groups timing out together would otherwise compete for the same CPU and time out again.
        A leader's first successor (see `RaftNode._successor_rank`) stands uncontested: those elections are
        admitted at `max_successor_campaigns_per_s`, so that a dead broker's groups get new leaders sooner."""
        if first_successor and self._successor_tokens > 0:
            self._successor_tokens -= 1
        elif self._campaign_tokens > 0:
            self._campaign_tokens -= 1
        else:
            self.campaigns_deferred += 1
            return False
        self.campaigns_started += 1
        return True

    def heard_lately(self, replica: int, now: float, window_s: float) -> bool:
        """Did anything arrive from `replica` (not merely its broker: one back with an empty disk is not it)
        within `window_s` (of hearing time)?"""
        return self.silence_s(broker_of(replica), now) < window_s and not self._replica_lost(replica)

    def acked_lately(self, replica: int, now: float, window_s: float) -> bool:
        """Did `replica` answer a broker heartbeat sent within `window_s` (real time: a lease counts on it)?"""
        return now - self.peer_acked.get(broker_of(replica), -1e9) < window_s and not self._replica_lost(replica)

    def note_incarnation_change(self, now: float) -> None:
        """A peer announced another data-directory incarnation: the quiesced groups get a look for a while."""
        self._incarnation_changed_at = now

    def catch_up(self, group: RaftGroup) -> None:
        """Give a quiesced node the ticks the ticker skipped, before anyone looks at or drives it."""
        if group.asleep_since is not None:
            group.node.now += self.host_ticks - group.asleep_since
            group.asleep_since = self.host_ticks if group.node.quiesced else None

    def after_step(self, group: RaftGroup) -> None:
        """A message was stepped into the group's node."""
        if group.node.quiesced and group.asleep_since is None:
            # A follower goes quiet on its leader's last heartbeat: its clock stops here and catches up when
            # touched (a clock left behind made a woken follower take itself for just restarted, in lease).
            group.asleep_since = self.host_ticks

    def tick(self, peers: Iterable[int], now: float, ticks: int) -> None:
        """Advance the groups by `ticks` ticks (the ticker's clock says so at `now`)."""
        tick_s = self.cfg.tick_ms / 1000
        silence_s = self.cfg.election_timeout_s
        # Quiesced groups need a look when the set of silent brokers changes, or one lately changed its
        # data directory; otherwise only awake groups are ticked (idle cost: the awake groups, not all).
        silent = frozenset(p for p in peers if self.silence_s(p, now) > silence_s)
        full = silent != self._silent or self._sweeping(now)
        self._silent = silent
        candidates = list(self._groups.values()) if full else list(self.awake)
        self.awake = set()
        per_tick = self.cfg.max_campaigns_per_s * tick_s
        self._campaign_tokens = min(max(per_tick, 1.0), self._campaign_tokens + ticks * per_tick)
        per_tick = self.cfg.max_successor_campaigns_per_s * tick_s
        self._successor_tokens = min(max(per_tick, 1.0), self._successor_tokens + ticks * per_tick)
        self._now = now  # a long sweep does not make the groups it reaches last hear less
        try:
            for group in candidates:
                if not group.closed:
                    self._tick_group(group, now, ticks, full, silence_s)
        finally:
            self._now = None
        self.host_ticks += ticks

    def _tick_group(self, group: RaftGroup, now: float, ticks: int, full: bool, silence_s: float) -> None:
        node = group.node
        self.catch_up(group)  # now == host_ticks (before this batch of ticks)
        if node.quiesced:
            if not full:
                return
            self._wake_if_needed(node, now, silence_s)
            if node.quiesced:
                return
        # A leader counts every tick (its lease runs in real time); the others count at most one per
        # round: after a stall their election timers do not all expire at once (counting less time
        # than passed only makes a follower respect a leader's lease longer, which is safe).
        for _ in range(ticks if node.role is Role.LEADER else 1):
            node.tick()
        if node.quiesced:
            group.asleep_since = self.host_ticks + ticks
        else:
            self.awake.add(group)
        if group.led_term is not None and node.role is not Role.LEADER:
            self.stepped_down += 1
            self._note_role(group)  # stepped down on its own (check quorum)
        if node.has_ready():
            self._activate(group)

    def _wake_if_needed(self, node: RaftNode, now: float, silence_s: float) -> None:
        """Wake a quiesced node whose peers' brokers went silent (see the module docstring)."""
        if node.role is Role.LEADER:
            if (not node.quorum_with(p for p in node.others if self.heard_lately(p, now, silence_s))
                    or node.follower_behind()):  # a broker that was down while the group went quiet is back
                node.wake()
        elif node.leader is not None and node.leader != node.id:
            if not self.heard_lately(node.leader, now, silence_s):
                node.wake(leader_lost=True)

