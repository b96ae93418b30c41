"""Group coordinator under random operations (hypothesis state machine, fake clock).

Members join, rejoin (possibly changing their subscription), heartbeat, leave or fall silent; time jumps;
partition counts grow; persisting a generation sometimes fails. After every step:

* persisted generations of the group strictly increase (checked by the stand-in store);
* every persisted assignment gives each partition at most once, only to a member subscribed to its topic;
* every completed join got exactly its share of the persisted generation it names;
* a stable group's members hold exactly the persisted assignment of its generation, which covers every
  partition of their topics.

Finally, with every member silent and time moving on, the group must end empty with an empty generation.
"""

from __future__ import annotations

import asyncio

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_node_rest_consumers_standin import StandInBroker

from raftka.node.errors import ApiError, NotLeader
from raftka.node.groups.coordinator import GroupCoordinator, GroupState, JoinResult

TOPIC_SETS = st.sampled_from([("a",), ("b",), ("a", "b"), ("a", "zz")])
PAUSES = st.sampled_from([0, 0, 20, 60])  # ms between one event and the next


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CoordinatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.broker = StandInBroker({"a": 2, "b": 3})
        self.clock = FakeClock()
        self.fail_next_commit = False
        self.coordinator = GroupCoordinator(
            self._commit_generation,
            self.broker.partitions_of,
            self.clock,
            session_timeout_range_ms=(10, 60_000),
            initial_rebalance_delay_ms=50,
            restore_timeout_ms=500,
        )
        # Members in the order their first join completed: ids are random (uuid4), so choosing by sorted id
        # would make replays of an example pick other members.
        self.member_topics: dict[str, tuple[str, ...]] = {}
        self.joins: list[tuple[tuple[str, ...], asyncio.Task[JoinResult]]] = []
        self.checked = 0

    async def _commit_generation(self, group, generation, plan, protocol_type):
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise NotLeader("the metadata group")
        await self.broker.commit_generation(group, generation, plan)

    def _step(self, coro=None) -> None:
        async def go():
            result = await coro if coro is not None else None
            for _ in range(5):  # let joins and completions run
                await asyncio.sleep(0)
            return result

        return self.runner.run(go())

    def _in_loop(self, function) -> None:
        """Run a synchronous coordinator method inside the event loop (it may start tasks)."""

        async def call():
            function()

        self._step(call())

    def _join(self, member_id: str | None, topics: tuple[str, ...]) -> None:
        async def start():
            return self.runner.get_loop().create_task(
                self.coordinator.join("g", member_id, list(topics), 300, 200)
            )

        self.joins.append((topics, self._step(start())))

    # --- rules --------------------------------------------------------------------

    def _pause(self, ms: int) -> None:
        if ms:
            self.clock.now += ms / 1000
            self._in_loop(self.coordinator.expire)

    @rule(topics=TOPIC_SETS, pause=PAUSES)
    def join_new(self, topics, pause):
        self._pause(pause)
        self._join(None, topics)

    @precondition(lambda self: self.member_topics)
    @rule(which=st.integers(0, 50), topics=st.none() | TOPIC_SETS, pause=PAUSES)
    def rejoin(self, which, topics, pause):
        self._pause(pause)
        if not self.member_topics:
            return
        member_id = list(self.member_topics)[which % len(self.member_topics)]
        self._join(member_id, topics or self.member_topics[member_id])

    @precondition(lambda self: self.member_topics)
    @rule(which=st.integers(0, 50), generation_offset=st.sampled_from([0, 0, 0, -1]), pause=PAUSES)
    def heartbeat(self, which, generation_offset, pause):
        self._pause(pause)
        if not self.member_topics:
            return
        member_id = list(self.member_topics)[which % len(self.member_topics)]
        generation = self.coordinator.describe("g").generation + generation_offset
        try:
            self._step(self.coordinator.heartbeat("g", member_id, generation))
        except ApiError as exc:
            assert exc.http_status in (404, 409)

    @precondition(lambda self: self.member_topics)
    @rule(which=st.integers(0, 50), pause=PAUSES)
    def leave(self, which, pause):
        self._pause(pause)
        if not self.member_topics:
            return
        member_id = list(self.member_topics)[which % len(self.member_topics)]
        try:
            self._step(self.coordinator.leave("g", member_id))
        except ApiError as exc:
            assert exc.http_status == 404

    @rule(ms=st.sampled_from([10, 60, 150, 250, 400]))
    def time_passes(self, ms):
        self.clock.now += ms / 1000
        self._in_loop(self.coordinator.expire)

    @rule(topic=st.sampled_from(["a", "b"]), more=st.integers(1, 2))
    def add_partitions(self, topic, more):
        self.broker.topics[topic] += more
        self._in_loop(self.coordinator.on_metadata_change)

    @rule(dice=st.integers(0, 3))
    def next_commit_may_fail(self, dice):
        self.fail_next_commit = dice == 0

    # --- invariants ---------------------------------------------------------------

    def _plans(self) -> dict[int, dict[str, list[tuple[str, int]]]]:
        return {generation: plan for _, generation, plan in self.broker.generation_log}

    @invariant()
    def completed_joins_match_the_persisted_generation(self):
        plans = self._plans()
        for topics, task in self.joins[self.checked :]:
            if not task.done():
                break
            self.checked += 1
            if task.exception() is not None:
                assert isinstance(task.exception(), ApiError)
                continue
            result = task.result()
            assert result.assignment == plans[result.generation][result.member_id]
            assert all(topic in topics for topic, _ in result.assignment)
            self.member_topics[result.member_id] = topics
        current = {m.member_id for m in self.coordinator.describe("g").members} if self.coordinator.list_groups() else set()
        self.member_topics = {m: t for m, t in self.member_topics.items() if m in current}

    @invariant()
    def persisted_assignments_never_share_a_partition(self):
        for plan in self._plans().values():
            owned = [tp for share in plan.values() for tp in share]
            assert len(owned) == len(set(owned))

    @invariant()
    def a_stable_group_holds_its_persisted_assignment(self):
        if not self.coordinator.list_groups():
            return
        description = self.coordinator.describe("g")
        if description.state is not GroupState.STABLE:
            return
        plan = self._plans()[description.generation]
        assert {m.member_id: m.assignment for m in description.members} == plan
        topics = {t for m in description.members for t in m.topics}
        expected = sorted((t, p) for t in topics if t in self.broker.topics for p in range(self.broker.topics[t]))
        assert sorted(tp for share in plan.values() for tp in share) == expected

    def teardown(self):
        self.fail_next_commit = False
        try:
            for _ in range(6):  # everyone silent: sessions expire, rebalances time out
                self.clock.now += 1.0
                self._in_loop(self.coordinator.expire)
            if self.coordinator.list_groups():
                assert self.coordinator.describe("g").state is GroupState.EMPTY
                if self.broker.generation_log:
                    assert self.broker.generation_log[-1][2] == {}
            self._step(self.coordinator.stop())
            for _, task in self.joins:
                assert task.done()
                assert task.cancelled() or task.exception() is None or isinstance(task.exception(), ApiError)
        finally:
            self.runner.close()


CoordinatorMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
test_coordinator_model = CoordinatorMachine.TestCase
