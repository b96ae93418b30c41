"""REST Proxy v2 consumer instances (raftka.node.http.rest_consumers) over a real GroupCoordinator and the
stand-in broker: subscribe/assign, polling, commits, positions, rebalances, expiry, bad input."""

from __future__ import annotations

import asyncio
import re

import pytest
from test_node_rest_consumers_standin import (
    StandInBroker,
    coordinator_for,
    rest_consumers_for,
    run,
    wait_until,
)

from raftka.node.errors import (
    ConsumerAlreadyExists,
    ConsumerAlreadySubscribed,
    ConsumerInstanceNotFound,
    InvalidConsumerConfig,
    InvalidRequest,
    InvalidTopicName,
    NoCommittedOffset,
    OffsetOutOfRange,
    PartitionNotFound,
    RebalanceInProgress,
    TopicNotFound,
)
from raftka.node.groups.coordinator import GroupState
from raftka.node.http.codecs import EmbeddedFormat
from raftka.node.http.rest_consumers import InstanceConfig, RestConsumers, owner_broker, parse_instance_config

pytestmark = pytest.mark.timeout(60)

MANUAL = InstanceConfig(auto_commit=False, auto_offset_reset="earliest")


class Setup:
    def __init__(self, topics: dict[str, int], **options) -> None:
        self.broker = StandInBroker(topics)
        self.coordinator = coordinator_for(self.broker)
        self.rest = rest_consumers_for(self.broker, self.coordinator, **options)

    async def __aenter__(self) -> Setup:
        await self.coordinator.start()
        await self.rest.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.rest.stop()
        await self.coordinator.stop()


async def poll_values(rest: RestConsumers, group: str, instance: str, timeout_ms: int = 50, **kw) -> list:
    polled = await rest.records(group, instance, timeout_ms, **kw)
    return [(t, p, r.offset, r.value) for t, p, records in polled.batches for r in records]


async def drain(rest: RestConsumers, group: str, instance: str, want: int, timeout_s: float = 5.0) -> list:
    got: list = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(got) < want and loop.time() < deadline:
        got += await poll_values(rest, group, instance)
    return got


def test_full_flow_create_subscribe_poll_commit_delete():
    async def scenario():
        async with Setup({"t": 2}) as s:
            s.broker.produce("t", 0, b"a0", b"a1")
            s.broker.produce("t", 1, b"b0")
            instance = s.rest.create("g", InstanceConfig(auto_commit=False, auto_offset_reset="earliest"))
            assert re.fullmatch(r"rk1-[0-9a-f]{32}", instance) and owner_broker(instance) == 1
            await s.rest.subscribe("g", instance, ["t"])
            assert s.rest.subscription("g", instance) == ["t"]
            got = await drain(s.rest, "g", instance, 3)
            assert sorted(got) == [("t", 0, 0, b"a0"), ("t", 0, 1, b"a1"), ("t", 1, 0, b"b0")]
            assert s.rest.assignments("g", instance) == [("t", 0), ("t", 1)]
            assert await poll_values(s.rest, "g", instance) == [], "positions moved past what was returned"
            s.broker.produce("t", 1, b"b1")
            assert await drain(s.rest, "g", instance, 1) == [("t", 1, 1, b"b1")]

            await s.rest.commit_offsets("g", instance)  # no offsets: everything consumed so far
            assert s.broker.offsets["g"] == {("t", 0): 2, ("t", 1): 2}
            group, _, member_id, generation = s.broker.commit_log[-1]
            assert (member_id, generation) == (s.coordinator.describe("g").members[0].member_id, 1)
            assert await s.rest.committed_offsets("g", instance, [("t", 0), ("t", 1)]) == {("t", 0): 2, ("t", 1): 2}

            await s.rest.delete("g", instance)
            with pytest.raises(ConsumerInstanceNotFound) as info:
                await s.rest.records("g", instance, 0)
            assert info.value.error_code == 40403
            await wait_until(lambda: s.coordinator.describe("g").state is GroupState.EMPTY, what="the member leaving")

    run(scenario)


