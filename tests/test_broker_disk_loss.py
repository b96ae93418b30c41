"""Disk loss against real 3-broker clusters: a broker that comes back with an empty data directory is a
new incarnation — it never votes or acknowledges as the replica it was, it is noticed at once (even in an
idle group), registered, swapped in for its lost replicas as a learner, and caught up; no acknowledged
record is lost and no offset is reused (issue 11's repro: pause, wipe, kill, resume)."""

from __future__ import annotations

import re
import shutil
import time
import urllib.error

import pytest

from cluster import request, retry, wait_until
from test_broker_faults import BINARY, b64, caught_up, fetch_values, raft_group, wait_for_the_leader_to_see

pytestmark = pytest.mark.timeout(120)

TOPIC = "disk-loss"


def produce(url: str, values: list[bytes], timeout: float = 5.0):
    body = {"records": [{"value": b64(v)} for v in values]}
    try:
        return request(f"{url}/topics/{TOPIC}/partitions/0?timeout_ms={int(timeout * 1000)}", "POST", body,
                       content_type=BINARY, timeout=timeout + 5)
    except (urllib.error.URLError, OSError):
        return None


def produce_acked(cluster, values: list[bytes]) -> list[tuple[int, bytes]]:
    """Produce until acknowledged through any broker; returns the acknowledged (offset, value) pairs."""
    deadline = time.monotonic() + 30
    while True:
        for broker in list(cluster.procs):
            resp = produce(cluster.url(broker), values)
            if resp is not None and resp.status == 200:
                return list(zip([o["offset"] for o in resp.json()["offsets"]], values))
        assert time.monotonic() < deadline, "no broker acknowledged the batch"
        time.sleep(0.2)


def partition_group_of(cluster, broker: int) -> dict:
    groups = request(cluster.url(broker) + "/raft").json()["groups"]
    return next(g for g in groups if g.get("partition") == f"{TOPIC}/0")


def wipe(cluster, broker: int) -> None:
    shutil.rmtree(cluster.root / f"broker-{broker}")


def new_incarnation_of(cluster, broker: int) -> int:
    log = (cluster.root / f"broker-{broker}.log").read_text()
    found = re.findall(r"joining as a new incarnation ([0-9a-f]{8})", log)
    assert found, f"broker {broker} did not say it joins as a new incarnation:\n{log[-2000:]}"
    return int(found[-1], 16)


def test_pause_wipe_kill_resume_loses_nothing_and_reuses_no_offset(cluster_factory):
    cluster = cluster_factory(3)
    cluster.create_topic(TOPIC, 1, 3)
    a = cluster.leader_of(TOPIC, 0)
    b, c = [x for x in cluster.ids if x != a]
    cluster.pause(c)  # SIGSTOP C: A and B acknowledge on their own
    acked = []
    for i in range(20):
        acked += produce_acked(cluster, [b"before-%03d-%d" % (i, j) for j in range(10)])
    cluster.kill(b)
    wipe(cluster, b)
    cluster.kill(a)
    cluster.resume(c)
    cluster.start_broker(b)  # same id, empty data dir
    # Only C (stale) and the new B are up: nothing may be acknowledged, since an acknowledgement
    # now could only come from a leader that lacks A's and B's records, at reused offsets.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        for broker in (b, c):
            resp = produce(cluster.url(broker), [b"during"], timeout=1.0)
            assert resp is None or resp.status != 200, f"broker {broker} acknowledged {resp.body!r} without A"
            if time.monotonic() < deadline - 4:
                continue  # what C heard from A before its pause reaches it now: allow it an election timeout
            try:
                health = request(cluster.url(broker) + "/health", timeout=2)
            except (urllib.error.URLError, OSError):
                continue
            assert health.status == 503 or health.json()["status"] != "ok", health.body  # says it cannot serve
        time.sleep(0.2)
    assert new_incarnation_of(cluster, b) != 0
    cluster.start_broker(a)  # a replica with the data returns: the full log is served again
    cluster.wait_healthy(30, [a, c])
    acked += produce_acked(cluster, [b"after-%d" % j for j in range(10)])
    leader = cluster.leader_of(TOPIC, 0, timeout=20)
    records = fetch_values(cluster.url(leader), TOPIC)
    offsets = [o for o, _ in records]
    assert offsets == list(range(len(records))), "offsets are not dense"
    stored = dict(records)
    lost = [(o, v) for o, v in acked if stored.get(o) != v]
    assert not lost, f"{len(lost)} acknowledged records lost or overwritten, e.g. {lost[:3]}"
    # The new incarnation of B is swapped in for the lost replica and catches up.
    new_replica = new_incarnation_of(cluster, b) << 31 | b

    def b_is_a_caught_up_voter(group: dict) -> bool:
        replicas = {r for r in group["voters"] if r % (1 << 31) == b}
        return replicas == {new_replica} and caught_up(group, new_replica)

    wait_for_the_leader_to_see(cluster, partition_group_of(cluster, leader)["group"], b_is_a_caught_up_voter, 40,
                               f"broker {b}'s new incarnation to be a caught-up voter")
    wait_until(lambda: request(cluster.url(b) + "/health").json()["status"] == "ok", 20,
               f"broker {b} to report itself healthy once it replaced its lost replicas")


