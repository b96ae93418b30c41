"""Group coordinator, Kafka's classic protocol: a client leader assigns, SyncGroup hands the assignment out.

Members are driven the way Kafka clients drive them (JoinGroup, then SyncGroup with the leader's assignment);
the stand-in broker persists generations. One protocol per group: raftka's own members and Kafka members never
share a group.
"""

from __future__ import annotations

import asyncio

import pytest
from test_node_rest_consumers_standin import StandInBroker, coordinator_for, run, wait_until

from raftka.node.errors import InconsistentGroupProtocol, RebalanceInProgress, StaleGeneration
from raftka.node.groups.coordinator import SERVER_ASSIGNED, ClientProtocols, GroupState, MemberAssignment

pytestmark = pytest.mark.timeout(60)

RANGE = ClientProtocols("consumer", (("range", b"range-meta"), ("roundrobin", b"rr-meta")))


def kafka_join(coordinator, member_id=None, protocols=RANGE, group="g"):
    return asyncio.ensure_future(coordinator.join(group, member_id, ["t"], 1000, 1000, client_id="rdkafka",
                                                  protocols=protocols))


def test_the_leader_gets_every_members_metadata_and_its_sync_hands_out_the_assignments():
    async def scenario():
        broker = StandInBroker({"t": 2})
        coordinator = coordinator_for(broker)
        await coordinator.start()
        first, second = await asyncio.gather(kafka_join(coordinator), kafka_join(coordinator))
        assert first.generation == second.generation == 1 and first.protocol == second.protocol == "range"
        assert first.leader == second.leader
        leader, follower = (first, second) if first.member_id == first.leader else (second, first)
        assert dict(leader.members) == {first.member_id: b"range-meta", second.member_id: b"range-meta"}
        assert follower.members == ()
        assert coordinator.describe("g").state is GroupState.AWAITING_SYNC
        await coordinator.heartbeat("g", follower.member_id, 1)  # heartbeats are fine while awaiting the sync
        waiting = asyncio.ensure_future(coordinator.sync("g", follower.member_id, 1, {}))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        given = {leader.member_id: MemberAssignment(b"L", [("t", 0)]),
                 follower.member_id: MemberAssignment(b"F", [("t", 1)])}
        assert await coordinator.sync("g", leader.member_id, 1, given) == b"L"
        assert await waiting == b"F"
        described = coordinator.describe("g")
        assert described.state is GroupState.STABLE and described.protocol_type == "consumer"
        assert {m.member_id: (m.assignment, m.assignment_data, m.metadata) for m in described.members} == {
            leader.member_id: ([("t", 0)], b"L", b"range-meta"), follower.member_id: ([("t", 1)], b"F", b"range-meta")}
        assert broker.generations["g"][0] == 1  # persisted before anyone learned of it
        with pytest.raises(StaleGeneration):
            await coordinator.sync("g", follower.member_id, 0, {})
        await coordinator.stop()

    run(scenario)


def test_a_new_member_fails_the_pending_syncs_and_everyone_rejoins():
    async def scenario():
        coordinator = coordinator_for(StandInBroker({"t": 2}))
        await coordinator.start()
        first = await kafka_join(coordinator)
        assert first.leader == first.member_id
        late = kafka_join(coordinator)  # starts a rebalance while the generation waits for its sync
        await wait_until(lambda: coordinator.describe("g").state is GroupState.PREPARING_REBALANCE)
        with pytest.raises(RebalanceInProgress):
            await coordinator.sync("g", first.member_id, 1, {first.member_id: MemberAssignment(b"x", [])})
        with pytest.raises(RebalanceInProgress):
            await coordinator.heartbeat("g", first.member_id, 1)
        again, second = await asyncio.gather(kafka_join(coordinator, first.member_id), late)
        assert again.generation == second.generation == 2
        await coordinator.stop()

    run(scenario)


def test_the_protocol_chosen_is_one_every_member_offers_and_a_member_without_one_is_refused():
    async def scenario():
        coordinator = coordinator_for(StandInBroker({"t": 2}))
        await coordinator.start()
        rr_only = ClientProtocols("consumer", (("roundrobin", b"x"),))
        a, b = await asyncio.gather(kafka_join(coordinator), kafka_join(coordinator, protocols=rr_only))
        assert a.protocol == b.protocol == "roundrobin"
        with pytest.raises(InconsistentGroupProtocol):
            await kafka_join(coordinator, protocols=ClientProtocols("consumer", (("sticky", b""),)))
        with pytest.raises(InconsistentGroupProtocol):
            await kafka_join(coordinator, protocols=ClientProtocols("connect", (("roundrobin", b""),)))
        await coordinator.stop()

    run(scenario)


def test_one_kind_of_member_per_group():
    async def scenario():
        coordinator = coordinator_for(StandInBroker({"t": 2}))
        await coordinator.start()
        raftka_member = await coordinator.join("mine", None, ["t"], 1000, 1000)
        with pytest.raises(InconsistentGroupProtocol):
            await kafka_join(coordinator, group="mine")
        with pytest.raises(InconsistentGroupProtocol):
            await coordinator.sync("mine", raftka_member.member_id, raftka_member.generation, {})
        assert coordinator.describe("mine").protocol_type == SERVER_ASSIGNED
        kafka_member = await kafka_join(coordinator, group="theirs")
        with pytest.raises(InconsistentGroupProtocol):
            await coordinator.join("theirs", None, ["t"], 1000, 1000)
        # Once the Kafka member leaves, the group is free for raftka's members again.
        await coordinator.leave("theirs", kafka_member.member_id)
        await wait_until(lambda: coordinator.describe("theirs").state is GroupState.EMPTY)
        joined = await coordinator.join("theirs", None, ["t"], 1000, 1000)
        assert joined.assignment == [("t", 0), ("t", 1)]
        await coordinator.stop()

    run(scenario)


def test_the_leaders_rejoin_rebalances_and_the_kind_survives_a_coordinator_failover():
    async def scenario():
        broker = StandInBroker({"t": 2})
        coordinator = coordinator_for(broker)
        await coordinator.start()
        first = await kafka_join(coordinator)
        await coordinator.sync("g", first.member_id, 1, {first.member_id: MemberAssignment(b"a", [("t", 0)])})
        rejoined = await kafka_join(coordinator, first.member_id)
        assert rejoined.generation == 2 and dict(rejoined.members) == {first.member_id: b"range-meta"}
        await coordinator.stop()

        successor = coordinator_for(broker)
        generation, members = broker.generations["g"]
        successor.restore("g", generation, list(members), "consumer")
        await successor.start()
        with pytest.raises(InconsistentGroupProtocol):  # the group still belongs to its Kafka members
            await successor.join("g", None, ["t"], 1000, 1000)
        back = await kafka_join(successor, first.member_id)
        assert back.generation == 3 and back.leader == first.member_id
        await successor.stop()

    run(scenario)