def test_a_new_instance_resumes_from_the_committed_offsets():
    async def scenario():
        async with Setup({"t": 1}) as s:
            s.broker.produce("t", 0, b"0", b"1", b"2", b"3")
            first = s.rest.create("g", MANUAL)
            await s.rest.subscribe("g", first, ["t"])
            assert len(await drain(s.rest, "g", first, 4)) == 4
            await s.rest.commit_offsets("g", first, {("t", 0): 1})  # last consumed: offset 1 -> next is 2
            assert s.broker.offsets["g"] == {("t", 0): 2}
            await s.rest.delete("g", first)
            second = s.rest.create("g", MANUAL)
            await s.rest.subscribe("g", second, ["t"])
            assert [v for *_, v in await drain(s.rest, "g", second, 2)] == [b"2", b"3"]

    run(scenario)


def test_two_instances_split_the_partitions_and_rebalance_without_duplicates():
    async def scenario():
        async with Setup({"t": 4}) as s:
            for p in range(4):
                s.broker.produce("t", p, *(f"{p}-{i}".encode() for i in range(5)))
            config = InstanceConfig(auto_offset_reset="earliest", auto_commit=True)
            a = s.rest.create("g", config)
            await s.rest.subscribe("g", a, ["t"])
            seen = await drain(s.rest, "g", a, 20)
            assert len(seen) == 20
            b = s.rest.create("g", config)
            await s.rest.subscribe("g", b, ["t"])
            await wait_until(
                lambda: len(s.rest.assignments("g", a)) == 2 and len(s.rest.assignments("g", b)) == 2,
                what="two partitions each",
            )
            assert set(s.rest.assignments("g", a)).isdisjoint(s.rest.assignments("g", b))
            for p in range(4):
                s.broker.produce("t", p, f"{p}-5".encode())
            more = await drain(s.rest, "g", a, 2) + await drain(s.rest, "g", b, 2)
            seen += more
            assert sorted(v for *_, v in more) == [f"{p}-5".encode() for p in range(4)]
            assert len(seen) == len(set(seen)) == 24, "auto-commit before the rebalance: nothing read twice"

    run(scenario)


def test_auto_offset_reset_without_committed_offsets():
    async def scenario():
        async with Setup({"t": 1}) as s:
            s.broker.produce("t", 0, b"old")
            earliest = s.rest.create("g1", InstanceConfig(auto_offset_reset="earliest", auto_commit=False))
            latest = s.rest.create("g2", InstanceConfig(auto_offset_reset="latest", auto_commit=False))
            for group, instance in (("g1", earliest), ("g2", latest)):
                await s.rest.assign(group, instance, [("t", 0)])
            assert await poll_values(s.rest, "g1", earliest) == [("t", 0, 0, b"old")]
            assert await poll_values(s.rest, "g2", latest) == []
            s.broker.produce("t", 0, b"new")
            assert await poll_values(s.rest, "g2", latest) == [("t", 0, 1, b"new")]

    run(scenario)


def test_positions_lost_to_retention_follow_auto_offset_reset():
    async def scenario():
        async with Setup({"t": 1}) as s:
            s.broker.produce("t", 0, *(str(i).encode() for i in range(6)))
            await s.broker.commit("g", {("t", 0): 1}, None, None)
            instance = s.rest.create("g", MANUAL)
            await s.rest.assign("g", instance, [("t", 0)])
            s.broker.truncate_front("t", 0, 4)
            assert [o for _, _, o, _ in await drain(s.rest, "g", instance, 2)] == [4, 5]

    run(scenario)


