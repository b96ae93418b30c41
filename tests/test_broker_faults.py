"""Broker faults against real 3-broker clusters: kill -9 under idempotent produce load, forwarding,
graceful shutdown with leadership hand-over, restart from disk, and refusals to start."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from cluster import Response, request, retry, wait_until

pytestmark = pytest.mark.timeout(90)

BINARY = "application/vnd.kafka.binary.v2+json"
RETRIABLE = {(503, 50301), (503, 50302), (500, 50003)}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def partition_group(cluster, broker: int, topic: str) -> str:
    """The Raft group name of `topic`'s partition 0 (as /raft shows it)."""
    topic_id = None
    deadline = time.monotonic() + 10
    while topic_id is None:
        groups = request(cluster.url(broker) + "/raft").json()["groups"]
        names = [g["group"] for g in groups if g["group"] != "__metadata"]
        if names:
            topic_id = names[0]
        assert time.monotonic() < deadline, "no partition group on broker %d" % broker
        time.sleep(0.05)
    return topic_id


def raft_group(cluster, broker: int, group: str) -> dict | None:
    try:
        groups = request(cluster.url(broker) + "/raft", timeout=3).json()["groups"]
    except (urllib.error.URLError, OSError):
        return None
    return next((g for g in groups if g["group"] == group), None)


def group_at_its_leader(cluster, group: str) -> dict | None:
    """The group as the broker that leads it now reports it: leadership may move during a test
    (a loaded machine can stall the leader past an election timeout), so no test waits on one broker's view."""
    for broker in list(cluster.procs):
        doc = raft_group(cluster, broker, group)
        if doc is not None and doc["role"] == "leader":
            return doc
    return None