def test_replace_disk_answers_clearly_when_there_is_nothing_to_replace(cluster_factory):
    cluster = cluster_factory(3)
    for broker in cluster.ids:  # any broker forwards it to the metadata leader
        missing = request(cluster.url(broker) + "/brokers/9/replace", "POST")
        assert (missing.status, missing.json()["error_code"]) == (404, 40406), missing.body
        # (right after start the metadata leader may not have heard broker 2 announce itself yet)
        current = wait_until(lambda: (r := request(cluster.url(broker) + "/brokers/2/replace", "POST")) and
                             "has not announced" not in r.body.decode() and r, 10, "broker 2's announcement")
        assert (current.status, current.json()["error_code"]) == (422, 42206), current.body
        assert "already runs at its registered incarnation" in current.json()["message"]


def test_an_idle_wiped_follower_is_noticed_replaced_and_never_answers_an_empty_topic_list(cluster_factory):
    cluster = cluster_factory(3)
    cluster.create_topic(TOPIC, 1, 3)
    acked = produce_acked(cluster, [b"idle-%d" % i for i in range(20)])
    group = partition_group_of(cluster, cluster.leader_of(TOPIC, 0))["group"]
    idle = wait_for_the_leader_to_see(cluster, group, lambda g: g["quiesced"], 20, "the partition group to go idle")
    leader = idle["id"] % (1 << 31)
    victim = next(x for x in cluster.ids if x != leader)
    cluster.kill(victim)
    wipe(cluster, victim)
    cluster.start_broker(victim)
    started = time.monotonic()
    answers = []
    while time.monotonic() - started < 30:
        try:
            resp = request(cluster.url(victim) + "/topics", timeout=2)
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
            continue
        answers.append(resp.status)
        if resp.status == 200:
            assert TOPIC in resp.json(), f"the wiped broker answered {resp.json()} for the topic list"
            break
        time.sleep(0.05)
    assert 200 in answers, f"the wiped broker never answered the topic list: {answers[-5:]}"
    # The leader saw the follower's broker come back as somebody else, without any write to the group.
    leader_log = (cluster.root / f"broker-{leader}.log").read_text()
    assert re.search(rf"broker {victim} now announces incarnation", leader_log), leader_log[-2000:]
    incarnation = new_incarnation_of(cluster, victim)
    new_replica = incarnation << 31 | victim

    def replaced(g: dict) -> bool:
        return new_replica in g["voters"] and victim not in g["voters"] and caught_up(g, new_replica)

    theirs = wait_for_the_leader_to_see(cluster, group, replaced, 40, "the wiped replica to be replaced and caught up")
    wait_until(lambda: raft_group(cluster, victim, group)["applied_index"] >= theirs["commit_index"], 10,
               "the new replica to apply everything")
    assert fetch_values(cluster.url(victim), TOPIC)[:len(acked)] == acked  # served via the leader, complete
    health = retry(lambda: request(cluster.url(victim) + "/health"))
    assert health.status == 200, health.body
