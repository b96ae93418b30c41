"""The broker's OpenAPI document, and fuzzing a real 3-broker cluster from it.

* every route the app registers is in /openapi.json (and nothing else is);
* schemathesis generates valid and invalid requests for every operation of the
  served document, steered half the time towards resources that exist (a
  topic, its partitions, a group, consumer instances on two brokers), and
  every answer must be a 2xx/3xx/4xx or a *retriable* 5xx (503 50301/50302,
  500 50003), every error a JSON ``{"error_code": int, "message": str}`` with
  ``error_code // 100 == status``, every answer tagged ``X-Raftka-Broker``;
* targeted malformed inputs (those test_broker_api.py does not cover);
* all brokers are still healthy afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from cluster import request, retry
from raftka.client.devcluster import LocalCluster
from raftka.node.http.openapi import openapi_spec

BINARY = "application/vnd.kafka.binary.v2+json"
BATCH = "application/vnd.raftka.batch"
RETRIABLE_5XX = {(503, 50301), (503, 50302), (500, 50003)}
# stop generating after this long (bounded run on 2 shared cores); RAFTKA_FUZZ_SECONDS=600 for a long hunt
FUZZ_SECONDS = float(os.environ.get("RAFTKA_FUZZ_SECONDS", "12"))
FUZZ_EXAMPLES = 2000


class FuzzTimeUp(BaseException):
    """Raised inside the Hypothesis test when the fuzzing time is spent."""


@schemathesis.serializer(BATCH)
def _batch_serializer(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(3, tmp_path_factory.mktemp("fuzz"), election_timeout_ms=300).start()
    yield c
    c.close()


@pytest.fixture(scope="module")
def world(cluster):
    """Resources the fuzzer is steered towards: topic 'fz' (2 partitions, some records), group 'fzg', instances."""
    urls = cluster.bootstrap
    assert retry(lambda: request(urls[0] + "/topics", "POST", {"name": "fz", "partitions": 2})).status == 201
    records = [{"value": base64.b64encode(b"r%d" % i).decode(), "partition": i % 2} for i in range(6)]
    assert retry(lambda: request(urls[1] + "/topics/fz", "POST", {"records": records},
                                 content_type=BINARY)).status == 200
    instances = []
    for url in urls[:2]:
        resp = request(url + "/consumers/fzg", "POST", {"format": "binary", "auto.offset.reset": "earliest"},
                       content_type="application/vnd.kafka.v2+json")
        assert resp.status == 200, resp.body
        instances.append(resp.json()["instance_id"])
    return {"topic": "fz", "group": "fzg", "instances": instances}


def metadata_leader_url(cluster) -> str:
    doc = retry(lambda: request(cluster.bootstrap[0] + "/health")).json()
    return cluster.url(doc["metadata_leader"])


def assert_well_formed(status: int, headers, body: bytes, what: str) -> None:
    assert "x-raftka-broker" in {name.lower() for name in headers.keys()}, f"{what}: no X-Raftka-Broker header"
    if status >= 500:
        doc = json.loads(body)
        assert (status, doc.get("error_code")) in RETRIABLE_5XX, f"{what}: non-retriable {status}: {body[:500]!r}"
    if status >= 400:
        try:
            doc = json.loads(body)
        except ValueError:
            raise AssertionError(f"{what}: {status} with a non-JSON body {body[:300]!r}") from None
        assert type(doc) is dict and type(doc.get("error_code")) is int and type(doc.get("message")) is str, \
            f"{what}: bad error document {doc!r}"
        assert doc["error_code"] // 100 == status, f"{what}: error_code {doc['error_code']} with status {status}"
        assert doc["message"], what


# ------------------------------------------------------------------ the spec

def registered_routes(tmp_path) -> set[tuple[str, str]]:
    from raftka.node.cluster.broker import Broker
    from raftka.node.config import load_config
    from raftka.node.http.app import create_app
    from raftka.node.http.broker_groups import HttpGroups
    from raftka.node.services import BrokerServices

    services = BrokerServices.of(Broker(load_config(["--id", "1", "--data-dir", str(tmp_path / "b1")])))
    app = create_app(services, HttpGroups(services))
    # aiohttp adds a HEAD twin to every GET route; the spec lists the GETs. Every route also answers with a trailing
    # slash (as the REST Proxy does); the spec lists each once, without it.
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    return {(m, p) for m, p in routes if not (p.endswith("/") and (m, p[:-1]) in routes)}


def spec_operations(spec: dict) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return {(m.upper(), path) for path, item in spec["paths"].items() for m in item if m in methods}


def test_every_registered_route_is_in_the_spec_and_nothing_else(tmp_path):
    routes = registered_routes(tmp_path)
    documented = spec_operations(openapi_spec())
    assert routes - documented == set(), "routes missing from node/http/openapi.py"
    assert {(m, p) for m, p in documented - routes if (m, p[:-1]) not in routes} == set(), \
        "node/http/openapi.py documents routes the app does not have"


def test_served_spec_is_the_module_spec_and_loads(cluster):
    resp = request(cluster.bootstrap[1] + "/openapi.json")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == openapi_spec()
    schema = schemathesis.openapi.from_dict(resp.json())
    assert len(list(schema.get_all_operations())) == len(spec_operations(resp.json()))


# ------------------------------------------------------- targeted bad inputs

KAFKA = "application/vnd.kafka.v2+json"
JSONT = "application/json"
BIG = str(2**64)


@pytest.mark.parametrize("method,path,body,ctype,status,code", [
    # malformed JSON / wrong shapes, on every kind of body
    ("POST", "/topics/fz", b'{"records": [', BINARY, 422, 42206),
    ("POST", "/topics/fz/partitions/0", b"[]", BINARY, 422, 42206),
    ("POST", "/groups/fzg/members", b"{nope", JSONT, 422, 42206),
    ("POST", "/groups/fzg/offsets", b'"offsets"', JSONT, 422, 42206),
    ("POST", "/consumers/fzg", b"{", KAFKA, 422, 42206),
    ("PUT", "/topics/fz/configs", b'{"configs": 5}', JSONT, 422, 42206),
    ("POST", "/topics/fz/partitions", b"null", JSONT, 422, 42206),
    ("POST", "/topics", b'{"name": "x", "bogus": 1}', JSONT, 422, 42206),
    ("POST", "/topics/fz", b'{"records": [{"vaule": "eA=="}]}', BINARY, 422, 42206),
    ("POST", "/topics/fz/partitions/0", b'{"records": [{"value": "eA=="}], "producer_id": 1}', BINARY, 422, 42206),
    # wrong content types
    ("POST", "/groups/fzg/members", b'{"topics": ["fz"]}', "text/plain", 415, 41501),
    ("POST", "/topics/fz/partitions/0", b'{"records": [{"value": "eA=="}]}', "application/xml", 415, 41501),
    ("POST", "/topics/fz/partitions/0/batch", b'{"records": []}', JSONT, 422, 42206),
    ("GET", "/topics/fz/partitions/0/records?offset=0", None, "text/csv", 406, 40601),
    # bad base64 (key, header value) and out-of-range JSON integers
    ("POST", "/topics/fz/partitions/1", b'{"records": [{"key": "!!", "value": null}]}', BINARY, 422, 42207),
    ("POST", "/topics/fz", b'{"records": [{"value": "eA==", "headers": [{"key": "h", "value": "%%%"}]}]}',
     BINARY, 422, 42207),
    ("POST", "/topics/fz", ('{"records": [{"value": {"n": %s}}]}' % BIG).encode(), JSONT, 422, 42206),
    # unknown topic / partition / group / member / instance
    ("POST", "/topics/nosuch", b'{"records": [{"value": "eA=="}]}', BINARY, 404, 40401),
    ("POST", "/topics/fz/partitions/7", b'{"records": [{"value": "eA=="}]}', BINARY, 404, 40402),
    ("GET", "/topics/fz/partitions/2/offsets", None, None, 404, 40402),
    ("POST", "/topics/fz", b'{"records": [{"value": "eA==", "partition": 9}]}', BINARY, 422, 42206),
    ("GET", "/groups/no-such-group", None, None, 404, 40405),
    ("POST", "/groups/fzg/heartbeat", b'{"member_id": "ghost", "generation": 1}', JSONT, 404, 40403),
    ("DELETE", "/groups/fzg/members/ghost", None, None, 404, 40403),
    ("GET", "/consumers/fzg/instances/rk1-ghost/records", None, None, 404, 40403),
    ("GET", "/consumers/fzg/instances/rk2-ghost/assignments", None, None, 404, 40403),  # forwarded to broker 2
    ("DELETE", "/consumers/fzg/instances/not-ours", None, None, 404, 40403),
    ("POST", "/consumers/fzg/instances/rk99-x/positions/end", b'{"partitions": [{"topic": "fz", "partition": 0}]}',
     KAFKA, 404, 40403),
    ("POST", "/groups/fzg/offsets", b'{"offsets": [{"topic": "nosuch", "partition": 0, "offset": 1}]}',
     JSONT, 404, 40401),
    ("POST", "/groups/fzg/offsets", b'{"offsets": [{"topic": "fz", "partition": 5, "offset": 1}]}',
     JSONT, 404, 40402),
    # negative and huge offsets / partitions / limits
    ("GET", f"/topics/fz/partitions/0/records?offset={2**63}", None, None, 422, 42206),
    ("GET", "/topics/fz/partitions/0/records?offset=1e3", None, None, 422, 42206),
    ("GET", "/topics/fz/partitions/0/records?offset=0&max_bytes=0", None, None, 422, 42206),
    ("GET", "/topics/fz/partitions/0/records?offset=0&timeout_ms=30001", None, None, 422, 42206),
    ("GET", "/topics/fz/partitions/-1", None, None, 422, 42206),
    ("GET", "/topics/fz/partitions/99999999999/records?offset=0", None, None, 422, 42206),
    ("POST", "/groups/fzg/offsets", b'{"offsets": [{"topic": "fz", "partition": 0, "offset": -1}]}',
     JSONT, 422, 42206),
    ("POST", "/groups/fzg/offsets", ('{"offsets": [{"topic": "fz", "partition": 0, "offset": %s}]}' % 2**63).encode(),
     JSONT, 422, 42206),
    ("POST", "/groups/fzg/offsets", b'{"offsets": [{"topic": "fz", "partition": -2, "offset": 0}]}',
     JSONT, 422, 42206),
    ("POST", "/topics/fz/partitions/0?timeout_ms=0", b'{"records": [{"value": "eA=="}]}', BINARY, 422, 42206),
    ("POST", "/topics/fz/partitions/0", b'{"records": [{"value": "eA==", "timestamp": -5}]}', BINARY, 422, 42206),
    ("POST", "/topics/fz/partitions", b'{"count": 1}', JSONT, 422, 42209),
    ("POST", "/groups/fzg/members", b'{"topics": ["fz"], "session_timeout_ms": 10}', JSONT, 422, 42206),
    # invalid topic and group names
    ("POST", "/topics", b'{"name": ""}', JSONT, 422, 42208),
    ("POST", "/topics", b'{"name": ".."}', JSONT, 422, 42208),
    ("POST", "/topics", ('{"name": "%s"}' % ("t" * 250)).encode(), JSONT, 422, 42208),
    ("POST", "/topics", b'{"name": 7}', JSONT, 422, 42208),
    ("POST", "/groups/fzg/members", b'{"topics": ["no/slash"]}', JSONT, 422, 42208),
    ("GET", "/groups/bad%20name", None, None, 422, 42206),
    ("POST", "/consumers/bad%21group", b"{}", KAFKA, 422, 42206),
    # replication factor: not a positive integer, or more than the brokers
    ("POST", "/topics", b'{"name": "rf2", "replication_factor": "2"}', JSONT, 422, 42210),
    ("POST", "/topics", b'{"name": "rf0", "replication_factor": 0}', JSONT, 422, 42210),
    ("POST", "/topics", b'{"name": "rf5", "replication_factor": 5, "partitions": 1}', JSONT, 422, 42210),
    ("POST", "/topics", b'{"name": "cf", "configs": {"retention.ms": "soon"}}', JSONT, 422, 42211),
    # consumer instance configs and methods
    ("POST", "/consumers/fzg", b'{"format": "avro"}', KAFKA, 422, 42204),
    ("POST", "/consumers/fzg", b'{"auto.offset.reset": "middle"}', KAFKA, 422, 42204),
    ("PATCH", "/topics/fz", b"{}", JSONT, 422, 42206),
    ("PATCH", "/topics/fz", b'{"replication_factor": 4}', JSONT, 422, 42210),
    ("POST", "/topics/fz/partitions/0/reassignment", b'{"replicas": [1, 1]}', JSONT, 422, 42221),
    ("POST", "/topics/fz/partitions/0/reassignment", b'{"replicas": [7]}', JSONT, 422, 42221),
    ("DELETE", "/topics/fz/partitions/0/reassignment", None, JSONT, 404, 40411),
    ("POST", "/brokers/1/decommission", None, JSONT, 409, 40922),
    ("POST", "/brokers/9/decommission", None, JSONT, 404, 40406),
    ("POST", "/brokers/2/recommission", None, JSONT, 422, 42206),
    ("POST", "/brokers", b'{"id": 4}', JSONT, 422, 42206),
])
def test_targeted_bad_input(cluster, world, method, path, body, ctype, status, code):
    leader = metadata_leader_url(cluster)
    follower = next(u for u in cluster.bootstrap if u != leader)
    for url in (leader, follower):  # served locally, and through a broker that forwards
        headers_ctype = ctype if body is not None else None
        if method == "GET" and ctype is not None:
            resp = retry(lambda: request(url + path, accept=ctype))
        else:
            resp = retry(lambda: request(url + path, method, raw=body, content_type=headers_ctype or JSONT))
        assert resp.status == status, (url, resp.body)
        assert_well_formed(resp.status, resp.headers, resp.body, f"{method} {path}")
        assert resp.json()["error_code"] == code, resp.body


@pytest.mark.parametrize("path,ctype", [
    ("/topics/fz/partitions/0", BINARY),
    ("/topics/fz/partitions/0/batch", BATCH),
    ("/groups/fzg/offsets", JSONT),
    ("/consumers/fzg", KAFKA),
])
def test_oversize_bodies_everywhere(cluster, world, path, ctype):
    for url in cluster.bootstrap[:2]:
        resp = request(url + path, "POST", raw=b"{" + b" " * (17 << 20) + b"}", content_type=ctype)
        assert resp.status == 413, resp.body
        assert resp.json()["error_code"] == 41301
        assert request(url + "/health").status == 200


def test_record_over_max_message_bytes_is_refused(cluster, world):
    url = cluster.bootstrap[0]
    assert retry(lambda: request(url + "/topics", "POST", {"name": "tiny", "partitions": 1,
                                                         "configs": {"max.message.bytes": "2000"}})).status == 201
    big = base64.b64encode(b"x" * 5000).decode()
    resp = retry(lambda: request(url + "/topics/tiny/partitions/0", "POST", {"records": [{"value": big}]},
                                 content_type=BINARY))
    assert resp.status == 413 and resp.json()["error_code"] == 41302, resp.body
    resp = retry(lambda: request(url + "/topics/tiny", "POST", {"records": [{"value": big}]}, content_type=BINARY))
    assert resp.status == 413, resp.body
    assert resp.json()["error_code"] == 41302 and resp.json()["offsets"][0]["error_code"] == 41302, resp.body


# ------------------------------------------------------------------ fuzzing (last: it changes the world)

def bounded_spec(spec: dict) -> dict:
    """The served spec with resource bounds for fuzzing on 2 cores (few partitions, short waits)."""
    def tighten(schema: dict, name: str, high: int) -> None:
        schema["properties"][name]["maximum"] = high

    create = spec["paths"]["/topics"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    tighten(create, "partitions", 3)
    tighten(create, "partitions_count", 3)
    grow = spec["paths"]["/topics/{topic}/partitions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    tighten(grow, "count", 4)
    tighten(grow, "partitions", 4)
    # A decommission that succeeds (after the fuzzer lowered a replication factor) retires a broker of the
    # cluster under test for good; its refusals are checked in test_targeted_bad_input.
    del spec["paths"]["/brokers/{broker}/decommission"]["post"]
    return spec


def steer(case, world, pick) -> None:
    """Point the case at existing resources (when `pick` says so) and keep its waits short."""
    params = case.path_parameters or {}
    destructive = case.method == "DELETE"
    if pick["resources"] and not destructive:
        if "topic" in params:
            params["topic"] = world["topic"]
        if "partition" in params:
            params["partition"] = pick["partition"]
        if "group" in params:
            params["group"] = world["group"]
        if "instance" in params:
            params["instance"] = pick["instance"]
    query = case.query if isinstance(case.query, dict) else None
    if query:
        for name in ("timeout_ms", "timeout"):
            if isinstance(query.get(name), int) and query[name] > 300:
                query[name] = 300
    body = case.body if isinstance(case.body, dict) else None
    if body is not None:
        for name, high in (("partitions", 3), ("partitions_count", 3), ("count", 4)):
            if isinstance(body.get(name), int) and body[name] > high:
                body[name] = high
        if case.path == "/groups/{group}/members" and not isinstance(body.get("rebalance_timeout_ms"), int) \
                or isinstance(body.get("rebalance_timeout_ms"), int) and body["rebalance_timeout_ms"] > 200:
            # A join waits for the initial delay (3 s, capped by the rebalance timeout) or for the members
            # that stopped heartbeating to be dropped at the rebalance timeout (default 30 s).
            body["rebalance_timeout_ms"] = 200
        if case.path == "/consumers/{group}" and isinstance(body.get("consumer.request.timeout.ms"), int):
            body["consumer.request.timeout.ms"] = min(body["consumer.request.timeout.ms"], 300)


def test_fuzz_the_api_from_its_openapi_document(cluster, world):
    leader = metadata_leader_url(cluster)
    schema = schemathesis.openapi.from_dict(bounded_spec(request(leader + "/openapi.json").json()))
    cases = st.one_of(schema.as_strategy(schemathesis.GenerationMode.POSITIVE),
                      schema.as_strategy(schemathesis.GenerationMode.NEGATIVE))
    picks = st.fixed_dictionaries({
        "resources": st.booleans(),
        "partition": st.sampled_from([0, 1, 2]),
        "instance": st.sampled_from(world["instances"]),
        "follower": st.integers(0, 4),
    })
    followers = [u for u in cluster.bootstrap if u != leader]
    session = requests.Session()
    deadline = time.monotonic() + FUZZ_SECONDS
    seen: dict[str, int] = {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=cases, pick=picks)
    def run(case, pick):
        if time.monotonic() > deadline:
            raise FuzzTimeUp  # a BaseException: Hypothesis stops generating at once
        steer(case, world, pick)
        # Followers wait up to 1 s for an unknown topic to reach their metadata replica: send them steered cases.
        base = followers[pick["follower"] % len(followers)] if pick["resources"] and pick["follower"] < 2 else leader
        try:
            resp = case.call(base_url=base, session=session, timeout=40)
        except requests.exceptions.InvalidHeader:  # a generated header requests itself refuses to send
            return
        what = f"{case.method} {case.formatted_path} query={case.query!r} body={str(case.body)[:300]}"
        assert_well_formed(resp.status_code, resp.headers, resp.content, what)
        if resp.status_code < 300:  # the document describes what the broker answers
            case.validate_response(resp, checks=[response_schema_conformance, content_type_conformance])
        key = f"{resp.status_code // 100}xx"
        seen[key] = seen.get(key, 0) + 1

    try:
        run()
    except FuzzTimeUp:
        pass
    print("fuzz outcomes:", seen)
    assert seen.get("2xx", 0) > 10 and seen.get("4xx", 0) > 50, seen  # steering reaches real resources
    for url in cluster.bootstrap:
        assert request(url + "/health").status == 200