def test_manual_assignment_and_seeking():
    async def scenario():
        async with Setup({"t": 2}) as s:
            s.broker.produce("t", 0, *(str(i).encode() for i in range(5)))
            instance = s.rest.create("g", MANUAL)
            await s.rest.assign("g", instance, [("t", 0)])
            assert s.rest.assignments("g", instance) == [("t", 0)]
            assert len(await drain(s.rest, "g", instance, 5)) == 5
            await s.rest.seek_to_beginning("g", instance, [("t", 0)])
            assert [o for _, _, o, _ in await poll_values(s.rest, "g", instance)] == [0, 1, 2, 3, 4]
            s.rest.seek("g", instance, {("t", 0): 3})
            assert [o for _, _, o, _ in await poll_values(s.rest, "g", instance)] == [3, 4]
            s.rest.seek("g", instance, {("t", 0): 1})
            await s.rest.seek_to_end("g", instance, [("t", 0)])
            assert await poll_values(s.rest, "g", instance) == []
            # manual mode commits without member id and generation
            await s.rest.commit_offsets("g", instance)
            assert s.broker.commit_log[-1] == ("g", {("t", 0): 5}, None, None)
            with pytest.raises(InvalidRequest, match="not assigned"):
                s.rest.seek("g", instance, {("t", 1): 0})
            with pytest.raises(InvalidRequest, match="not assigned"):
                await s.rest.seek_to_end("g", instance, [("t", 1)])
            with pytest.raises(InvalidRequest):
                s.rest.seek("g", instance, {("t", 0): -1})
            await s.rest.assign("g", instance, [])
            assert s.rest.assignments("g", instance) == []

    run(scenario)


def test_a_seek_during_a_long_poll_wins():
    async def scenario():
        async with Setup({"t": 1}) as s:
            s.broker.produce("t", 0, b"0", b"1", b"2")
            instance = s.rest.create("g", MANUAL)
            await s.rest.assign("g", instance, [("t", 0)])
            assert len(await drain(s.rest, "g", instance, 3)) == 3
            poll = asyncio.ensure_future(poll_values(s.rest, "g", instance, timeout_ms=5000))
            await asyncio.sleep(0.05)  # the poll waits at offset 3
            s.rest.seek("g", instance, {("t", 0): 0})
            s.broker.produce("t", 0, b"3")
            assert await poll == [], "fetched from the old position: dropped"
            assert [o for _, _, o, _ in await poll_values(s.rest, "g", instance)] == [0, 1, 2, 3]

    run(scenario)


def test_records_long_polls_until_data_or_timeout():
    async def scenario():
        async with Setup({"t": 3}) as s:
            instance = s.rest.create("g", MANUAL)
            await s.rest.assign("g", instance, [("t", 0), ("t", 1), ("t", 2)])
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await poll_values(s.rest, "g", instance, timeout_ms=150) == []
            assert loop.time() - started >= 0.14
            started = loop.time()
            poll = asyncio.ensure_future(poll_values(s.rest, "g", instance, timeout_ms=5000))
            await asyncio.sleep(0.05)
            s.broker.produce("t", 2, b"x")
            assert await poll == [("t", 2, 0, b"x")]
            assert loop.time() - started < 2, "returned as soon as a partition had records"

    run(scenario)


def test_max_bytes_bounds_a_poll_but_one_record_always_comes():
    async def scenario():
        async with Setup({"t": 2}) as s:
            s.broker.produce("t", 0, b"x" * 100, b"y" * 100, b"z" * 100)
            s.broker.produce("t", 1, b"w" * 100)
            instance = s.rest.create("g", MANUAL)
            await s.rest.assign("g", instance, [("t", 0), ("t", 1)])
            first = await poll_values(s.rest, "g", instance, max_bytes=150)
            assert len(first) == 1
            rest = await drain(s.rest, "g", instance, 3)
            assert sorted(first + rest) == sorted(
                [("t", 0, 0, b"x" * 100), ("t", 0, 1, b"y" * 100), ("t", 0, 2, b"z" * 100), ("t", 1, 0, b"w" * 100)]
            )

    run(scenario)