def wait_for_the_leader_to_see(cluster, group: str, predicate, timeout: float, what: str) -> dict:
    """Poll the group at its current leader until predicate(doc) holds; the timeout names the last doc seen."""
    seen = []

    def holds():
        doc = group_at_its_leader(cluster, group)
        seen[:] = [doc]
        return doc if doc is not None and predicate(doc) else None

    try:
        return wait_until(holds, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the group at its leader last: {seen[0] if seen else None}") from None


def caught_up(group: dict, replica: int) -> bool:
    """Does the group's leader (its doc) have everything on `replica` (which may be the leader itself)?"""
    follower = group["followers"].get(str(replica))
    return group["id"] == replica or (follower is not None and follower["lag"] == 0)


def fetch_values(url: str, topic: str, partition: int = 0) -> list[tuple[int, bytes]]:
    """(offset, value) of every committed record, read from `url` (the leader, or forwarded to it)."""
    out, offset = [], 0
    while True:
        resp = retry(lambda: request(f"{url}/topics/{topic}/partitions/{partition}/records?offset={offset}"
                                     f"&max_bytes=1048576", accept=BINARY))
        assert resp.status == 200, resp.body
        batch = resp.json()
        out += [(r["offset"], base64.b64decode(r["value"])) for r in batch]
        if int(resp.headers["X-Raftka-High-Watermark"]) <= offset + len(batch) or not batch:
            return out
        offset = batch[-1]["offset"] + 1


class IdempotentProducer(threading.Thread):
    """Produces numbered records in batches with producer_id/epoch/base_sequence; a batch is retried with
    the SAME sequence on 503, 500 50003 and connection errors, through whichever broker answers."""

    BATCH = 5

    def __init__(self, cluster, topic: str):
        super().__init__(daemon=True)
        self.cluster, self.topic = cluster, topic
        self.producer_id = retry(lambda: request(cluster.bootstrap[0] + "/producers", "POST", {})).json()["producer_id"]
        self.stop = threading.Event()
        self.acked: list[tuple[int, bytes]] = []  # (offset, value) as acknowledged
        self.ack_times: list[float] = []
        self.errors: list[str] = []
        self.max_stall = 0.0

    def run(self) -> None:
        sequence, broker = 0, 0
        while not self.stop.is_set():
            values = [b"rec-%06d" % (sequence + i) for i in range(self.BATCH)]
            body = {"records": [{"value": b64(v)} for v in values], "producer_id": self.producer_id,
                    "producer_epoch": 0, "base_sequence": sequence}
            started = time.monotonic()
            while True:
                url = self.cluster.bootstrap[broker % len(self.cluster.bootstrap)]
                try:
                    resp = request(f"{url}/topics/{self.topic}/partitions/0?timeout_ms=3000", "POST", body,
                                   content_type=BINARY, timeout=10)
                except (urllib.error.URLError, OSError):
                    broker += 1
                    time.sleep(0.05)
                    continue
                if resp.status == 200:
                    break
                code = (resp.json() or {}).get("error_code")
                if (resp.status, code) not in RETRIABLE:
                    self.errors.append(f"{resp.status} {resp.body[:300]!r}")
                    return
                broker += 1
                time.sleep(0.05)
                if time.monotonic() - started > 30:
                    self.errors.append("batch not acknowledged within 30 s")
                    return
            self.max_stall = max(self.max_stall, time.monotonic() - started)
            offsets = [o["offset"] for o in resp.json()["offsets"]]
            self.acked += list(zip(offsets, values))
            self.ack_times.append(time.monotonic())
            sequence += self.BATCH


def test_kill_9_partition_leader_under_idempotent_load(cluster_factory):
    cluster = cluster_factory(3)
    assert retry(lambda: request(cluster.bootstrap[0] + "/topics", "POST",
                                 {"name": "load", "partitions": 1, "replication_factor": 3})).status == 201
    producer = IdempotentProducer(cluster, "load")
    producer.start()
    try:
        wait_until(lambda: len(producer.acked) >= 100 or producer.errors, 20, "100 acknowledged records")
        victim = cluster.leader_of("load", 0)
        group = partition_group(cluster, victim, "load")
        cluster.kill(victim)
        killed_at = time.monotonic()
        wait_until(lambda: any(t > killed_at for t in producer.ack_times) or producer.errors, 15,
                   "produce to resume after the leader was killed")
        resumed_after = min(t for t in producer.ack_times if t > killed_at) - killed_at
        assert resumed_after < 8, f"producers stalled {resumed_after:.1f} s"
        cluster.start_broker(victim)
        cluster.wait_healthy(20, [victim])
        acked_before = len(producer.acked)
        wait_until(lambda: len(producer.acked) >= acked_before + 50 or producer.errors, 15, "more produce")
    finally:
        producer.stop.set()
        producer.join(40)
    assert not producer.errors, producer.errors
    assert not producer.is_alive()

    leader = cluster.leader_of("load", 0)
    stored = fetch_values(cluster.url(leader), "load")
    values = [v for _, v in stored]
    assert len(values) == len(set(values)), "a retried batch was written twice"
    assert [o for o, _ in stored] == list(range(len(stored)))
    assert values == [b"rec-%06d" % i for i in range(len(values))], "records out of order or missing"
    assert dict(stored).items() >= dict(producer.acked).items(), "an acknowledged record is missing or moved"
    assert len(stored) == len(producer.acked)  # the producer stopped after an acknowledgement

    # The restarted broker catches up: the leader (whichever broker leads now) sees it with lag 0, and its commit
    # index matches.
    def victim_caught_up(lead: dict) -> bool:
        mine = raft_group(cluster, victim, group)
        return caught_up(lead, victim) and mine is not None and mine["commit_index"] == lead["commit_index"]

    wait_for_the_leader_to_see(cluster, group, victim_caught_up, 20, f"broker {victim} to catch up on {group}")


def test_a_produce_sent_to_a_survivor_right_after_the_leader_died_waits_for_the_election(cluster_factory):
    """The survivor does not forward into the dead leader's refused connection (a 503 that sent clients into
    their retry backoff, the larger part of a failover): the dead broker's Raft link is down at once, so the
    request waits for the election and is served by the new leader."""
    cluster = cluster_factory(3)
    urls = cluster.bootstrap
    assert retry(lambda: request(urls[0] + "/topics", "POST", {"name": "fo", "partitions": 1})).status == 201
    victim = cluster.leader_of("fo", 0)
    survivor = next(b for b in cluster.ids if b != victim)
    path = "/topics/fo/partitions/0"
    assert retry(lambda: request(cluster.url(survivor) + path, "POST", {"records": [{"value": b64(b"before")}]},
                                 content_type=BINARY)).status == 200
    cluster.kill(victim)
    time.sleep(0.2)  # the survivors' links to it close as its process exits
    started = time.monotonic()
    resp = request(cluster.url(survivor) + path, "POST", {"records": [{"value": b64(b"after")}]},
                   content_type=BINARY)
    assert resp.status == 200, resp.body
    assert resp.headers["X-Raftka-Broker"] != str(victim)
    assert time.monotonic() - started < 5


def test_forwarding_from_a_non_leader_names_the_leader(cluster_factory):
    cluster = cluster_factory(3)
    urls = cluster.bootstrap
    assert retry(lambda: request(urls[0] + "/topics", "POST", {"name": "fwd", "partitions": 1})).status == 201
    leader = cluster.leader_of("fwd", 0)
    other = next(b for b in cluster.ids if b != leader)
    via = cluster.url(other)

    resp = retry(lambda: request(via + "/topics/fwd/partitions/0", "POST", {"records": [{"value": b64(b"x")}]},
                                 content_type=BINARY))
    assert resp.status == 200 and resp.headers["X-Raftka-Broker"] == str(leader), resp.body
    resp = retry(lambda: request(via + "/topics/fwd", "POST", {"records": [{"value": b64(b"y")}]},
                                 content_type=BINARY))
    assert resp.status == 200, resp.body
    resp = retry(lambda: request(via + "/topics/fwd/partitions/0/records?offset=0", accept=BINARY))
    assert resp.status == 200 and resp.headers["X-Raftka-Broker"] == str(leader)
    assert [base64.b64decode(r["value"]) for r in resp.json()] == [b"x", b"y"]
    resp = retry(lambda: request(via + "/topics/fwd/partitions/0/offsets"))
    assert resp.json() == {"beginning_offset": 0, "end_offset": 2} and resp.headers["X-Raftka-Broker"] == str(leader)

    # Metadata writes go to the metadata leader, whichever broker is asked.
    meta = retry(lambda: request(urls[0] + "/health")).json()["metadata_leader"]
    follower = next(b for b in cluster.ids if b != meta)
    resp = retry(lambda: request(cluster.url(follower) + "/producers", "POST", {}))
    assert resp.status == 200 and resp.headers["X-Raftka-Broker"] == str(meta)

    # An already forwarded request is not forwarded again: NotLeader with the leader's address.
    forwarded = request_with_headers(via + "/topics/fwd/partitions/0/records?offset=0",
                                     {"X-Raftka-Forwarded": "2", "Accept": BINARY})
    assert forwarded.status == 503, forwarded.body
    doc = forwarded.json()
    assert doc["error_code"] == 50301 and doc["leader_id"] == leader and doc["leader_url"] == cluster.url(leader)
    assert forwarded.headers["X-Raftka-Broker"] == str(other)


def request_with_headers(url: str, headers: dict) -> Response:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Response(resp.status, resp.read(), resp.headers)
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(), exc.headers)


