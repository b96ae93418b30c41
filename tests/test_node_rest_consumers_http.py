"""HTTP routes of consumer groups (raftka.node.http.routes_groups) on a real aiohttp server: the /groups protocol and
REST Proxy v2 consumer instances, over a real GroupCoordinator and RestConsumers and the stand-in broker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_node_rest_consumers_standin import (
    StandInBroker,
    StandInFacade,
    coordinator_for,
    rest_consumers_for,
    run,
)

from raftka.node.http.routes_groups import add_group_routes

pytestmark = pytest.mark.timeout(60)

BINARY = "application/vnd.kafka.binary.v2+json"
JSON_FORMAT = "application/vnd.kafka.json.v2+json"
KAFKA = "application/vnd.kafka.v2+json"


@contextlib.asynccontextmanager
async def serving(topics: dict[str, int]) -> AsyncIterator[tuple[TestClient, StandInFacade]]:
    broker = StandInBroker(topics)
    coordinator = coordinator_for(broker)
    rest = rest_consumers_for(broker, coordinator)
    facade = StandInFacade(broker, coordinator, rest)
    app = web.Application()
    add_group_routes(app, facade)
    await coordinator.start()
    await rest.start()
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, facade
    finally:
        await client.close()
        await rest.stop()
        await coordinator.stop()


async def call(client: TestClient, method: str, path: str, body=None, *, raw=None, headers=None, expect=200):
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    if data is not None:
        headers = {"Content-Type": KAFKA, **(headers or {})}
    response = await client.request(method, path, data=data, headers=headers)
    text = await response.read()
    assert response.status == expect, (response.status, text)
    return orjson.loads(text) if text else None


# --- raftka group protocol ---------------------------------------------------------------


def test_group_protocol_join_heartbeat_commit_leave():
    async def scenario():
        async with serving({"t": 4}) as (client, facade):
            join = {"topics": ["t"], "session_timeout_ms": 1000, "rebalance_timeout_ms": 1000}
            a, b = await asyncio.gather(
                call(client, "POST", "/groups/g/members", join),
                call(client, "POST", "/groups/g/members", {**join, "client_id": "app"}),
            )
            assert a["generation"] == b["generation"] == 1
            assert b["member_id"].startswith("app-")
            assert sorted((x["topic"], x["partition"]) for x in a["assignment"] + b["assignment"]) == [
                ("t", p) for p in range(4)
            ]
            beat = {"member_id": a["member_id"], "generation": 1}
            assert await call(client, "POST", "/groups/g/heartbeat", beat) == {}
            stale = await call(client, "POST", "/groups/g/heartbeat", {**beat, "generation": 0}, expect=409)
            assert (stale["error_code"], stale["generation"]) == (40905, 1)
            unknown = await call(client, "POST", "/groups/g/heartbeat", {**beat, "member_id": "x"}, expect=404)
            assert unknown["error_code"] == 40403

            offsets = [{"topic": "t", "partition": p["partition"], "offset": 7} for p in a["assignment"]]
            commit = {"member_id": a["member_id"], "generation": 1, "offsets": offsets}
            assert await call(client, "POST", "/groups/g/offsets", commit) == {}
            wrong = await call(client, "POST", "/groups/g/offsets", {**commit, "generation": 5}, expect=409)
            assert wrong["error_code"] == 40905
            anonymous = await call(client, "POST", "/groups/g/offsets", {"offsets": offsets}, expect=409)
            assert "live members" in anonymous["message"]
            committed = await call(client, "GET", "/groups/g/offsets")
            assert committed == {"offsets": sorted(offsets, key=lambda o: o["partition"])}
            assert await call(client, "GET", "/groups/g/offsets?topic=other") == {"offsets": []}

            await call(client, "DELETE", f"/groups/g/members/{b['member_id']}", expect=204)
            rebalancing = await call(client, "POST", "/groups/g/heartbeat", beat, expect=409)
            assert rebalancing["error_code"] == 40906
            again = await call(client, "POST", "/groups/g/members", {**join, "member_id": a["member_id"]})
            assert (again["generation"], len(again["assignment"])) == (2, 4)
            listed = await call(client, "GET", "/groups")
            assert listed == {"groups": [{"group": "g", "state": "Stable", "generation": 2, "members": 1}]}
            await call(client, "DELETE", "/groups/g/members/nobody", expect=404)

    run(scenario)


def test_committed_offsets_only_grow_unless_a_commit_says_reset():
    async def scenario():
        async with serving({"t": 1}) as (client, facade):
            def commit(offset, **extra):
                return {"offsets": [{"topic": "t", "partition": 0, "offset": offset}], **extra}

            async def committed():
                return (await call(client, "GET", "/groups/manual/offsets"))["offsets"][0]["offset"]

            await call(client, "POST", "/groups/manual/offsets", commit(9))
            await call(client, "POST", "/groups/manual/offsets", commit(4))  # late or duplicated: ignored
            assert await committed() == 9
            await call(client, "POST", "/groups/manual/offsets", commit(4, reset=True))  # a seek: moves back
            assert await committed() == 4

    run(scenario)


def test_describe_group_with_lag():
    async def scenario():
        async with serving({"t": 2}) as (client, facade):
            facade.broker.produce("t", 0, *([b"x"] * 10))
            member = await call(client, "POST", "/groups/g/members", {"topics": ["t"]})
            commit = {"member_id": member["member_id"], "generation": 1, "offsets": [{"topic": "t", "partition": 0, "offset": 4}]}
            await call(client, "POST", "/groups/g/offsets", commit)
            described = await call(client, "GET", "/groups/g")
            assert described == {
                "group": "g",
                "state": "Stable",
                "generation": 1,
                "members": [
                    {
                        "member_id": member["member_id"],
                        "topics": ["t"],
                        "assignment": [{"topic": "t", "partition": 0}, {"topic": "t", "partition": 1}],
                    }
                ],
                "offsets": [{"topic": "t", "partition": 0, "offset": 4, "end_offset": 10, "lag": 6}],
            }
            missing = await call(client, "GET", "/groups/nope", expect=404)
            assert missing["error_code"] == 40405
            await facade.broker.commit("offsets-only", {("t", 1): 0}, None, None)
            only = await call(client, "GET", "/groups/offsets-only")
            assert (only["state"], only["generation"], only["members"], only["offsets"][0]["lag"]) == ("Empty", 0, [], 0)

    run(scenario)


@pytest.mark.parametrize(
    ("method", "path", "raw", "content_type", "status", "code", "words"),
    [
        ("POST", "/groups/g/members", b"", None, 422, 42206, "empty"),
        ("POST", "/groups/g/members", b"{nope", None, 422, 42206, "not valid JSON"),
        ("POST", "/groups/g/members", b"[1]", None, 422, 42206, "JSON object"),
        ("POST", "/groups/g/members", b'{"topics":["t"],"sesion_timeout_ms":1}', None, 422, 42206, "sesion_timeout_ms"),
        ("POST", "/groups/g/members", b'{"topics":"t"}', None, 422, 42206, "'topics' must be a list"),
        ("POST", "/groups/g/members", b'{"topics":[]}', None, 422, 42206, "at least one"),
        ("POST", "/groups/g/members", b'{"topics":["a b"]}', None, 422, 42208, "a b"),
        ("POST", "/groups/g/members", b'{"topics":["t"],"member_id":7}', None, 422, 42206, "member_id"),
        ("POST", "/groups/g/members", b'{"topics":["t"],"session_timeout_ms":"9"}', None, 422, 42206, "session"),
        ("POST", "/groups/g/members", b'{"topics":["t"]}', "text/plain", 415, 41501, "text/plain"),
        ("POST", "/groups/bad%20name/members", b'{"topics":["t"]}', None, 422, 42206, "group name"),
        ("POST", "/groups/g/heartbeat", b'{"member_id":"m","generation":"1"}', None, 422, 42206, "'generation'"),
        ("POST", "/groups/g/heartbeat", b'{"member_id":"m"}', None, 422, 42206, "'generation'"),
        ("POST", "/groups/g/offsets", b'{"offsets":[]}', None, 422, 42206, "'offsets' is empty"),
        ("POST", "/groups/g/offsets", b'{"offsets":[{"topic":"t","partition":0}]}', None, 422, 42206, "offset"),
        ("POST", "/groups/g/offsets", b'{"offsets":[{"topic":"t","partition":0,"offset":-1}]}', None, 422, 42206, "offset"),
        ("POST", "/groups/g/offsets", b'{"offsets":[{"topic":"t","partition":9,"offset":1}]}', None, 404, 40402, "9"),
        ("POST", "/groups/g/offsets", b'{"offsets":[{"topic":"u","partition":0,"offset":1}]}', None, 404, 40401, "u"),
        (
            "POST",
            "/groups/g/offsets",
            b'{"offsets":[{"topic":"t","partition":0,"offset":1},{"topic":"t","partition":0,"offset":2}]}',
            None,
            422,
            42206,
            "twice",
        ),
        ("POST", "/groups/g/offsets", b'{"member_id":"m","offsets":[{"topic":"t","partition":0,"offset":1}]}', None, 422, 42206, "together"),
        ("GET", "/groups/g/offsets?topic=a%20b", b"", None, 422, 42208, "a b"),
    ],
)
def test_group_requests_with_bad_input(method, path, raw, content_type, status, code, words):
    async def scenario():
        async with serving({"t": 2}) as (client, facade):
            headers = {"Content-Type": content_type or KAFKA}
            response = await client.request(method, path, data=raw, headers=headers)
            body = orjson.loads(await response.read())
            assert (response.status, body["error_code"]) == (status, code), body
            assert words in body["message"]
            assert facade.broker.commit_log == [] and facade.broker.generation_log == []

    run(scenario)


def test_group_requests_go_to_the_coordinator():
    async def scenario():
        async with serving({"t": 2}) as (client, facade):
            facade.coordinator_elsewhere = True
            assert await call(client, "POST", "/groups/g/members", {"topics": ["t"]}) == {"forwarded_to": 2}
            assert await call(client, "GET", "/groups") == {"forwarded_to": 2}
            assert facade.forwarded == ["/groups/g/members", "/groups"]
            assert facade.coordinator().list_groups() == []

    run(scenario)


# --- REST Proxy v2 consumer instances ------------------------------------------------------


async def poll_until(client: TestClient, path: str, want: int, accept: str = BINARY) -> list[dict]:
    got: list[dict] = []
    for _ in range(100):
        got += await call(client, "GET", f"{path}/records?timeout=50", headers={"Accept": accept})
        if len(got) >= want:
            return got
    raise AssertionError(f"only {len(got)} of {want} records")


def test_rest_consumer_full_flow():
    async def scenario():
        async with serving({"t": 2}) as (client, facade):
            facade.broker.produce("t", 0, b"a", b"b", key=b"k")
            facade.broker.produce("t", 1, b"c")
            created = await call(
                client,
                "POST",
                "/consumers/g",
                {"name": "c1", "format": "binary", "auto.offset.reset": "earliest", "auto.commit.enable": "false"},
            )
            assert created == {  # Confluent: the name is the instance id used in URLs
                "instance_id": "c1",
                "base_uri": f"http://127.0.0.1:{client.port}/consumers/g/instances/c1",
            }
            path = "/consumers/g/instances/c1"
            await call(client, "POST", f"{path}/subscription", {"topics": ["t"]}, expect=204)
            assert await call(client, "GET", f"{path}/subscription") == {"topics": ["t"]}
            records = await poll_until(client, path, 3)
            assert sorted((r["partition"], r["offset"], base64.b64decode(r["value"])) for r in records) == [
                (0, 0, b"a"),
                (0, 1, b"b"),
                (1, 0, b"c"),
            ]
            first = next(r for r in records if r["partition"] == 0 and r["offset"] == 0)
            assert first == {
                "topic": "t",
                "key": base64.b64encode(b"k").decode(),
                "value": base64.b64encode(b"a").decode(),
                "partition": 0,
                "offset": 0,
                "timestamp": 1_700_000_000_000,
                "headers": [{"key": "h", "value": base64.b64encode(b"v").decode()}],
            }
            assert await call(client, "GET", f"{path}/assignments") == {
                "partitions": [{"topic": "t", "partition": 0}, {"topic": "t", "partition": 1}]
            }

            # Confluent v2: commit the offset of the last record consumed; the stored offset is the next one.
            await call(client, "POST", f"{path}/offsets",
                       {"offsets": [{"topic": "t", "partition": 0, "offset": 1, "metadata": "accepted, not kept"}]})
            asked = {"partitions": [{"topic": "t", "partition": 0}, {"topic": "t", "partition": 1}]}
            assert await call(client, "GET", f"{path}/offsets", asked) == {
                "offsets": [{"topic": "t", "partition": 0, "offset": 2, "metadata": ""}]
            }
            await call(client, "POST", f"{path}/offsets")  # no body: all consumed positions
            assert await call(client, "GET", f"{path}/offsets") == {
                "offsets": [
                    {"topic": "t", "partition": 0, "offset": 2, "metadata": ""},
                    {"topic": "t", "partition": 1, "offset": 1, "metadata": ""},
                ]
            }
            assert await call(client, "GET", f"{path}/offsets?topic=t&partition=1") == {
                "offsets": [{"topic": "t", "partition": 1, "offset": 1, "metadata": ""}]
            }

            await call(client, "POST", f"{path}/positions/beginning", {"partitions": [{"topic": "t", "partition": 0}]}, expect=204)
            again = await poll_until(client, path, 2)
            assert [(r["partition"], r["offset"]) for r in again] == [(0, 0), (0, 1)]
            await call(client, "POST", f"{path}/positions", {"offsets": [{"topic": "t", "partition": 0, "offset": 1}]}, expect=204)
            assert [r["offset"] for r in await poll_until(client, path, 1)] == [1]
            await call(client, "POST", f"{path}/positions/end", {"partitions": [{"topic": "t", "partition": 1}]}, expect=204)

            await call(client, "DELETE", f"{path}/subscription", expect=204)
            assert await call(client, "GET", f"{path}/subscription") == {"topics": []}
            await call(client, "POST", f"{path}/assignments", {"partitions": [{"topic": "t", "partition": 1}]}, expect=204)
            conflict = await call(client, "POST", f"{path}/subscription", {"topics": ["t"]}, expect=409)
            assert conflict["error_code"] == 40901
            await call(client, "DELETE", path, expect=204)
            gone = await call(client, "GET", f"{path}/subscription", expect=404)
            assert gone["error_code"] == 40403

    run(scenario)


def test_json_instances_render_json_and_insist_on_their_format():
    async def scenario():
        async with serving({"t": 1}) as (client, facade):
            facade.broker.produce("t", 0, b'{"n": 1}', b"not json")
            created = await call(client, "POST", "/consumers/g", {"format": "json", "auto.offset.reset": "earliest"})
            path = f"/consumers/g/instances/{created['instance_id']}"
            await call(client, "POST", f"{path}/assignments", {"partitions": [{"topic": "t", "partition": 0}]}, expect=204)
            refused = await call(client, "GET", f"{path}/records", headers={"Accept": BINARY}, expect=406)
            assert refused["error_code"] == 40601 and "json format" in refused["message"]
            response = await client.get(f"{path}/records?timeout=500", headers={"Accept": "*/*"})
            assert response.headers["Content-Type"].startswith(JSON_FORMAT)
            records = orjson.loads(await response.read())
            assert [(r["value"], r.get("base64_fields")) for r in records] == [
                ({"n": 1}, None),
                (base64.b64encode(b"not json").decode(), ["value"]),
            ]

    run(scenario)


def test_instance_requests_go_to_the_owning_broker():
    async def scenario():
        async with serving({"t": 1}) as (client, facade):
            path = "/consumers/g/instances/rk2-" + "ab" * 16  # a generated id names its broker
            named = "/consumers/g/instances/elsewhere-c1"  # a name: the stand-in's peer search finds broker 2
            assert await call(client, "GET", f"{path}/records") == {"forwarded_to": 2}
            assert await call(client, "DELETE", path) == {"forwarded_to": 2}
            assert await call(client, "POST", f"{named}/subscription", {"topics": ["t"]}) == {"forwarded_to": 2}
            assert facade.forwarded == [f"{path}/records", path, f"{named}/subscription"]
            assert (await call(client, "GET", "/consumers/g/instances/rest-1/subscription", expect=404))[
                "error_code"
            ] == 40403

    run(scenario)


@pytest.mark.parametrize(
    ("method", "suffix", "raw", "status", "code", "words"),
    [
        ("POST", "", b'{"format":"avro"}', 422, 42204, "schema registry"),
        ("POST", "", b'{"fetch.min.bytes":"x"}', 422, 42204, "fetch.min.bytes"),
        ("POST", "", b'{"name":"taken"}', 409, 40902, "already exists"),
        ("POST", "", b'{"name":"elsewhere-1"}', 409, 40902, "already exists"),
        ("POST", "", b"{", 422, 42206, "not valid JSON"),
        ("POST", "/instances/taken/subscription", b'{"topic_pattern":"t.["}', 422, 42206, "regular expression"),
        ("POST", "/instances/taken/subscription", b'{"topic_pattern":"t.*","topics":["t"]}', 422, 42206, "either"),
        ("POST", "/instances/taken/offsets", b'{"offsets":[{"topic":"t","partition":0,"offset":1,"metadata":5}]}',
         422, 42206, "metadata"),
        ("POST", "/instances/taken/subscription", b'{"topics":[]}', 422, 42206, "at least one"),
        ("POST", "/instances/taken/assignments", b'{"partitions":[{"topic":"t"}]}', 422, 42206, "partition"),
        ("POST", "/instances/taken/assignments", b'{"partitions":[{"topic":"x","partition":0}]}', 404, 40401, "x"),
        ("GET", "/instances/taken/records?timeout=soon", b"", 422, 42206, "timeout"),
        ("GET", "/instances/taken/records?max_bytes=0", b"", 422, 42206, "max_bytes"),
        ("GET", "/instances/taken/records?timeout=30001", b"", 422, 42206, "timeout"),
        ("POST", "/instances/taken/positions", b'{"offsets":[{"topic":"t","partition":0,"offset":1}]}', 422, 42206, "not assigned"),
        ("POST", "/instances/taken/offsets", b'{"offsets":[{"topic":"t","partition":0,"offset":-2}]}', 422, 42206, "offset"),
        ("GET", "/instances/taken/offsets?topic=t&partition=x", b"", 422, 42206, "partition"),
        ("GET", "/instances/nope/assignments", b"", 404, 40403, "nope"),
    ],
)
def test_instance_requests_with_bad_input(method, suffix, raw, status, code, words):
    async def scenario():
        async with serving({"t": 1}) as (client, facade):
            await call(client, "POST", "/consumers/g", {"name": "taken"})
            response = await client.request(method, f"/consumers/g{suffix}", data=raw, headers={"Content-Type": KAFKA})
            body = orjson.loads(await response.read())
            assert (response.status, body["error_code"]) == (status, code), body
            assert words in body["message"]

    run(scenario)