def test_explicit_commits_of_a_subscribed_instance_carry_its_generation():
    async def scenario():
        async with Setup({"t": 1}) as s:
            s.broker.produce("t", 0, b"a")
            instance = s.rest.create("g", MANUAL)
            await s.rest.subscribe("g", instance, ["t"])
            await drain(s.rest, "g", instance, 1)
            await s.rest.commit_offsets("g", instance, {("t", 0): 0})
            member_id = s.coordinator.describe("g").members[0].member_id
            assert s.broker.commit_log[-1] == ("g", {("t", 0): 1}, member_id, 1)
            with pytest.raises(InvalidRequest):
                await s.rest.commit_offsets("g", instance, {("t", 0): -2})
            joining = s.rest.create("g", MANUAL)
            await s.rest.subscribe("g", joining, ["t"])
            with pytest.raises(RebalanceInProgress):  # no generation yet to fence the commit with
                await s.rest.commit_offsets("g", joining, {("t", 0): 0})
            with pytest.raises(PartitionNotFound):
                await s.rest.commit_offsets("g", instance, {("t", 3): 0})

    run(scenario)


def test_idle_instances_expire_and_leave_their_group():
    async def scenario():
        async with Setup({"t": 1}, instance_timeout_ms=150) as s:
            s.broker.produce("t", 0, b"a")
            instance = s.rest.create("g", InstanceConfig(auto_offset_reset="earliest", auto_commit=True))
            await s.rest.subscribe("g", instance, ["t"])
            await drain(s.rest, "g", instance, 1)
            kept = s.rest.create("g2", MANUAL)
            for _ in range(6):  # used regularly: stays
                await asyncio.sleep(0.05)
                s.rest.assignments("g2", kept)
            with pytest.raises(ConsumerInstanceNotFound):
                s.rest.subscription("g", instance)
            assert s.broker.offsets["g"] == {("t", 0): 1}, "auto-commit on expiry"
            await wait_until(lambda: s.coordinator.describe("g").members == [], what="the member leaving")
            assert s.rest.assignments("g2", kept) == []

    run(scenario)


def test_stop_commits_and_leaves():
    async def scenario():
        s = Setup({"t": 1})
        async with s:
            s.broker.produce("t", 0, b"a")
            instance = s.rest.create("g", InstanceConfig(auto_offset_reset="earliest", auto_commit=True))
            await s.rest.subscribe("g", instance, ["t"])
            await drain(s.rest, "g", instance, 1)
            await s.rest.stop()
            assert s.broker.offsets["g"] == {("t", 0): 1}
            await wait_until(lambda: s.coordinator.describe("g").members == [], what="the member leaving")

    run(scenario)


def test_unsubscribe_leaves_and_allows_assigning():
    async def scenario():
        async with Setup({"t": 2}) as s:
            instance = s.rest.create("g", MANUAL)
            await s.rest.subscribe("g", instance, ["t"])
            await wait_until(lambda: s.rest.assignments("g", instance) != [], what="an assignment")
            with pytest.raises(ConsumerAlreadySubscribed) as info:
                await s.rest.assign("g", instance, [("t", 0)])
            assert info.value.error_code == 40901
            await s.rest.unsubscribe("g", instance)
            assert s.rest.subscription("g", instance) == [] and s.rest.assignments("g", instance) == []
            await wait_until(lambda: s.coordinator.describe("g").members == [], what="the member leaving")
            await s.rest.assign("g", instance, [("t", 1)])
            with pytest.raises(ConsumerAlreadySubscribed):
                await s.rest.subscribe("g", instance, ["t"])

    run(scenario)


def test_a_subscription_the_coordinator_refuses_is_reported_by_records():
    async def scenario():
        async with Setup({"t": 1}, session_timeout_ms=5) as s:  # below the coordinator's minimum
            instance = s.rest.create("g", MANUAL)
            await s.rest.subscribe("g", instance, ["t"])
            with pytest.raises(InvalidRequest, match="session_timeout_ms"):
                await s.rest.records("g", instance, 5000)

    run(scenario)


