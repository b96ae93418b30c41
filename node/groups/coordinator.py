"""Consumer-group coordinator: membership, rebalances and generations of every group.

Runs on the metadata Raft leader. Membership and heartbeats live in memory
only; each completed rebalance (a new generation and its assignment) is
persisted through the injected ``commit_generation`` before any member learns
of it. Committed offsets are not kept here: the metadata state machine stores
them and is the authority that rejects commits from stale generations;
``check_commit`` is the coordinator's early answer for the same rule.

Two kinds of group, one kind at a time per group (a member of the other kind
while the group has members gets ``InconsistentGroupProtocol``):

* raftka's own (HTTP API, the Python client: ``protocols`` None): the
  coordinator assigns partitions (``assignor.assign``) and a join returns the
  member's share; no SyncGroup.
* Kafka's classic protocol (``protocols`` a `ClientProtocols`: Kafka clients
  over the Kafka listener): the members name protocols (e.g. "range") with
  opaque metadata; a completed join names the chosen protocol and a leader
  member, and gives the leader every member's metadata; the group then waits
  (``AWAITING_SYNC``, Kafka's CompletingRebalance) until the leader's ``sync``
  brings every member's assignment (opaque bytes, with the partitions decoded
  by the front end for describing); each member's ``sync`` returns its own.
  A rebalance while members wait in ``sync`` fails them with
  ``RebalanceInProgress``. A join by the leader, or with new metadata,
  rebalances.

Protocol (Kafka's; for raftka's kind, server-side assignment instead of a
group leader and SyncGroup):

* ``join`` long-polls. A join that adds a member or changes a subscription
  starts a rebalance (``PREPARING_REBALANCE``); the other members learn of it
  from their next heartbeat (``RebalanceInProgress``) and join again. Once
  every member has joined, or the rebalance timeout (the largest of the
  members') has passed and the members that did not rejoin are evicted, the
  generation increments, ``assignor.assign`` splits the partitions,
  ``commit_generation`` is awaited (``COMPLETING_REBALANCE``) and every pending
  join returns its share (``STABLE``). A member that joins again without a
  change while the group is stable gets its current assignment at once.
* The first rebalance of an empty group waits ``initial_rebalance_delay_ms``
  (Kafka's ``group.initial.rebalance.delay.ms``, 3 s by default), extended by
  each new member up to the rebalance timeout, so consumers started together
  land in one generation instead of a cascade of rebalances.
* ``heartbeat``: unknown member -> ``UnknownMember`` (404 40403: join again
  without a member id); rebalance pending -> ``RebalanceInProgress`` (409
  40906); another generation -> ``StaleGeneration`` (409 40905). Both 409s
  mean "join again with your member id". A heartbeat always refreshes the
  session, even when it answers 409.
* ``leave``, session expiry (``start`` runs the reaper) and partition-count
  changes (``on_metadata_change``) start a rebalance. When the last member
  goes, the group still gets a new, empty generation, so a zombie member's
  commit with its old generation is refused.
* A member's session does not run while its join is pending.
* Generation numbers are never reused: one whose ``commit_generation`` failed
  is skipped (it may still have been committed).

Failover: a new coordinator starts empty; ``restore`` carries the persisted
generation (and optionally the persisted member ids) over. Restored members
must join again with their member id within ``restore_timeout_ms`` or are
evicted; without member ids, clients get 404 on heartbeat and join afresh.

All methods must be called from the event loop the coordinator runs in.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from raftka.node.cluster.topics import validate_topic_name
from raftka.node.errors import (
    ApiError,
    ConsumerInstanceNotFound,
    GroupNotEmpty,
    GroupNotFound,
    InconsistentGroupProtocol,
    InvalidRequest,
    NotLeader,
    RebalanceInProgress,
    StaleGeneration,
)
from raftka.node.groups.assignor import TopicPartition, assign
from raftka.raft.wake_grid import sleep_on_grid

__all__ = [
    "SERVER_ASSIGNED",
    "ClientProtocols",
    "CommitGeneration",
    "GenerationRequired",
    "GroupCoordinator",
    "GroupDescription",
    "GroupState",
    "InvalidSessionTimeout",
    "GroupSummary",
    "JoinResult",
    "MemberAssignment",
    "MemberDescription",
    "UnknownMember",
    "validate_group_name",
]

log = logging.getLogger(__name__)

CommitGeneration = Callable[[str, int, dict[str, list[TopicPartition]], str | None], Awaitable[None]]
"""``(group, generation, {member_id: [(topic, partition)]}, protocol type)``: persist a generation; raises on
failure."""

SERVER_ASSIGNED = "raftka"  # the protocol type of groups whose coordinator assigns (raftka's own group API)

_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_CLIENT_ID = re.compile(r"[a-zA-Z0-9._-]{1,100}")
_MAX_REBALANCE_TIMEOUT_MS = 1_800_000
_COORDINATOR = "the consumer group coordinator (metadata group)"


def validate_group_name(group: object) -> str:
    """Group names follow the topic-name rule ``[a-zA-Z0-9._-]{1,249}``."""
    if type(group) is not str or not _NAME.fullmatch(group) or group in (".", ".."):
        shown = repr(group)[:80]
        raise InvalidRequest(f"Invalid group name {shown}: use 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'.")
    return group


class UnknownMember(ConsumerInstanceNotFound):
    """404 40403: the member is not (or no longer) in the group; join again without a member id."""

    def __init__(self, group: str, member_id: str) -> None:
        ApiError.__init__(
            self,
            f"Member '{member_id}' is not in group '{group}' (it left, its session expired, or the "
            "coordinator moved); join again without a member_id.",
        )
        self.group, self.instance = group, member_id


class GenerationRequired(StaleGeneration):
    """409 40905: a commit without member id and generation while the group has live members."""

    def __init__(self, group: str, current_generation: int) -> None:
        ApiError.__init__(
            self,
            f"Group '{group}' has live members (generation {current_generation}); commits must carry the "
            "committing member's member_id and generation.",
        )
        self.group, self.generation, self.current_generation = group, None, current_generation


class InvalidSessionTimeout(InvalidRequest):
    """422 42206: a join's session timeout is outside the coordinator's range (Kafka's group.min/max.session)."""


class GroupState(StrEnum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"  # the new generation is being persisted
    AWAITING_SYNC = "AwaitingSync"  # Kafka's classic protocol: waiting for the leader's assignment
    STABLE = "Stable"


@dataclass(frozen=True, slots=True)
class ClientProtocols:
    """A Kafka-protocol member's group protocols: its protocol type ("consumer") and (name, metadata) pairs in
    order of preference. The metadata is opaque here; `topics` is what the front end read from it."""

    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class MemberAssignment:
    """What a Kafka-protocol leader assigned to a member: the opaque bytes and the partitions they name."""

    data: bytes
    partitions: list[TopicPartition]


@dataclass(frozen=True, slots=True)
class JoinResult:
    member_id: str
    generation: int
    assignment: list[TopicPartition]
    protocol: str | None = None  # Kafka's classic protocol: the chosen protocol name
    leader: str | None = None  # ... the leader member
    members: tuple[tuple[str, bytes], ...] = ()  # ... for the leader only: every member's metadata


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str
    topics: list[str]
    assignment: list[TopicPartition]
    client_id: str | None = None
    client_host: str | None = None
    metadata: bytes = b""  # Kafka's classic protocol: the member's metadata for the chosen protocol
    assignment_data: bytes = b""  # ... and the assignment bytes its leader gave it


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group: str
    state: GroupState
    generation: int
    members: list[MemberDescription]
    protocol_type: str | None = None
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class GroupSummary:
    group: str
    state: GroupState
    generation: int
    members: int


@dataclass(eq=False, slots=True)
class _Member:
    member_id: str
    topics: tuple[str, ...]
    session_timeout: float  # seconds
    rebalance_timeout: float  # seconds
    last_seen: float
    generation: int = -1  # the generation whose assignment this member was given
    assignment: list[TopicPartition] = field(default_factory=list)
    join_round: int = -1  # the rebalance round of the member's latest join
    waiter: asyncio.Future[JoinResult] | None = None
    client_id: str | None = None
    client_host: str | None = None
    protocols: tuple[tuple[str, bytes], ...] = ()  # Kafka's classic protocol: (name, metadata) by preference
    assignment_data: bytes = b""  # ... what the leader assigned
    sync_waiter: asyncio.Future[bytes] | None = None  # ... a sync waiting for the leader's assignment

    def joining(self) -> bool:
        return self.waiter is not None and not self.waiter.done()

    def metadata_for(self, protocol: str | None) -> bytes:
        return next((data for name, data in self.protocols if name == protocol), b"")


@dataclass(eq=False, slots=True)
class _Group:
    name: str
    generation: int = 0
    highest_tried: int = 0  # largest generation ever handed to commit_generation
    state: GroupState = GroupState.EMPTY
    members: dict[str, _Member] = field(default_factory=dict)
    round: int = 0  # rebalance rounds started; a member has joined the current one when join_round == round
    round_started: float = 0.0
    not_before: float = 0.0  # end of the initial rebalance delay
    rejoin_needed: bool = False  # membership or metadata changed while completing: rebalance again after
    partition_counts: dict[str, int | None] = field(default_factory=dict)  # what the assignment was built from
    completion: asyncio.Task[None] | None = None
    protocol_type: str | None = None  # SERVER_ASSIGNED or a Kafka protocol type; None while no member is known
    protocol: str | None = None  # Kafka's classic protocol: the protocol chosen for the current generation
    leader: str | None = None  # ... and its leader member

    def settled(self) -> bool:
        """Stable, or (Kafka's classic protocol) a generation that only waits for its assignment."""
        return self.state in (GroupState.STABLE, GroupState.AWAITING_SYNC)

    def client_assigned(self) -> bool:
        return self.protocol_type not in (None, SERVER_ASSIGNED)

    def deadline(self) -> float:
        return self.round_started + max((m.rebalance_timeout for m in self.members.values()), default=0.0)


def _retrieve_exception(future: asyncio.Future) -> None:
    # A join whose HTTP request went away never awaits its waiter; keep asyncio from reporting that.
    if not future.cancelled():
        future.exception()


_KIND_NAMES = {SERVER_ASSIGNED: "raftka's group API"}


def _choose_protocol(members: list[_Member]) -> str | None:
    """The protocol every member offers that most members prefer most (ties: the first member's order)."""
    if not members:
        return None
    common = set.intersection(*({name for name, _ in m.protocols} for m in members))
    votes: dict[str, int] = {}
    for m in members:
        favourite = next((name for name, _ in m.protocols if name in common), None)
        if favourite is not None:
            votes[favourite] = votes.get(favourite, 0) + 1
    order = [name for name, _ in members[0].protocols if name in common]
    return max(order, key=lambda name: (votes.get(name, 0), -order.index(name)), default=None)


def _validate_topics(topics: object) -> tuple[str, ...]:
    if not isinstance(topics, list | tuple) or not topics:
        raise InvalidRequest("'topics' must be a non-empty list of topic names.")
    return tuple(sorted({validate_topic_name(topic) for topic in topics}))


class GroupCoordinator:
    """Membership and generations of all consumer groups; see the module docstring for the protocol."""

    def __init__(
        self,
        commit_generation: CommitGeneration,
        partitions_of: Callable[[str], int | None],
        clock: Callable[[], float] = time.monotonic,
        *,
        session_timeout_range_ms: tuple[int, int] = (6000, 1_800_000),
        initial_rebalance_delay_ms: int = 3000,
        restore_timeout_ms: int = 30_000,
        tick_ms: int = 100,
    ) -> None:
        self._commit_generation = commit_generation
        self._partitions_of = partitions_of
        self._clock = clock
        self._session_range_ms = session_timeout_range_ms
        self._initial_delay = initial_rebalance_delay_ms / 1000
        self._restore_timeout = restore_timeout_ms / 1000
        self._tick = tick_ms / 1000
        self._groups: dict[str, _Group] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._stopped = False

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task that expires sessions and ends overdue rebalances."""
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever(), name="group-reaper")

    async def stop(self) -> None:
        """Stop for good (leadership lost or shutdown): pending joins fail with ``NotLeader``."""
        self._stopped = True
        tasks = [t for t in (self._reaper, *(g.completion for g in self._groups.values())) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reaper = None
        for group in self._groups.values():
            group.completion = None
            for member in group.members.values():
                if member.joining():
                    member.waiter.set_exception(NotLeader(_COORDINATOR))
                if member.sync_waiter is not None and not member.sync_waiter.done():
                    member.sync_waiter.set_exception(NotLeader(_COORDINATOR))

    def expire(self) -> None:
        """Evict members whose session expired and end overdue rebalances; the reaper calls this every tick."""
        now = self._clock()
        for g in list(self._groups.values()):
            for member in list(g.members.values()):
                if not member.joining() and now - member.last_seen > member.session_timeout:
                    self._remove(g, member, now, "session expired")
            if g.state is GroupState.PREPARING_REBALANCE:
                if now >= g.deadline():
                    for member in [m for m in g.members.values() if m.join_round != g.round]:
                        self._remove(g, member, now, "did not rejoin within the rebalance timeout")
                self._maybe_complete(g, now)

    def restore(self, group: str, generation: int, member_ids: Iterable[str] = (),
                protocol_type: str | None = None) -> None:
        """Carry a persisted generation over to this (new) coordinator; call before serving requests.

        ``member_ids`` (the members of that generation) may join again keeping
        their ids, and may commit with that generation until the first rebalance
        here completes; those that do not join within ``restore_timeout_ms`` are
        evicted. Ignored for groups that already have live members here.
        """
        g = self._groups.setdefault(group, _Group(group))
        g.highest_tried = max(g.highest_tried, generation)
        if g.members:
            return
        g.generation = max(g.generation, generation)
        g.protocol_type = protocol_type
        now = self._clock()
        for member_id in member_ids:
            g.members[member_id] = _Member(
                member_id, (), self._restore_timeout, self._restore_timeout, now, generation=g.generation
            )
        if g.members:
            self._begin_rebalance(g, now, initial=False)

    # --- group protocol -------------------------------------------------------

    async def join(
        self,
        group: str,
        member_id: str | None,
        topics: list[str],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        client_id: str | None = None,
        protocols: ClientProtocols | None = None,
        client_host: str | None = None,
    ) -> JoinResult:
        """Join (or rejoin) ``group``; returns once the rebalance this join takes part in completes.

        A new member (``member_id`` None) gets the id ``"<client_id or 'member'>-<uuid4 hex>"``.
        ``protocols``: a member of Kafka's classic protocol (see the module docstring); its ``topics`` may be
        empty (a protocol type other than "consumer").
        """
        self._check_running()
        validate_group_name(group)
        wanted = _validate_topics(topics) if protocols is None else tuple(sorted(set(topics)))
        kind = SERVER_ASSIGNED if protocols is None else protocols.protocol_type
        offered = () if protocols is None else tuple(protocols.protocols)
        low, high = self._session_range_ms
        if type(session_timeout_ms) is not int or not low <= session_timeout_ms <= high:
            raise InvalidSessionTimeout(
                f"session_timeout_ms must be an integer from {low} to {high}, got {session_timeout_ms!r}.")
        if type(rebalance_timeout_ms) is not int or not 1 <= rebalance_timeout_ms <= _MAX_REBALANCE_TIMEOUT_MS:
            raise InvalidRequest(
                f"rebalance_timeout_ms must be an integer from 1 to {_MAX_REBALANCE_TIMEOUT_MS}, "
                f"got {rebalance_timeout_ms!r}."
            )
        if client_id is not None and (type(client_id) is not str or not _CLIENT_ID.fullmatch(client_id)):
            raise InvalidRequest(f"client_id must be 1 to 100 of a-z, A-Z, 0-9, '.', '_' and '-', got {client_id!r}.")

        now = self._clock()
        if member_id is None:
            g = self._groups.setdefault(group, _Group(group))
            self._check_kind(g, kind, offered, None)
            member = _Member(f"{client_id or 'member'}-{uuid.uuid4().hex}", wanted, 0.0, 0.0, now)
            g.members[member.member_id] = member
            changed = True
        else:
            g, member = self._member(group, member_id)
            self._check_kind(g, kind, offered, member_id)
            changed = member.topics != wanted or member.protocols != offered or (
                g.client_assigned() and member_id == g.leader)  # a leader's rejoin asks for a new assignment
        g.protocol_type = kind
        member.protocols, member.client_id, member.client_host = offered, client_id, client_host
        member.topics = wanted
        member.session_timeout = session_timeout_ms / 1000
        member.rebalance_timeout = rebalance_timeout_ms / 1000
        member.last_seen = now

        if g.state is GroupState.STABLE and not changed:
            return JoinResult(member.member_id, g.generation, list(member.assignment), g.protocol, g.leader)
        if g.state is GroupState.COMPLETING_REBALANCE:
            # The round being committed is closed: a change waits for the next one; a repeated join
            # (the client retried) waits for whichever round it already belongs to.
            if changed:
                g.rejoin_needed = True
                target_round = g.round + 1
            else:
                target_round = member.join_round
        else:
            if g.state is GroupState.EMPTY or g.settled():
                self._begin_rebalance(g, now, initial=g.state is GroupState.EMPTY)
            elif member_id is None and g.not_before > now:
                g.not_before = min(now + self._initial_delay, g.deadline())
            target_round = g.round
        if changed and member.joining() and member.join_round == target_round:
            # An earlier join of this member, with another subscription, is superseded by this one.
            member.waiter.set_exception(RebalanceInProgress(group))
        if member.join_round != target_round or member.waiter is None or member.waiter.done():
            member.waiter = asyncio.get_running_loop().create_future()
            member.waiter.add_done_callback(_retrieve_exception)
            member.join_round = target_round
        waiter = member.waiter
        self._maybe_complete(g, now)
        return await asyncio.shield(waiter)

    async def heartbeat(self, group: str, member_id: str, generation: int) -> None:
        """Keep ``member_id``'s session alive; raises when it must join again (see module docstring)."""
        self._check_running()
        g, member = self._member(group, member_id)
        member.last_seen = self._clock()
        if not g.settled():
            raise RebalanceInProgress(group)
        if generation != g.generation:
            raise StaleGeneration(group, generation, g.generation)

    async def sync(self, group: str, member_id: str, generation: int,
                   assignments: dict[str, MemberAssignment] | None) -> bytes:
        """Kafka's SyncGroup: the leader brings every member's assignment (``assignments``); every member gets
        its own bytes once the leader's have arrived."""
        self._check_running()
        g, member = self._member(group, member_id)
        if not g.client_assigned():
            raise InconsistentGroupProtocol(group, "its members use raftka's group API, which has no SyncGroup.")
        member.last_seen = self._clock()
        if generation != g.generation or member.generation != g.generation:
            raise StaleGeneration(group, generation, g.generation)
        if g.state is GroupState.STABLE:
            return member.assignment_data
        if g.state is not GroupState.AWAITING_SYNC:
            raise RebalanceInProgress(group)
        if member_id == g.leader and assignments is not None:
            for m in g.members.values():
                given = assignments.get(m.member_id, MemberAssignment(b"", []))
                m.assignment_data, m.assignment = given.data, list(given.partitions)
                if m.sync_waiter is not None and not m.sync_waiter.done():
                    m.sync_waiter.set_result(m.assignment_data)
            g.state = GroupState.STABLE
            return member.assignment_data
        if member.sync_waiter is None or member.sync_waiter.done():
            member.sync_waiter = asyncio.get_running_loop().create_future()
            member.sync_waiter.add_done_callback(_retrieve_exception)
        return await asyncio.shield(member.sync_waiter)

    async def leave(self, group: str, member_id: str) -> None:
        """Remove ``member_id`` from ``group`` now; the others rebalance."""
        self._check_running()
        g, member = self._member(group, member_id)
        self._remove(g, member, self._clock(), "left the group")

    def check_commit(self, group: str, member_id: str | None, generation: int | None) -> None:
        """Raise if an offset commit with this member id and generation must be refused.

        Without member id and generation a commit is accepted only while the
        group has no live members (manual assignment). The metadata state
        machine repeats the generation check when it applies the commit.
        """
        self._check_running()
        g = self._groups.get(group)
        if member_id is None and generation is None:
            if g is not None and g.members:
                raise GenerationRequired(group, g.generation)
            return
        if member_id is None or generation is None:
            raise InvalidRequest("member_id and generation go together: give both, or neither (manual assignment).")
        _, member = self._member(group, member_id)
        if generation != g.generation or member.generation != g.generation:
            raise StaleGeneration(group, generation, g.generation)

    def forget(self, group: str) -> None:
        """Drop a group without members (it was deleted); raises GroupNotEmpty while it has members."""
        g = self._groups.get(group)
        if g is not None and g.members:
            raise GroupNotEmpty(group, len(g.members))
        self._groups.pop(group, None)

    def on_metadata_change(self) -> None:
        """Topics changed: rebalance the groups whose subscribed topics' partition counts moved."""
        for g in self._groups.values():
            if not g.members or g.state not in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
                continue
            if any(self._partitions_of(topic) != count for topic, count in g.partition_counts.items()):
                if g.state is GroupState.STABLE:
                    self._begin_rebalance(g, self._clock(), initial=False)
                else:
                    g.rejoin_needed = True

    # --- introspection --------------------------------------------------------

    def describe(self, group: str) -> GroupDescription:
        g = self._groups.get(group)
        if g is None:
            raise GroupNotFound(group)
        members = [
            MemberDescription(m.member_id, list(m.topics), list(m.assignment), m.client_id, m.client_host,
                              m.metadata_for(g.protocol), m.assignment_data)
            for m in sorted(g.members.values(), key=lambda m: m.member_id)
        ]
        return GroupDescription(g.name, g.state, g.generation, members, g.protocol_type, g.protocol)

    def list_groups(self) -> list[GroupSummary]:
        return [
            GroupSummary(g.name, g.state, g.generation, len(g.members))
            for g in sorted(self._groups.values(), key=lambda g: g.name)
        ]

    # --- rebalancing ----------------------------------------------------------

    def _check_running(self) -> None:
        if self._stopped:
            raise NotLeader(_COORDINATOR)

    @staticmethod
    def _check_kind(g: _Group, kind: str, offered: tuple[tuple[str, bytes], ...], member_id: str | None) -> None:
        """A member may join only a group of its kind with a protocol every other member also offers."""
        others = [m for m in g.members.values() if m.member_id != member_id]
        if not others or g.protocol_type is None:
            return
        if g.protocol_type != kind:
            raise InconsistentGroupProtocol(g.name, f"its members use protocol type {g.protocol_type!r} "
                                                    f"({_KIND_NAMES.get(g.protocol_type, 'Kafka clients')}); this "
                                                    f"member uses {kind!r}. A group is driven by one protocol at a "
                                                    "time.")
        if kind != SERVER_ASSIGNED:
            common = {name for name, _ in offered}
            for m in others:
                if m.protocols:  # a member restored after failover has not told its protocols yet
                    common &= {name for name, _ in m.protocols}
            if not common:
                raise InconsistentGroupProtocol(g.name, "the member offers no protocol that every member offers.")

    def _member(self, group: str, member_id: str) -> tuple[_Group, _Member]:
        g = self._groups.get(group)
        member = g.members.get(member_id) if g is not None else None
        if member is None:
            raise UnknownMember(group, member_id)
        return g, member

    def _begin_rebalance(self, g: _Group, now: float, *, initial: bool) -> None:
        for member in g.members.values():  # members waiting for an assignment that will not come
            if member.sync_waiter is not None and not member.sync_waiter.done():
                member.sync_waiter.set_exception(RebalanceInProgress(g.name))
        g.state = GroupState.PREPARING_REBALANCE
        g.round += 1
        g.round_started = now
        g.rejoin_needed = False
        g.not_before = min(now + self._initial_delay, g.deadline()) if initial else now

    def _maybe_complete(self, g: _Group, now: float) -> None:
        if g.state is not GroupState.PREPARING_REBALANCE:
            return
        if any(m.join_round != g.round for m in g.members.values()):
            return
        if g.members and now < g.not_before:
            return
        g.state = GroupState.COMPLETING_REBALANCE
        g.completion = asyncio.get_running_loop().create_task(self._complete(g), name=f"rebalance-{g.name}")

    async def _complete(self, g: _Group) -> None:
        round_ = g.round
        joined = [(m, m.waiter) for m in g.members.values()]
        generation = max(g.generation, g.highest_tried) + 1
        g.highest_tried = generation
        if g.client_assigned():  # the leader member assigns; the coordinator only picks protocol and leader
            plan: dict[str, list[TopicPartition]] = {m.member_id: [] for m, _ in joined}
            g.partition_counts = {}
            protocol = _choose_protocol([m for m, _ in joined])
            leader = g.leader if g.leader in plan else next(iter(plan), None)
        else:
            topics = sorted({topic for m, _ in joined for topic in m.topics})
            counts = {topic: self._partitions_of(topic) for topic in topics}
            g.partition_counts = counts
            plan = assign({m.member_id: m.topics for m, _ in joined}, {t: n for t, n in counts.items() if n})
            protocol = leader = None
        try:
            await self._commit_generation(g.name, generation, plan, g.protocol_type)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the joiners
            log.warning("group %s: generation %d not committed: %r", g.name, generation, exc)
            g.completion = None
            for _, waiter in joined:
                if waiter is not None and not waiter.done():
                    waiter.set_exception(exc)
            # A new round: the failed joiners join again; an empty group is retried by the reaper (next tick).
            self._begin_rebalance(g, self._clock(), initial=False)
            return
        g.completion = None
        g.generation, g.protocol, g.leader = generation, protocol, leader
        now = self._clock()
        everyone = tuple((m.member_id, m.metadata_for(protocol)) for m, _ in joined)
        for member, waiter in joined:
            member.assignment, member.generation, member.last_seen = plan[member.member_id], generation, now
            member.assignment_data = b""
            if waiter is not None and not waiter.done():
                waiter.set_result(JoinResult(member.member_id, generation, list(plan[member.member_id]), protocol,
                                             leader, everyone if member.member_id == leader else ()))
        log.info("group %s: generation %d with %d member(s)", g.name, generation, len(joined))
        if g.rejoin_needed or any(m.join_round > round_ for m in g.members.values()):
            self._begin_rebalance(g, now, initial=False)  # with no members left: commits the empty generation
            self._maybe_complete(g, now)
        elif not g.members:
            g.state, g.protocol_type = GroupState.EMPTY, None
        else:
            g.state = GroupState.AWAITING_SYNC if g.client_assigned() else GroupState.STABLE

    def _remove(self, g: _Group, member: _Member, now: float, reason: str) -> None:
        del g.members[member.member_id]
        log.info("group %s: member %s %s", g.name, member.member_id, reason)
        if member.joining():
            member.waiter.set_exception(UnknownMember(g.name, member.member_id))
        if member.sync_waiter is not None and not member.sync_waiter.done():
            member.sync_waiter.set_exception(UnknownMember(g.name, member.member_id))
        if g.settled():
            self._begin_rebalance(g, now, initial=False)
        elif g.state is GroupState.COMPLETING_REBALANCE:
            g.rejoin_needed = True
        self._maybe_complete(g, now)

    async def _reap_forever(self) -> None:
        while True:
            await sleep_on_grid(self._tick)
            try:
                self.expire()
            except Exception:  # a bug here must not end session expiry for good
                log.exception("group coordinator reaper failed")