def test_sigterm_hands_leadership_over_and_restart_resumes_from_disk(cluster_factory):
    cluster = cluster_factory(3)
    urls = cluster.bootstrap
    assert retry(lambda: request(urls[0] + "/topics", "POST", {"name": "durable", "partitions": 1})).status == 201
    for i in range(4):
        records = [{"value": b64(b"d-%d-%d" % (i, j))} for j in range(25)]
        assert retry(lambda: request(urls[i % 3] + "/topics/durable/partitions/0", "POST", {"records": records},
                                     content_type=BINARY)).status == 200
    before = fetch_values(urls[0], "durable")
    assert len(before) == 100

    leader = cluster.leader_of("durable", 0)
    group = partition_group(cluster, leader, "durable")
    term = raft_group(cluster, leader, group)["term"]
    assert cluster.stop_broker(leader) == 0  # SIGTERM: clean exit
    # Handed over before exiting: right away a remaining broker leads, in a later term (after a kill -9
    # the others would still wait out the election timeout).
    states = [raft_group(cluster, b, group) for b in cluster.ids if b != leader]
    leaders = [s for s in states if s and s["role"] == "leader" and s["term"] > term]
    assert leaders, f"no leader right after SIGTERM of broker {leader}: {states}"
    assert retry(lambda: request(urls[(leader % 3)] + "/topics/durable/partitions/0", "POST",
                                 {"records": [{"value": b64(b"after")}]}, content_type=BINARY)).status == 200

    cluster.start_broker(leader)
    cluster.wait_healthy(20, [leader])
    # Whole cluster down gracefully and back: everything comes from disk.
    for broker in cluster.ids:
        assert cluster.stop_broker(broker) == 0
    cluster.start(timeout=30)
    assert retry(lambda: request(urls[1] + "/topics/durable"), retry_on=(404, 503)).status == 200
    after = fetch_values(urls[2], "durable")
    assert after == before + [(100, b"after")]


def run_broker(command: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKA_")}
    return subprocess.run(command, env={**environ, **(env or {})}, capture_output=True, text=True, timeout=30)


def replace_arg(command: list[str], flag: str, value: str | None) -> list[str]:
    out = list(command)
    i = out.index(flag)
    if value is None:
        del out[i:i + 2]
    else:
        out[i + 1] = value
    return out


def test_refuses_another_brokers_data_dir_and_a_missing_secret(cluster_factory):
    cluster = cluster_factory(3)
    cluster.stop_broker(2)
    other_dir = cluster.root / "broker-1"
    identity = (other_dir / "broker.json").read_bytes()
    result = run_broker(replace_arg(cluster.command(2), "--data-dir", str(other_dir)))
    assert result.returncode == 2, result
    assert "belongs to broker 1, not broker 2" in result.stderr, result.stderr
    assert (other_dir / "broker.json").read_bytes() == identity

    result = run_broker(replace_arg(cluster.command(2), "--cluster-secret-file", None))
    assert result.returncode == 2, result
    assert "cluster secret is required" in result.stderr, result.stderr

    # Its own directory (and the secret) still work: nothing was damaged by the refusals.
    cluster.start_broker(2)
    cluster.wait_healthy(20, [2])