def test_instances_and_their_errors():
    async def scenario():
        async with Setup({"t": 2}) as s:
            named = s.rest.create("g", InstanceConfig(name="mine"))
            assert named == "mine"  # the name is the id in URLs (Confluent)
            with pytest.raises(ConsumerAlreadyExists) as exists:
                s.rest.create("g", InstanceConfig(name="mine"))
            assert exists.value.error_code == 40902
            assert s.rest.create("other", InstanceConfig(name="mine")) == "mine"  # per group
            with pytest.raises(ConsumerInstanceNotFound):
                s.rest.subscription("nope", named)
            with pytest.raises(ConsumerInstanceNotFound):
                await s.rest.delete("g", "rk1-nope")
            with pytest.raises(InvalidRequest):
                s.rest.create("bad group", InstanceConfig())
            with pytest.raises(TopicNotFound):
                await s.rest.assign("g", named, [("missing", 0)])
            with pytest.raises(PartitionNotFound):
                await s.rest.assign("g", named, [("t", 2)])
            with pytest.raises(InvalidTopicName):
                await s.rest.subscribe("g", named, ["bad topic"])
            with pytest.raises(InvalidRequest):
                await s.rest.subscribe("g", named, [])
            with pytest.raises(TopicNotFound):
                await s.rest.committed_offsets("g", named, [("missing", 0)])
            assert s.rest.config("g", named).format is EmbeddedFormat.BINARY

    run(scenario)


def test_owner_broker_of_generated_ids_only():
    hex32 = "0123456789abcdef" * 2
    assert owner_broker(f"rk12-{hex32}") == 12
    assert owner_broker("rk12-abc") is None  # a name someone chose: its owner is found by asking
    assert owner_broker(f"rk3-rk4-{hex32}") is None
    assert owner_broker("rest-consumer-1") is None
    assert owner_broker("rk-x") is None
    assert owner_broker("rk1") is None


def test_a_topic_pattern_subscription_follows_topics_as_they_come_and_go():
    async def scenario():
        async with Setup({"orders-eu": 1, "orders-us": 1, "audit": 1}) as s:
            s.broker.produce("orders-eu", 0, b"eu")
            s.broker.produce("audit", 0, b"audit")
            instance = s.rest.create("g", InstanceConfig(auto_offset_reset="earliest"))
            await s.rest.subscribe_pattern("g", instance, r"orders-.*")
            assert s.rest.subscription("g", instance) == ["orders-eu", "orders-us"]
            assert [v for *_, v in await drain(s.rest, "g", instance, 1)] == [b"eu"]
            s.broker.topics["orders-asia"] = 1  # created later: the maintenance tick picks it up
            s.broker.produce("orders-asia", 0, b"asia")
            await wait_until(lambda: "orders-asia" in s.rest.subscription("g", instance), what="the new topic")
            assert [v for *_, v in await drain(s.rest, "g", instance, 1)] == [b"asia"]
            with pytest.raises(InvalidRequest, match="regular expression"):
                await s.rest.subscribe_pattern("g", instance, "orders-[")
            with pytest.raises(ConsumerAlreadySubscribed):
                await s.rest.assign("g", instance, [("audit", 0)])

    run(scenario)


