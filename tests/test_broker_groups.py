"""Consumer groups over HTTP against a real 3-broker cluster: the raftka group protocol (/groups) with
members on different brokers, session expiry, fenced and grow-only commits; and the REST Proxy v2
consumer instance flow (/consumers), including an instance used through another broker.

The coordinator waits 3 s (Kafka's initial rebalance delay) before the first generation of a group.
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.error

import pytest

from cluster import request, retry

pytestmark = pytest.mark.timeout(90)

BINARY = "application/vnd.kafka.binary.v2+json"
KAFKA = "application/vnd.kafka.v2+json"
SESSION_MS = 6000  # the coordinator's minimum


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from raftka.client.devcluster import LocalCluster

    c = LocalCluster(3, tmp_path_factory.mktemp("groups"), election_timeout_ms=300).start()
    yield c
    c.close()


def create_topic(cluster, name: str, partitions: int, records: int = 0) -> None:
    url = cluster.bootstrap[0]
    assert retry(lambda: request(url + "/topics", "POST", {"name": name, "partitions": partitions})).status == 201
    for i in range(records):
        body = {"records": [{"value": b64(b"%s-%d" % (name.encode(), i)), "partition": i % partitions}]}
        assert retry(lambda: request(url + f"/topics/{name}", "POST", body, content_type=BINARY)).status == 200


def wait_until(predicate, timeout: float, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.05)


class Member(threading.Thread):
    """One group member speaking the raftka group protocol through one broker: join (long poll), heartbeat
    every 0.5 s, rejoin when told to. `silence()` makes it stop talking without leaving (a hung process)."""

    def __init__(self, url: str, group: str, topics: list[str]):
        super().__init__(daemon=True)
        self.url, self.group, self.topics = url, group, topics
        self.member_id: str | None = None
        self.generation: int | None = None
        self.assignment: list[int] | None = None
        self.silent = threading.Event()
        self.stopped = threading.Event()
        self.errors: list[str] = []

    def silence(self) -> None:
        self.silent.set()

    def run(self) -> None:
        joined = False
        while not self.stopped.is_set() and not self.silent.is_set():
            try:
                if not joined:
                    joined = self._join()
                else:
                    joined = self._heartbeat()
                    time.sleep(0.5)
            except (urllib.error.URLError, OSError) as exc:
                self.errors.append(repr(exc))
                time.sleep(0.2)

    def _join(self) -> bool:
        body = {"topics": self.topics, "session_timeout_ms": SESSION_MS, "rebalance_timeout_ms": 10_000}
        if self.member_id is not None:
            body["member_id"] = self.member_id
        self.generation = None
        resp = request(f"{self.url}/groups/{self.group}/members", "POST", body, timeout=60)
        if self.silent.is_set():
            return False
        if resp.status == 200:
            doc = resp.json()
            self.member_id, self.assignment = doc["member_id"], sorted(a["partition"] for a in doc["assignment"])
            self.generation = doc["generation"]
            return True
        if resp.status == 404:
            self.member_id = None
        elif resp.status not in (409, 503):
            self.errors.append(f"join: {resp.status} {resp.body!r}")
        time.sleep(0.1)
        return False

    def _heartbeat(self) -> bool:
        resp = request(f"{self.url}/groups/{self.group}/heartbeat", "POST",
                       {"member_id": self.member_id, "generation": self.generation})
        if resp.status == 200:
            return True
        if resp.status == 404:
            self.member_id = None
            return False
        if resp.status == 409:
            return False  # 40906 rebalancing / 40905 stale: rejoin with the member id
        if resp.status != 503:
            self.errors.append(f"heartbeat: {resp.status} {resp.body!r}")
        return True

    def leave(self) -> None:
        self.stopped.set()
        self.join(10)
        if self.member_id is not None:
            request(f"{self.url}/groups/{self.group}/members/{self.member_id}", "DELETE")


def settled(members: list[Member]) -> int | None:
    """The common generation when every member holds an assignment of the same generation."""
    generations = {m.generation for m in members}
    if len(generations) == 1 and None not in generations and all(m.assignment is not None for m in members):
        return generations.pop()
    return None


def commit(url: str, group: str, offsets: dict[int, int], topic: str, member: Member | None = None,
           generation: int | None = None, reset: bool | None = None):
    body = {"offsets": [{"topic": topic, "partition": p, "offset": o} for p, o in offsets.items()]}
    if reset is not None:
        body["reset"] = reset
    if member is not None:
        body.update(member_id=member.member_id, generation=member.generation if generation is None else generation)
    return retry(lambda: request(f"{url}/groups/{group}/offsets", "POST", body))


def committed(url: str, group: str, topic: str) -> dict[int, int]:
    resp = retry(lambda: request(f"{url}/groups/{group}/offsets?topic={topic}"))
    assert resp.status == 200, resp.body
    return {o["partition"]: o["offset"] for o in resp.json()["offsets"]}


def test_group_members_idle_member_session_expiry_and_fenced_commits(cluster):
    urls = cluster.bootstrap
    create_topic(cluster, "gt", 2, records=6)
    members = [Member(url, "g1", ["gt"]) for url in urls]  # one member per broker: joins are forwarded
    for m in members:
        m.start()
    try:
        generation = wait_until(lambda: settled(members), 20,
                                lambda: [(m.generation, m.assignment, m.errors) for m in members])
        assignments = sorted((m.assignment for m in members), key=len)
        assert assignments[0] == [] and sorted(assignments[1] + assignments[2]) == [0, 1], assignments
        doc = retry(lambda: request(urls[2] + "/groups/g1")).json()
        assert doc["state"] == "Stable" and doc["generation"] == generation and len(doc["members"]) == 3

        owner = next(m for m in members if m.assignment == [0])
        other = next(m for m in members if m.assignment == [1])
        assert commit(urls[1], "g1", {0: 3}, "gt", owner).status == 200
        assert committed(urls[0], "g1", "gt") == {0: 3}
        # Grow-only: a late commit of a smaller offset does not move the group back.
        assert commit(urls[0], "g1", {0: 1}, "gt", owner).status == 200
        assert committed(urls[2], "g1", "gt") == {0: 3}
        # ... unless the commit says reset (an explicit commit after a seek); then it may.
        assert commit(urls[1], "g1", {0: 2}, "gt", owner, reset=True).status == 200
        assert committed(urls[0], "g1", "gt") == {0: 2}
        resp = commit(urls[1], "g1", {0: 2}, "gt", owner, reset="yes")
        assert resp.status == 422 and resp.json()["error_code"] == 42206
        assert commit(urls[1], "g1", {0: 3}, "gt", owner).status == 200
        # Without member and generation while the group has live members: refused.
        resp = commit(urls[0], "g1", {1: 1}, "gt")
        assert resp.status == 409 and resp.json()["error_code"] == 40905, resp.body
        assert commit(urls[2], "g1", {1: 2}, "gt", other).status == 200

        # The owner of partition 0 hangs: after its session times out, partition 0 moves.
        owner.silence()
        hung_at = time.monotonic()
        live = [m for m in members if m is not owner]
        moved = wait_until(lambda: (g := settled(live)) is not None and g > generation and g, 20,
                           lambda: [(m.generation, m.assignment, m.errors) for m in live])
        took = time.monotonic() - hung_at
        assert sorted(live[0].assignment + live[1].assignment) == [0, 1]
        assert SESSION_MS / 1000 - 1 < took < SESSION_MS / 1000 + 8, took
        doc = retry(lambda: request(urls[0] + "/groups/g1")).json()
        assert doc["generation"] == moved and owner.member_id not in {m["member_id"] for m in doc["members"]}

        # Stale generation from a live member: 409 40905; the evicted member is not in the group any more.
        resp = commit(urls[1], "g1", {0: 5}, "gt", live[0], generation=generation)
        assert resp.status == 409 and resp.json()["error_code"] == 40905, resp.body
        resp = commit(urls[1], "g1", {0: 5}, "gt", owner, generation=generation)
        assert resp.status in (404, 409) and resp.json()["error_code"] in (40403, 40905), resp.body
        assert committed(urls[1], "g1", "gt") == {0: 3, 1: 2}
        new_owner = next(m for m in live if 0 in m.assignment)
        assert commit(urls[2], "g1", {0: 6}, "gt", new_owner).status == 200
        assert committed(urls[0], "g1", "gt") == {0: 6, 1: 2}
        assert all(not m.errors for m in members), [m.errors for m in members]
    finally:
        for m in members:
            m.leave()


# ------------------------------------------------------------- REST Proxy v2 instances

def kafka_request(url: str, method: str = "GET", body=None, **kwargs):
    """What `curl -H 'Content-Type: application/vnd.kafka.v2+json'` sends."""
    return request(url, method, body, content_type=KAFKA, **kwargs)


def poll_until(base: str, count: int, timeout: float = 20) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        resp = request(base + "/records?timeout=1000", accept=BINARY)
        assert resp.status == 200, resp.body
        assert resp.headers["X-Raftka-Broker"] == "1"  # served by the owner, whoever was asked
        got += resp.json()
        assert time.monotonic() < deadline, got
    return got


def test_rest_proxy_consumer_instance_flow_across_brokers(cluster):
    urls = cluster.bootstrap
    create_topic(cluster, "rp", 2, records=10)
    resp = kafka_request(urls[0] + "/consumers/rpg", "POST", {"name": "c1", "format": "binary",
                                                              "auto.offset.reset": "earliest",
                                                              "auto.commit.enable": "false"})
    assert resp.status == 200, resp.body
    instance = resp.json()["instance_id"]
    assert instance == "c1" and resp.json()["base_uri"] == f"{urls[0]}/consumers/rpg/instances/c1"  # name = id
    base = f"{urls[1]}/consumers/rpg/instances/{instance}"  # broker 2 finds the owner (broker 1) and forwards
    taken = kafka_request(urls[2] + "/consumers/rpg", "POST", {"name": "c1"})
    assert taken.status == 409 and taken.json()["error_code"] == 40902  # unique in the group, cluster-wide

    assert kafka_request(base + "/subscription", "POST", {"topics": ["rp"]}).status == 204
    resp = request(base + "/subscription")
    assert resp.json() == {"topics": ["rp"]} and resp.headers["X-Raftka-Broker"] == "1"

    records = poll_until(base, 10)  # empty until the group's first generation (3 s initial delay)
    by_partition: dict[int, list[int]] = {}
    for r in records:
        by_partition.setdefault(r["partition"], []).append(r["offset"])
    assert by_partition == {0: [0, 1, 2, 3, 4], 1: [0, 1, 2, 3, 4]}
    assert sorted(base64.b64decode(r["value"]) for r in records) == sorted(b"rp-%d" % i for i in range(10))
    assert request(base + "/records?timeout=200", accept=BINARY).json() == []

    # Commit the last consumed offsets (stored + 1, the next to read), read them back two ways.
    last = [{"topic": "rp", "partition": p, "offset": max(offs), "metadata": "v2 clients may send this"}
            for p, offs in by_partition.items()]
    assert kafka_request(base + "/offsets", "POST", {"offsets": last}).status == 200
    resp = request(base + "/offsets?topic=rp")
    assert resp.status == 200, resp.body
    assert sorted((o["partition"], o["offset"]) for o in resp.json()["offsets"]) == [(0, 5), (1, 5)]
    assert committed(urls[2], "rpg", "rp") == {0: 5, 1: 5}
    doc = retry(lambda: request(urls[2] + "/groups/rpg")).json()
    assert [m["member_id"].startswith("c1") for m in doc["members"]] == [True]
    assert {(o["partition"], o["lag"]) for o in doc["offsets"]} == {(0, 0), (1, 0)}

    # Rewind partition 0 to the beginning and partition 1 to offset 3.
    assert kafka_request(base + "/positions/beginning/", "POST",  # a trailing slash is fine too
                         {"partitions": [{"topic": "rp", "partition": 0}]}).status == 204
    assert kafka_request(f"{urls[2]}/consumers/rpg/instances/{instance}/positions/", "POST",
                         {"offsets": [{"topic": "rp", "partition": 1, "offset": 3}]}).status == 204
    again = poll_until(base, 7)
    assert sorted((r["partition"], r["offset"]) for r in again) == [(0, i) for i in range(5)] + [(1, 3), (1, 4)]
    assert kafka_request(base + "/positions/end", "POST",
                         {"partitions": [{"topic": "rp", "partition": 0}, {"topic": "rp", "partition": 1}]}
                         ).status == 204
    assert request(base + "/records?timeout=200", accept=BINARY).json() == []

    # An instance rejects an Accept header of another format; unknown instances are 404 everywhere.
    resp = request(base + "/records?timeout=0", accept="application/vnd.kafka.json.v2+json")
    assert resp.status == 406 and resp.json()["error_code"] == 40601

    assert request(base, "DELETE").status == 204
    for url in urls:
        resp = request(f"{url}/consumers/rpg/instances/{instance}/records", accept=BINARY)
        assert resp.status == 404 and resp.json()["error_code"] == 40403, resp.body
    # Leaving made the group empty: committed offsets stay, and can now be set without a member.
    wait_until(lambda: retry(lambda: request(urls[0] + "/groups/rpg")).json()["members"] == [], 10, "empty group")
    assert committed(urls[0], "rpg", "rp") == {0: 5, 1: 5}


def test_rest_proxy_manual_assignment_and_json_format(cluster):
    urls = cluster.bootstrap
    create_topic(cluster, "ma", 1)
    body = {"records": [{"value": {"n": i}} for i in range(3)]}
    assert retry(lambda: request(urls[0] + "/topics/ma", "POST", body,
                                 content_type="application/vnd.kafka.json.v2+json")).status == 200
    resp = kafka_request(urls[2] + "/consumers/mag", "POST", {"format": "json", "auto.offset.reset": "earliest"})
    instance = resp.json()["instance_id"]
    assert instance.startswith("rk3-")
    base = f"{urls[0]}/consumers/mag/instances/{instance}"
    assert kafka_request(base + "/assignments", "POST", {"partitions": [{"topic": "ma", "partition": 0}]}).status == 204
    assert request(base + "/assignments").json() == {"partitions": [{"topic": "ma", "partition": 0}]}
    resp = kafka_request(base + "/subscription", "POST", {"topics": ["ma"]})
    assert resp.status == 409 and resp.json()["error_code"] == 40901
    resp = request(base + "/records?timeout=2000", accept="application/vnd.kafka.json.v2+json")
    assert resp.status == 200 and [r["value"] for r in resp.json()] == [{"n": 0}, {"n": 1}, {"n": 2}]
    # Manual assignment commits without a member (the group has none); empty body = current positions.
    assert request(base + "/offsets", "POST", raw=b"", content_type=KAFKA).status == 200
    assert committed(urls[1], "mag", "ma") == {0: 3}
    assert request(base, "DELETE").status == 204


def test_a_resumed_deposed_coordinator_never_serves_stale_committed_offsets(cluster_factory):
    """Regression (found by the jepsen-style pause run): a paused metadata leader, once resumed,
    answered list-committed from its stale metadata while another broker already led."""
    c = cluster_factory(3)
    c.create_topic("t", partitions=1)
    url = c.bootstrap[0]

    def commit(broker_url, offset):
        resp = retry(lambda: request(broker_url + "/groups/g/offsets", "POST",
                                     {"offsets": [{"topic": "t", "partition": 0, "offset": offset}]}))
        assert resp.status == 200, resp.body

    commit(url, 5)
    old = request(url + "/health").json()["metadata_leader"]
    c.pause(old)
    others = [b for b in c.ids if b != old]
    deadline = time.monotonic() + 20
    while True:
        leaders = {request(c.url(b) + "/health").json().get("metadata_leader") for b in others}
        if len(leaders) == 1 and old not in leaders and None not in leaders:
            break
        assert time.monotonic() < deadline, "no new metadata leader"
        time.sleep(0.1)
    commit(c.url(others[0]), 10)
    c.resume(old)
    resp = retry(lambda: request(c.url(old) + "/groups/g/offsets"))
    assert resp.status == 200, resp.body
    assert resp.json()["offsets"] == [{"topic": "t", "partition": 0, "offset": 10}]


def test_rest_proxy_v2_requests_shaped_as_confluent_documents_them(cluster):
    """Issue 12 item 9: what Confluent's REST Proxy v2 accepts, sent through different brokers."""
    urls = cluster.bootstrap
    create_topic(cluster, "v2-orders", 1)
    create_topic(cluster, "v2-other", 1)
    produce = {"key_schema": None, "value_schema": None, "key_schema_id": None, "value_schema_id": None,
               "records": [{"key": "k", "value": {"total": 12}}]}
    resp = retry(lambda: request(urls[0] + "/topics/v2-orders/", "POST", produce,  # trailing slash too
                                 content_type="application/vnd.kafka.json.v2+json"))
    assert resp.status == 200, resp.body

    config = {"name": "v2c", "format": "json", "auto.offset.reset": "earliest", "auto.commit.enable": "false",
              "fetch.min.bytes": "1", "consumer.request.timeout.ms": "5000"}
    resp = kafka_request(urls[2] + "/consumers/v2g", "POST", config)
    assert resp.status == 200, resp.body
    base = "/consumers/v2g/instances/v2c"
    assert kafka_request(urls[0] + base + "/subscription", "POST", {"topic_pattern": "v2-ord.*"}).status == 204
    assert request(urls[1] + base + "/subscription").json() == {"topics": ["v2-orders"]}
    got = []
    deadline = time.monotonic() + 20
    while not got:
        resp = request(urls[1] + base + "/records", accept="application/vnd.kafka.json.v2+json")
        assert resp.status == 200, resp.body
        got = resp.json()
        assert time.monotonic() < deadline
    assert [(r["topic"], r["key"], r["value"]) for r in got] == [("v2-orders", "k", {"total": 12})]
    assert request(urls[0] + base, "DELETE").status == 204

    resp = kafka_request(urls[0] + "/consumers/v2none", "POST", {"name": "strict", "auto.offset.reset": "none"})
    assert resp.status == 200, resp.body
    strict = urls[1] + "/consumers/v2none/instances/strict"
    assert kafka_request(strict + "/assignments", "POST",
                         {"partitions": [{"topic": "v2-other", "partition": 0}]}).status == 204
    resp = request(strict + "/records?timeout=100", accept=BINARY)
    assert resp.status == 409 and resp.json()["error_code"] == 40909, resp.body
    assert request(strict, "DELETE").status == 204
