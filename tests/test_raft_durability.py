"""Raft durability and visibility with real broker processes: power loss of every broker at
once, and a follower that stops replicating showing up in /raft."""

import base64
import os
import time

from cluster import request, retry
from raftka.storage.powerloss import apply_ledger

BINARY = "application/vnd.kafka.binary.v2+json"


def produce_acked(url, topic, values):
    acked = []
    for v in values:
        resp = retry(lambda: request(f"{url}/topics/{topic}/partitions/0", "POST",
                                     {"records": [{"value": base64.b64encode(v).decode()}]}, content_type=BINARY))
        if resp.status == 200:
            acked.append((resp.json()["offsets"][0]["offset"], v))
    return acked


def fetch_values(url, topic):
    resp = retry(lambda: request(f"{url}/topics/{topic}/partitions/0/records?offset=0&max_bytes=10000000",
                                 accept=BINARY), timeout=60)
    assert resp.status == 200, resp.body
    return [(r["offset"], base64.b64decode(r["value"])) for r in resp.json()]


def test_power_loss_of_every_broker_keeps_acknowledged_writes(cluster_factory, tmp_path):
    ledger = tmp_path / "fsync.ledger"
    c = cluster_factory(3, env={"RAFTKA_FSYNC_LEDGER": str(ledger)})
    url = c.bootstrap[0]
    assert c.create_topic("durable", partitions=1, replication_factor=3)["name"] == "durable"
    acked = produce_acked(url, "durable", [b"v%d" % i for i in range(60)])
    assert len(acked) == 60
    for broker in list(c.procs):
        c.kill(broker)  # all at once: nothing gets flushed on the way down
    for broker in c.ids:  # the page cache is lost: only fsynced bytes remain in the data dirs
        apply_ledger(str(ledger), str(c.root / f"broker-{broker}"))
    os.remove(ledger)
    for broker in c.ids:
        c.start_broker(broker)
    c.wait_healthy(60)
    got = dict(fetch_values(c.bootstrap[1], "durable"))
    missing = [(o, v) for o, v in acked if got.get(o) != v]
    assert not missing, f"acknowledged records lost after power loss: {missing[:5]}"


def test_a_follower_that_stops_replicating_shows_in_raft_status(cluster_factory):
    c = cluster_factory(3)
    c.create_topic("stall", partitions=1, replication_factor=3)
    leader = c.leader_of("stall", 0)
    follower = next(b for b in c.ids if b != leader)
    healthy_id = next(b for b in c.ids if b not in (leader, follower))
    c.pause(follower)  # SIGSTOP: the follower silently stops acknowledging
    try:
        assert len(produce_acked(c.url(leader), "stall", [b"x%d" % i for i in range(20)])) == 20
        deadline = time.monotonic() + 30
        while True:  # /raft shows the stalled follower lagging and silent, the healthy one caught up
            groups = request(c.url(leader) + "/raft").json()["groups"]
            status = next(g for g in groups if g["group"] != "__metadata" and g["role"] == "leader")
            lagging, healthy = status["followers"][str(follower)], status["followers"][str(healthy_id)]
            silent_ms = lagging["last_contact_ms"]
            if lagging["lag"] >= 20 and (silent_ms is None or silent_ms >= 800) and healthy["lag"] == 0:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
    finally:
        c.resume(follower)


def test_five_replica_group_survives_two_leader_kills_and_catches_up(cluster_factory):
    c = cluster_factory(5)
    c.create_topic("five", partitions=1, replication_factor=5)
    acked = produce_acked(c.bootstrap[0], "five", [b"a%d" % i for i in range(20)])
    killed = []
    for round_ in range(2):  # kill -9 the leader twice: 3 of 5 replicas remain, still a majority
        leader = c.leader_of("five", 0)
        c.kill(leader)
        killed.append(leader)
        survivor = next(b for b in c.ids if b not in killed)
        acked += produce_acked(c.url(survivor), "five", [b"r%d-%d" % (round_, i) for i in range(20)])
    assert len(acked) == 60
    survivor = next(b for b in c.ids if b not in killed)
    assert fetch_values(c.url(survivor), "five") == sorted(acked)
    for broker in killed:
        c.start_broker(broker)
    c.wait_healthy(60, killed)
    leader = c.leader_of("five", 0)
    deadline = time.monotonic() + 30
    while True:  # the restarted replicas catch up: the leader sees no lag
        groups = request(c.url(leader) + "/raft").json()["groups"]
        status = next(g for g in groups if g.get("partition") == "five/0")
        if all(f["lag"] == 0 for f in status["followers"].values()) and len(status["followers"]) == 4:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