def test_fetch_min_bytes_waits_for_that_many_bytes_or_the_timeout():
    async def scenario():
        async with Setup({"t": 1}) as s:
            instance = s.rest.create("g", InstanceConfig(auto_offset_reset="earliest", fetch_min_bytes=6))
            await s.rest.assign("g", instance, [("t", 0)])
            s.broker.produce("t", 0, b"abc")
            loop = asyncio.get_running_loop()
            later = loop.call_later(0.3, s.broker.produce, "t", 0, b"def")
            try:
                started = loop.time()
                got = await poll_values(s.rest, "g", instance, timeout_ms=5000)
            finally:
                later.cancel()
            assert [v for *_, v in got] == [b"abc", b"def"] and loop.time() - started >= 0.3
            s.broker.produce("t", 0, b"g")  # 1 byte: not enough, returned when the timeout ends
            started = loop.time()
            assert [v for *_, v in await poll_values(s.rest, "g", instance, timeout_ms=300)] == [b"g"]
            assert loop.time() - started >= 0.29

    run(scenario)


def test_auto_offset_reset_none_is_an_error_without_a_committed_offset():
    async def scenario():
        async with Setup({"t": 1}) as s:
            s.broker.produce("t", 0, b"0", b"1")
            instance = s.rest.create("g", InstanceConfig(auto_offset_reset="none", auto_commit=False))
            await s.rest.assign("g", instance, [("t", 0)])
            with pytest.raises(NoCommittedOffset) as info:
                await s.rest.records("g", instance, 100)
            assert (info.value.http_status, info.value.error_code) == (409, 40909)
            await s.rest.commit_offsets("g", instance, {("t", 0): 0})  # last consumed 0: start at 1
            assert [v for *_, v in await drain(s.rest, "g", instance, 1)] == [b"1"]
            s.rest.seek("g", instance, {("t", 0): 99})
            with pytest.raises(OffsetOutOfRange):
                await s.rest.records("g", instance, 100)

    run(scenario)


# --- consumer configs -------------------------------------------------------------------


def test_instance_config_defaults_and_values():
    assert parse_instance_config({}) == InstanceConfig(None, EmbeddedFormat.BINARY, "latest", True, 1000, -1)
    assert parse_instance_config(
        {
            "name": "c-1",
            "format": "json",
            "auto.offset.reset": "earliest",
            "auto.commit.enable": "false",
            "consumer.request.timeout.ms": "250",
            "fetch.min.bytes": "1024",
        }
    ) == InstanceConfig("c-1", EmbeddedFormat.JSON, "earliest", False, 250, 1024)
    assert parse_instance_config({"id": "old-style"}).name == "old-style"  # Confluent's older spelling
    assert parse_instance_config({"auto.offset.reset": "none", "fetch.min.bytes": -1}).auto_offset_reset == "none"
    assert parse_instance_config({"auto.commit.enable": True, "name": None}).auto_commit is True
    assert parse_instance_config({"auto.commit.enable": "TRUE"}).auto_commit is True


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ([], "JSON object"),
        ({"isolation.level": "read_committed"}, "Unknown consumer config 'isolation.level'"),
        ({"fetch.min.bytes": -2}, "fetch.min.bytes"),
        ({"fetch.min.bytes": "lots"}, "fetch.min.bytes"),
        ({"name": "rk1-" + "0" * 32}, "form of the ids raftka generates"),
        ({"format": "avro"}, "schema registry"),
        ({"format": "xml"}, "'format'"),
        ({"auto.offset.reset": "smallest"}, "'auto.offset.reset'"),
        ({"auto.commit.enable": "yes"}, "'auto.commit.enable'"),
        ({"auto.commit.enable": 1}, "'auto.commit.enable'"),
        ({"name": "has space"}, "'name'"),
        ({"name": "x" * 65}, "'name'"),
        ({"name": 5}, "'name'"),
        ({"consumer.request.timeout.ms": -1}, "consumer.request.timeout.ms"),
        ({"consumer.request.timeout.ms": 30_001}, "consumer.request.timeout.ms"),
        ({"consumer.request.timeout.ms": "1e3"}, "consumer.request.timeout.ms"),
    ],
)
def test_bad_instance_configs(doc, words):
    with pytest.raises(InvalidConsumerConfig) as info:
        parse_instance_config(doc)
    assert words in info.value.message
    assert (info.value.http_status, info.value.error_code) == (422, 42204)
