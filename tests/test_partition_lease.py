"""Leader leases of partition groups with real broker processes: a partition leader cut off
from its followers refuses fetches once its lease has lapsed, and a paused leader that was
deposed meanwhile never serves a stale read when it resumes (the metadata group's equivalent
is in test_broker_groups.py)."""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse

import pytest

from cluster import request, retry

pytestmark = pytest.mark.timeout(180)

BINARY = "application/vnd.kafka.binary.v2+json"
ELECTION_TIMEOUT_S = 0.3  # cluster_factory's election timeout; the lease is shorter


def produce(url: str, topic: str, values: list[bytes]) -> int:
    """Produce values one by one (acknowledged, retried while leadership moves); the end offset."""
    end = 0
    for v in values:
        resp = retry(lambda: request(f"{url}/topics/{topic}/partitions/0", "POST",
                                     {"records": [{"value": base64.b64encode(v).decode()}]}, content_type=BINARY),
                     timeout=60, retry_on=(503, 500))
        assert resp.status == 200, resp.body
        end = resp.json()["offsets"][0]["offset"] + 1
    return end


def fetch_path(topic: str) -> str:
    return f"/topics/{topic}/partitions/0/records?offset=0&max_bytes=1000000"


def partition_leader(c, topic: str, brokers: list[int], not_broker: int | None = None, timeout: float = 30) -> int:
    """The partition's leader as the given brokers report it (other than `not_broker`)."""
    deadline = time.monotonic() + timeout
    while True:
        for b in brokers:
            doc = request(c.url(b) + f"/topics/{topic}/partitions/0", timeout=5).json() or {}
            if doc.get("leader") not in (None, not_broker) and doc.get("high_watermark") is not None:
                return doc["leader"]
        assert time.monotonic() < deadline, f"no leader for {topic}/0 among {brokers}"
        time.sleep(0.05)


def test_a_partition_leader_cut_off_from_its_followers_refuses_fetches_once_its_lease_lapses(cluster_factory):
    c = cluster_factory(3)
    c.create_topic("cut", partitions=1, replication_factor=3)
    end = produce(c.bootstrap[0], "cut", [b"a%d" % i for i in range(5)])
    leader = c.leader_of("cut", 0)
    followers = [b for b in c.ids if b != leader]
    served = request(c.url(leader) + fetch_path("cut"), accept=BINARY)
    assert served.status == 200 and served.headers["X-Raftka-Broker"] == str(leader), served.body
    try:
        for b in followers:
            c.pause(b)  # SIGSTOP: from now on nobody acknowledges the leader
        # The last acknowledgement left a follower before its SIGSTOP, so the lease (shorter than an
        # election timeout, counted by the leader's monotonic clock) is over after this, whatever the load.
        time.sleep(2 * ELECTION_TIMEOUT_S)
        for path in (fetch_path("cut"), "/topics/cut/partitions/0/offsets"):
            resp = request(c.url(leader) + path, accept=BINARY)
            assert resp.status == 503 and resp.json()["error_code"] == 50301, \
                f"a leader without a lease answered {path}: {resp.status} {resp.body[:200]!r}"
    finally:
        for b in followers:
            c.resume(b)
    resp = retry(lambda: request(c.bootstrap[0] + fetch_path("cut"), accept=BINARY), timeout=60)
    assert resp.status == 200 and len(resp.json()) == end, resp.body


def test_a_resumed_deposed_partition_leader_never_serves_a_stale_read(cluster_factory):
    c = cluster_factory(3)
    c.create_topic("stale", partitions=1, replication_factor=3)
    produce(c.bootstrap[0], "stale", [b"old%d" % i for i in range(5)])
    old = c.leader_of("stale", 0)
    others = [b for b in c.ids if b != old]
    c.pause(old)
    try:
        new = partition_leader(c, "stale", others, not_broker=old)
        end = produce(c.url(new), "stale", [b"new%d" % i for i in range(5)])
        # Requests reach the paused broker's socket before it runs again: they are the first
        # thing it may answer, before its clock has caught up with the pause.
        host, port = urllib.parse.urlsplit(c.url(old)).netloc.split(":")
        pending = []
        for path in (fetch_path("stale"), "/topics/stale/partitions/0/offsets"):
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("GET", path, headers={"Accept": BINARY})
            pending.append((path, conn))
    finally:
        c.resume(old)
    for path, conn in pending:
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if resp.status == 503:
            continue  # refused: retriable, never stale
        assert resp.status == 200, (path, resp.status, body[:200])
        doc = json.loads(body)
        if "records" in path:
            assert int(resp.getheader("X-Raftka-High-Watermark")) >= end and len(doc) == end, \
                f"stale read from the resumed deposed leader: {len(doc)} records of {end} ({resp.getheaders()})"
        else:
            assert doc["end_offset"] >= end, f"stale end offset from the resumed deposed leader: {doc} < {end}"
