"""Group coordinator (raftka.node.groups.coordinator): joins, rebalances, sessions, generations, commit fencing,
failover.

Members are driven the way raftka's client drives them (join, heartbeat, rejoin when told); generations are
persisted into the stand-in metadata store. Timeouts are tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from test_node_rest_consumers_standin import StandInBroker, coordinator_for, run, wait_until

from raftka.node.errors import (
    ConsumerInstanceNotFound,
    GroupNotFound,
    InvalidRequest,
    InvalidTopicName,
    NotLeader,
    RebalanceInProgress,
    StaleGeneration,
)
from raftka.node.groups.coordinator import GenerationRequired, GroupCoordinator, GroupState, UnknownMember

pytestmark = pytest.mark.timeout(60)


class Client:
    """A group member as raftka's client behaves: join, heartbeat every ``heartbeat_ms``, rejoin when told."""

    def __init__(
        self,
        coordinator: GroupCoordinator,
        topics: tuple[str, ...] = ("t",),
        *,
        group: str = "g",
        session_ms: int = 300,
        rebalance_ms: int = 500,
        heartbeat_ms: int = 15,
    ) -> None:
        self.coordinator, self.topics, self.group = coordinator, topics, group
        self.session_ms, self.rebalance_ms, self.heartbeat_ms = session_ms, rebalance_ms, heartbeat_ms
        self.member_id: str | None = None
        self.generation: int | None = None
        self.assignment: list[tuple[str, int]] | None = None
        self.heartbeats = 0  # answered ones
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                result = await self.coordinator.join(
                    self.group, self.member_id, list(self.topics), self.session_ms, self.rebalance_ms
                )
            except UnknownMember:
                self.member_id = None
                continue
            self.member_id, self.generation, self.assignment = result.member_id, result.generation, result.assignment
            while True:
                await asyncio.sleep(self.heartbeat_ms / 1000)
                try:
                    await self.coordinator.heartbeat(self.group, self.member_id, self.generation)
                    self.heartbeats += 1
                except (RebalanceInProgress, StaleGeneration):
                    break
                except UnknownMember:
                    self.member_id = None
                    break

    async def kill(self) -> None:
        """Die without leaving: no more heartbeats."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def close(self) -> None:
        await self.kill()
        await self.coordinator.leave(self.group, self.member_id)


def exists(coordinator: GroupCoordinator, group: str) -> bool:
    return group in {s.group for s in coordinator.list_groups()}


def member_ids(coordinator: GroupCoordinator, group: str = "g") -> list[str]:
    """Current members ([] while the group does not exist yet)."""
    return [m.member_id for m in coordinator.describe(group).members] if exists(coordinator, group) else []


def state_of(coordinator: GroupCoordinator, group: str = "g") -> GroupState | None:
    return coordinator.describe(group).state if exists(coordinator, group) else None


def settled(coordinator: GroupCoordinator, clients: list[Client], group: str = "g") -> bool:
    if not exists(coordinator, group):
        return False
    description = coordinator.describe(group)
    return (
        description.state is GroupState.STABLE
        and sorted(c.member_id or "" for c in clients) == [m.member_id for m in description.members]
        and all(c.generation == description.generation for c in clients)
    )


def assert_exact_cover(clients: list[Client], partitions: list[tuple[str, int]]) -> None:
    owned = [tp for c in clients for tp in c.assignment]
    assert sorted(owned) == sorted(partitions), "every partition read by exactly one member"


async def started(broker: StandInBroker, **options) -> GroupCoordinator:
    coordinator = coordinator_for(broker, **options)
    await coordinator.start()
    return coordinator


# --- assignment sizes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "partitions", "sizes"),
    [(3, 2, [0, 1, 1]), (3, 6, [2, 2, 2]), (4, 6, [1, 1, 2, 2]), (1, 3, [3])],
)
def test_members_started_together_share_partitions(members, partitions, sizes):
    async def scenario():
        broker = StandInBroker({"t": partitions})
        coordinator = await started(broker)
        clients = [Client(coordinator) for _ in range(members)]
        await wait_until(lambda: settled(coordinator, clients), what="a stable group")
        assert sorted(len(c.assignment) for c in clients) == sizes
        assert_exact_cover(clients, [("t", p) for p in range(partitions)])
        # started together: one generation thanks to the initial rebalance delay
        assert [(g, gen) for g, gen, _ in broker.generation_log] == [("g", 1)]
        group, generation, plan = broker.generation_log[-1]
        assert plan == {c.member_id: c.assignment for c in clients}
        await coordinator.stop()

    run(scenario)


def test_a_seventh_consumer_on_six_partitions_stays_idle():
    async def scenario():
        broker = StandInBroker({"t": 6})
        coordinator = await started(broker)
        clients = [Client(coordinator) for _ in range(6)]
        await wait_until(lambda: settled(coordinator, clients), what="six members")
        first_generation = clients[0].generation
        clients.append(Client(coordinator))
        await wait_until(lambda: settled(coordinator, clients), what="seven members")
        assert clients[0].generation > first_generation
        assert sorted(len(c.assignment) for c in clients) == [0, 1, 1, 1, 1, 1, 1]
        assert_exact_cover(clients, [("t", p) for p in range(6)])
        await coordinator.stop()

    run(scenario)


def test_mixed_subscriptions_only_get_partitions_of_their_topics():
    async def scenario():
        broker = StandInBroker({"a": 3, "b": 2, "c": 1})
        coordinator = await started(broker)
        clients = [Client(coordinator, ("a",)), Client(coordinator, ("a", "b")), Client(coordinator, ("b", "zz"))]
        await wait_until(lambda: settled(coordinator, clients), what="a stable group")
        for client in clients:
            assert {topic for topic, _ in client.assignment} <= set(client.topics)
        # c has no subscriber; zz does not exist (yet)
        assert_exact_cover(clients, [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)])
        await coordinator.stop()

    run(scenario)


# --- members going away ---------------------------------------------------------------


def test_a_dead_members_partitions_move_after_its_session_timeout():
    async def scenario():
        broker = StandInBroker({"t": 4})
        coordinator = await started(broker)
        survivor, victim = Client(coordinator, session_ms=150), Client(coordinator, session_ms=150)
        await wait_until(lambda: settled(coordinator, [survivor, victim]), what="two members")
        assert len(survivor.assignment) == len(victim.assignment) == 2
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        await victim.kill()
        await wait_until(lambda: settled(coordinator, [survivor]), what="the survivor alone")
        assert loop.time() - killed_at >= 0.12, "partitions moved before the session timeout"
        assert survivor.assignment == [("t", p) for p in range(4)]
        await coordinator.stop()

    run(scenario)


def test_heartbeats_keep_a_member_beyond_its_session_timeout():
    async def scenario():
        broker = StandInBroker({"t": 2})
        coordinator = await started(broker)
        # Heartbeats every 20 ms against 400 ms sessions: only a stall of the whole event loop for most
        # of a session could expire a member, not a busy machine.
        clients = [Client(coordinator, session_ms=400, heartbeat_ms=20) for _ in range(2)]
        await wait_until(lambda: settled(coordinator, clients), what="two members")
        loop = asyncio.get_running_loop()
        since = loop.time()
        await wait_until(lambda: loop.time() - since > 3 * 0.4 and min(c.heartbeats for c in clients) >= 30,
                         timeout_s=30, what="three sessions' worth of heartbeats")
        assert settled(coordinator, clients) and clients[0].generation == 1
        await coordinator.stop()

    run(scenario, timeout_s=60)


def test_a_member_waiting_in_a_join_does_not_expire():
    async def scenario():
        broker = StandInBroker({"t": 2})
        coordinator = await started(broker)
        hung = await coordinator.join("g", None, ["t"], 10_000, 300)
        # The newcomer's 50 ms session is far shorter than the 300 ms it waits for the hung member.
        newcomer = await coordinator.join("g", None, ["t"], 50, 300)
        assert newcomer.assignment == [("t", 0), ("t", 1)]
        assert member_ids(coordinator) == [newcomer.member_id] != [hung.member_id]
        await coordinator.stop()

    run(scenario)


def test_leaving_rebalances_at_once():
    async def scenario():
        broker = StandInBroker({"t": 4})
        coordinator = await started(broker)
        stays, leaves = Client(coordinator, session_ms=10_000), Client(coordinator, session_ms=10_000)
        await wait_until(lambda: settled(coordinator, [stays, leaves]), what="two members")
        loop = asyncio.get_running_loop()
        left_at = loop.time()
        await leaves.close()
        await wait_until(lambda: settled(coordinator, [stays]), what="one member")
        assert loop.time() - left_at < 2, "a leave must not wait for the 10 s session timeout"
        assert stays.assignment == [("t", p) for p in range(4)]
        await coordinator.stop()

    run(scenario)


def test_rebalance_timeout_evicts_a_member_that_never_rejoins():
    async def scenario():
        broker = StandInBroker({"t": 2})
        coordinator = await started(broker)
        # A joins and then hangs: its long session keeps it a member, but it never rejoins.
        hung = await coordinator.join("g", None, ["t"], 10_000, 150)
        assert (hung.generation, hung.assignment) == (1, [("t", 0), ("t", 1)])
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        newcomer = await coordinator.join("g", None, ["t"], 10_000, 150)
        waited = loop.time() - asked_at
        assert waited >= 0.14, "the join waited for the hung member until the rebalance timeout"
        assert waited < 5, "evicted at the rebalance timeout, not at the end of its 10 s session"
        assert (newcomer.generation, newcomer.assignment) == (2, [("t", 0), ("t", 1)])
        assert [m.member_id for m in coordinator.describe("g").members] == [newcomer.member_id]
        with pytest.raises(UnknownMember):
            await coordinator.heartbeat("g", hung.member_id, hung.generation)
        await coordinator.stop()

    run(scenario)


def test_the_last_member_leaving_commits_an_empty_generation():
    async def scenario():
        broker = StandInBroker({"t": 2})
        coordinator = await started(broker)
        result = await coordinator.join("g", None, ["t"], 1000, 1000)
        await coordinator.leave("g", result.member_id)
        await wait_until(lambda: state_of(coordinator) is GroupState.EMPTY, what="an empty group")
        assert broker.generations["g"] == (2, {})
        coordinator.check_commit("g", None, None)  # manual-assignment commits are allowed again
        with pytest.raises(UnknownMember):
            coordinator.check_commit("g", result.member_id, result.generation)  # a zombie's commit is not
        await coordinator.stop()

    run(scenario)


def test_leaving_while_a_generation_is_being_committed_still_ends_empty():
    async def scenario():
        broker = StandInBroker({"t": 2})
        release = asyncio.Event()

        async def slow_commit(group, generation, plan, protocol_type):
            if generation == 1:
                await release.wait()
            await broker.commit_generation(group, generation, plan)

        coordinator = GroupCoordinator(
            slow_commit, broker.partitions_of, session_timeout_range_ms=(10, 60_000), initial_rebalance_delay_ms=0,
            tick_ms=5,
        )
        await coordinator.start()
        join = asyncio.ensure_future(coordinator.join("g", None, ["t"], 1000, 1000))
        await wait_until(lambda: state_of(coordinator) is GroupState.COMPLETING_REBALANCE, what="completing")
        (member_id,) = member_ids(coordinator)
        await coordinator.leave("g", member_id)
        release.set()
        with pytest.raises(UnknownMember):
            await join
        await wait_until(lambda: state_of(coordinator) is GroupState.EMPTY and len(broker.generation_log) == 2,
                         what="an empty generation")
        assert broker.generations["g"] == (2, {})
        await coordinator.stop()

    run(scenario)


# --- joins --------------------------------------------------------------------------


def test_concurrent_joins_complete_together_with_the_same_generation():
    async def scenario():
        broker = StandInBroker({"t": 5})
        coordinator = await started(broker)
        results = await asyncio.gather(*(coordinator.join("g", None, ["t"], 1000, 1000) for _ in range(5)))
        assert {r.generation for r in results} == {1}
        assert sorted(tp for r in results for tp in r.assignment) == [("t", p) for p in range(5)]
        assert len(broker.generation_log) == 1
        # Two more join a stable group together: the old members rejoin and all land in generation 2.
        clients = [Client(coordinator) for _ in range(2)]
        old = await asyncio.gather(*(coordinator.join("g", r.member_id, ["t"], 1000, 1000) for r in results))
        await wait_until(lambda: all(c.generation == 2 for c in clients), what="the newcomers in generation 2")
        assert {r.generation for r in old} == {2}
        assert sorted([tp for r in old for tp in r.assignment] + [tp for c in clients for tp in c.assignment]) == [
            ("t", p) for p in range(5)
        ]
        await coordinator.stop()

    run(scenario)


def test_rejoining_a_stable_group_unchanged_returns_the_current_assignment():
    async def scenario():
        broker = StandInBroker({"t": 3})
        coordinator = await started(broker)
        first = await coordinator.join("g", None, ["t"], 1000, 1000, client_id="orders-app")
        assert re.fullmatch(r"orders-app-[0-9a-f]{32}", first.member_id)
        again = await coordinator.join("g", first.member_id, ["t"], 1000, 1000)
        assert again == first
        assert len(broker.generation_log) == 1
        changed = await coordinator.join("g", first.member_id, ["t", "u"], 1000, 1000)
        assert changed.generation == 2, "a subscription change is a rebalance"
        await coordinator.stop()

    run(scenario)


def test_a_repeated_join_while_waiting_gets_the_same_answer():
    async def scenario():
        broker = StandInBroker({"t": 2})
        coordinator = await started(broker, initial_rebalance_delay_ms=100)
        first = asyncio.ensure_future(coordinator.join("g", None, ["t"], 1000, 1000))
        await wait_until(lambda: member_ids(coordinator), what="the member")
        member_id = coordinator.describe("g").members[0].member_id
        first.cancel()  # the client's HTTP request went away ...
        retried = await coordinator.join("g", member_id, ["t"], 1000, 1000)  # ... and it asked again
        assert (retried.generation, retried.assignment) == (1, [("t", 0), ("t", 1)])
        assert len(broker.generation_log) == 1
        await coordinator.stop()

    run(scenario)


def test_a_join_with_another_subscription_supersedes_the_pending_one():
    async def scenario():
        broker = StandInBroker({"a": 1, "b": 1})
        coordinator = await started(broker, initial_rebalance_delay_ms=100)
        first = asyncio.ensure_future(coordinator.join("g", None, ["a"], 1000, 1000))
        await wait_until(lambda: member_ids(coordinator), what="the member")
        (member_id,) = member_ids(coordinator)
        second = await coordinator.join("g", member_id, ["b"], 1000, 1000)
        assert (second.generation, second.assignment) == (1, [("b", 0)])
        with pytest.raises(RebalanceInProgress):
            await first  # it asked for "a": it must not be answered with the assignment for "b"
        await coordinator.stop()

    run(scenario)


def test_join_with_an_unknown_member_id_is_refused():
    async def scenario():
        coordinator = await started(StandInBroker({"t": 1}))
        with pytest.raises(UnknownMember) as info:
            await coordinator.join("g", "who-is-this", ["t"], 1000, 1000)
        assert isinstance(info.value, ConsumerInstanceNotFound)
        assert (info.value.http_status, info.value.error_code) == (404, 40403)
        assert "join again without a member_id" in info.value.message
        assert coordinator.list_groups() == [], "no group is created by a refused join"
        await coordinator.stop()

    run(scenario)


@pytest.mark.parametrize(
    ("group", "topics", "session", "rebalance", "client_id", "error"),
    [
        ("g", [], 1000, 1000, None, InvalidRequest),
        ("g", "t", 1000, 1000, None, InvalidRequest),
        ("g", ["bad topic"], 1000, 1000, None, InvalidTopicName),
        ("g", ["t"], 5, 1000, None, InvalidRequest),
        ("g", ["t"], 60_001, 1000, None, InvalidRequest),
        ("g", ["t"], "1000", 1000, None, InvalidRequest),
        ("g", ["t"], 1000, 0, None, InvalidRequest),
        ("g", ["t"], 1000, 1000, "no spaces", InvalidRequest),
        ("g", ["t"], 1000, 1000, "x" * 101, InvalidRequest),
        ("bad group", ["t"], 1000, 1000, None, InvalidRequest),
        ("", ["t"], 1000, 1000, None, InvalidRequest),
    ],
)
def test_join_rejects_bad_input(group, topics, session, rebalance, client_id, error):
    async def scenario():
        coordinator = await started(StandInBroker({"t": 1}))
        with pytest.raises(error):
            await coordinator.join(group, None, topics, session, rebalance, client_id=client_id)
        assert coordinator.list_groups() == []
        await coordinator.stop()

    run(scenario)


# --- heartbeats and commits -------------------------------------------------------------


def test_heartbeat_answers():
    async def scenario():
        coordinator = await started(StandInBroker({"t": 2}))
        a = await coordinator.join("g", None, ["t"], 1000, 1000)
        await coordinator.heartbeat("g", a.member_id, a.generation)
        with pytest.raises(StaleGeneration) as stale:
            await coordinator.heartbeat("g", a.member_id, a.generation - 1)
        assert (stale.value.error_code, stale.value.extra()) == (40905, {"generation": a.generation})
        with pytest.raises(UnknownMember):
            await coordinator.heartbeat("g", "nobody", a.generation)
        with pytest.raises(UnknownMember):
            await coordinator.heartbeat("other-group", a.member_id, a.generation)
        b = asyncio.ensure_future(coordinator.join("g", None, ["t"], 1000, 1000))
        await wait_until(lambda: state_of(coordinator) is GroupState.PREPARING_REBALANCE, what="rebalance")
        with pytest.raises(RebalanceInProgress) as rebalancing:
            await coordinator.heartbeat("g", a.member_id, a.generation)
        assert (rebalancing.value.http_status, rebalancing.value.error_code) == (409, 40906)
        a2 = await coordinator.join("g", a.member_id, ["t"], 1000, 1000)
        assert a2.generation == (await b).generation == 2
        await coordinator.stop()

    run(scenario)


def test_check_commit_fences_stale_generations():
    async def scenario():
        broker = StandInBroker({"t": 2})
        coordinator = await started(broker)
        a = await coordinator.join("g", None, ["t"], 1000, 1000)
        coordinator.check_commit("g", a.member_id, a.generation)
        with pytest.raises(GenerationRequired) as required:
            coordinator.check_commit("g", None, None)
        assert required.value.error_code == 40905 and "live members" in required.value.message
        with pytest.raises(InvalidRequest):
            coordinator.check_commit("g", a.member_id, None)
        b_join = asyncio.ensure_future(coordinator.join("g", None, ["t"], 1000, 1000))
        await wait_until(lambda: state_of(coordinator) is GroupState.PREPARING_REBALANCE, what="rebalance")
        coordinator.check_commit("g", a.member_id, a.generation)  # still current until the rebalance completes
        a2 = await coordinator.join("g", a.member_id, ["t"], 1000, 1000)
        b = await b_join
        with pytest.raises(StaleGeneration):
            coordinator.check_commit("g", a.member_id, a.generation)  # generation 1 is over
        coordinator.check_commit("g", a2.member_id, a2.generation)
        coordinator.check_commit("g", b.member_id, b.generation)
        with pytest.raises(UnknownMember):
            coordinator.check_commit("g", "nobody", a2.generation)
        coordinator.check_commit("fresh-group", None, None)  # never joined: manual assignment
        await coordinator.stop()

    run(scenario)


def test_a_member_that_joined_mid_rebalance_cannot_commit_with_the_old_generation():
    async def scenario():
        coordinator = await started(StandInBroker({"t": 2}))
        a = await coordinator.join("g", None, ["t"], 1000, 1000)
        b_join = asyncio.ensure_future(coordinator.join("g", None, ["t"], 1000, 1000))
        await wait_until(lambda: len(member_ids(coordinator)) == 2, what="b")
        b_id = next(m.member_id for m in coordinator.describe("g").members if m.member_id != a.member_id)
        with pytest.raises(StaleGeneration):
            coordinator.check_commit("g", b_id, a.generation)  # b was never part of generation 1
        await coordinator.join("g", a.member_id, ["t"], 1000, 1000)
        await b_join
        await coordinator.stop()

    run(scenario)


# --- metadata, persistence failures, failover -----------------------------------------------


def test_more_partitions_rebalance_the_subscribed_groups():
    async def scenario():
        broker = StandInBroker({"t": 2, "u": 1})
        coordinator = await started(broker)
        clients = [Client(coordinator, ("t",)), Client(coordinator, ("t",))]
        other = Client(coordinator, ("u",), group="h")
        await wait_until(lambda: settled(coordinator, clients), what="group g")
        await wait_until(lambda: settled(coordinator, [other], "h"), what="group h")
        generation = clients[0].generation
        broker.topics["t"] = 6
        coordinator.on_metadata_change()
        await wait_until(
            lambda: settled(coordinator, clients) and clients[0].generation > generation, what="a new generation"
        )
        assert sorted(len(c.assignment) for c in clients) == [3, 3]
        assert coordinator.describe("h").generation == 1, "a group without the topic is left alone"
        await coordinator.stop()

    run(scenario)


def test_a_generation_that_failed_to_commit_is_never_reused():
    async def scenario():
        broker = StandInBroker({"t": 2})
        failures = [NotLeader("the metadata group")]

        async def flaky_commit(group, generation, plan, protocol_type):
            if failures:
                raise failures.pop()
            await broker.commit_generation(group, generation, plan)

        coordinator = GroupCoordinator(
            flaky_commit, broker.partitions_of, session_timeout_range_ms=(10, 60_000), initial_rebalance_delay_ms=0,
            tick_ms=5,
        )
        await coordinator.start()
        with pytest.raises(NotLeader):
            await coordinator.join("g", None, ["t"], 1000, 1000)
        member_id = coordinator.describe("g").members[0].member_id
        result = await coordinator.join("g", member_id, ["t"], 1000, 1000)
        assert result.generation == 2
        assert [gen for _, gen, _ in broker.generation_log] == [2]
        await coordinator.stop()

    run(scenario)


def test_restored_generation_continues_on_a_new_coordinator():
    async def scenario():
        broker = StandInBroker({"t": 2})
        broker.restore_generation("g", 7, {"old-member": [("t", 0), ("t", 1)]})
        coordinator = await started(broker)
        coordinator.restore("g", 7)
        assert coordinator.describe("g").generation == 7
        coordinator.check_commit("g", None, None)  # no live members here
        with pytest.raises(UnknownMember):
            await coordinator.heartbeat("g", "old-member", 7)  # the client joins afresh
        result = await coordinator.join("g", None, ["t"], 1000, 1000)
        assert result.generation == 8
        await coordinator.stop()

    run(scenario)


def test_restored_members_may_rejoin_with_their_ids_or_are_evicted():
    async def scenario():
        broker = StandInBroker({"t": 2})
        broker.restore_generation("g", 7, {"keeps": [("t", 0)], "gone": [("t", 1)]})
        coordinator = await started(broker, restore_timeout_ms=150)
        coordinator.restore("g", 7, ["keeps", "gone"])
        with pytest.raises(RebalanceInProgress):
            await coordinator.heartbeat("g", "keeps", 7)  # 409: rejoin with the same id
        coordinator.check_commit("g", "keeps", 7)  # commits of the restored generation still go through
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        result = await coordinator.join("g", "keeps", ["t"], 1000, 1000)
        assert loop.time() - asked_at >= 0.14, "waited for 'gone' until the restore timeout"
        assert (result.member_id, result.generation, result.assignment) == ("keeps", 8, [("t", 0), ("t", 1)])
        assert broker.generations["g"] == (8, {"keeps": [("t", 0), ("t", 1)]})
        await coordinator.stop()

    run(scenario)


def test_restored_members_that_never_return_leave_an_empty_group():
    async def scenario():
        broker = StandInBroker({"t": 2})
        broker.restore_generation("g", 3, {"a": [("t", 0), ("t", 1)]})
        coordinator = await started(broker, restore_timeout_ms=50)
        coordinator.restore("g", 3, ["a"])
        await wait_until(lambda: state_of(coordinator) is GroupState.EMPTY, what="an empty group")
        assert broker.generations["g"] == (4, {})
        await coordinator.stop()

    run(scenario)


def test_stop_fails_pending_joins_and_later_calls():
    async def scenario():
        coordinator = await started(StandInBroker({"t": 2}), initial_rebalance_delay_ms=10_000)
        pending = asyncio.ensure_future(coordinator.join("g", None, ["t"], 1000, 1000))
        await wait_until(lambda: member_ids(coordinator), what="the member")
        await coordinator.stop()
        with pytest.raises(NotLeader) as info:
            await pending
        assert (info.value.http_status, info.value.error_code, info.value.retriable) == (503, 50301, True)
        with pytest.raises(NotLeader):
            await coordinator.join("g", None, ["t"], 1000, 1000)
        with pytest.raises(NotLeader):
            coordinator.check_commit("g", None, None)

    run(scenario)


def test_describe_and_list():
    async def scenario():
        coordinator = await started(StandInBroker({"t": 2}))
        a = await coordinator.join("g", None, ["t"], 1000, 1000)
        await coordinator.join("h", None, ["t"], 1000, 1000)
        description = coordinator.describe("g")
        assert (description.group, description.state, description.generation) == ("g", GroupState.STABLE, 1)
        assert [(m.member_id, m.topics, m.assignment) for m in description.members] == [
            (a.member_id, ["t"], [("t", 0), ("t", 1)])
        ]
        assert [(s.group, s.state.value, s.generation, s.members) for s in coordinator.list_groups()] == [
            ("g", "Stable", 1, 1),
            ("h", "Stable", 1, 1),
        ]
        with pytest.raises(GroupNotFound) as info:
            coordinator.describe("nope")
        assert info.value.error_code == 40405
        await coordinator.stop()

    run(scenario)
