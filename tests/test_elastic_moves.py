"""Replica moves (real broker processes): a reassignment throttled by --reassignment-max-bytes-per-sec, cancelled
halfway (back to the replicas it started from); a target broker that dies mid-move leaves the job stuck with the
reason, and cancel still works; a metadata leader that goes away mid-move leaves the job to its successor; a drain
stopped halfway (recommission) goes back; the replication factor goes 1 -> 2 -> 3 -> 5 -> 3 on a topic with data."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster import request, wait_until
from raftka.raft.hardstate import HardStateStore
from elastic_support import (assert_replicas_identical, brokers, get_json, group_name, produce_values, raftka,
                             read_partition, reassignments, replicas_of, slow, wait_moves_done)

pytestmark = pytest.mark.timeout(240)

RATE = 2_000_000


@slow
def test_cancel_halfway_a_target_that_dies_mid_move_and_a_metadata_leader_failover(cluster_factory):
    cluster = cluster_factory(3, extra_args=["--reassignment-max-bytes-per-sec", str(RATE)])
    cluster.create_topic("mv", 1, 2)
    acked = []
    for i in range(300):  # about 9 MB in 300 entries: more than a journal keeps, so a new replica gets a snapshot
        acked += produce_values(cluster.url(1), "mv", 0, [b"%05d" % i + b"x" * 30_000])
    original = replicas_of(cluster, "mv")[0]
    spare = next(b for b in cluster.ids if b not in original)
    leader = cluster.leader_of("mv", 0)
    wait_until(lambda: next(g for g in get_json(cluster, f"/brokers/{leader}/raft")["groups"]
                            if g.get("partition") == "mv/0")["snapshot_index"] > 0, 30,
               "the leader's journal to be compacted (the throttle holds the snapshot stream)")
    target = [original[0], spare]
    resp = request(cluster.url(spare) + "/topics/mv/partitions/0/reassignment", "POST", {"replicas": target})
    assert resp.status == 202, resp.body
    assert resp.json()["adding"] == [spare] and resp.json()["removing"] == [original[1]]
    again = request(cluster.url(1) + "/topics/mv/partitions/0/reassignment", "POST", {"replicas": original})
    assert again.status == 409 and again.json()["error_code"] == 40921, again.body  # one move at a time

    def copying_halfway_to(broker: int):
        def check() -> bool:
            moves = reassignments(cluster)
            if not moves:
                raise AssertionError("the move finished before it could be cancelled: the throttle did not hold")
            adding = next(r for r in moves[0]["replicas"] if r["broker"] == broker)
            return 0 < (adding["bytes_copied"] or 0) < adding["bytes_total"] // 2
        return check

    copying_halfway = copying_halfway_to(spare)

    wait_until(copying_halfway, 60, "the new replica to be partly copied")
    cancelled = raftka(cluster, "topics", "reassign", "mv", "-p", "0", "--cancel")
    assert f"back to {original}" in cancelled, cancelled
    wait_moves_done(cluster)
    assert replicas_of(cluster, "mv")[0] == original
    wait_until(lambda: all(g.get("partition") != "mv/0" for g in get_json(cluster, f"/brokers/{spare}/raft")["groups"])
               and not list((cluster.root / f"broker-{spare}" / "partitions").glob("mv-0-*")), 30,
               "the cancelled replica (its journal and its log) to be removed from its broker")
    assert request(cluster.url(1) + "/topics/mv/partitions/0/reassignment", "DELETE").status == 404

    # The same move again; the new replica's broker dies while it copies.
    assert request(cluster.url(1) + "/topics/mv/partitions/0/reassignment", "POST",
                   {"replicas": target}).status == 202
    wait_until(copying_halfway, 60, "the new replica to be partly copied")
    cluster.kill(spare)

    def stuck():
        moves = reassignments(cluster)
        return moves and moves[0]["state"] == "stuck" and moves[0]

    job = wait_until(stuck, 30, "the move to say it is stuck")
    assert f"broker {spare} is down" in job["stuck_reason"], job
    acked += produce_values(cluster.url(original[0]), "mv", 0, [b"during the stuck move"])
    assert request(cluster.url(original[0]) + "/topics/mv/partitions/0/reassignment", "DELETE").status == 200
    wait_moves_done(cluster)
    assert replicas_of(cluster, "mv")[0] == original
    assert read_partition(cluster, "mv", 0) == acked
    cluster.start_broker(spare)
    cluster.wait_healthy(30, [spare])
    assert_replicas_identical(cluster, "mv")

    # Once more, and the metadata leader goes away mid-move: the job is in the metadata, its successor finishes it.
    job = request(cluster.url(1) + "/topics/mv/partitions/0/reassignment", "POST", {"replicas": target}).json()
    wait_until(copying_halfway, 60, "the new replica to be partly copied")
    leader = get_json(cluster, "/health")["metadata_leader"]
    cluster.stop_broker(leader)
    successor = wait_until(lambda: (get_json(cluster, "/health")["metadata_leader"] or leader) != leader
                           and get_json(cluster, "/health")["metadata_leader"], 30, "a new metadata leader")
    assert [m["id"] for m in reassignments(cluster)] == [job["id"]], f"broker {successor} lost the job"
    cluster.start_broker(leader)
    wait_moves_done(cluster)
    assert replicas_of(cluster, "mv")[0] == target
    assert read_partition(cluster, "mv", 0) == acked

    # A drain stopped halfway: the broker is active again and its move goes back.
    drain = request(cluster.url(1) + f"/brokers/{spare}/decommission", "POST")
    assert drain.status == 202 and drain.json()["membership"] == "draining", drain.body
    wait_until(copying_halfway_to(original[1]), 60, "the drain's new replica to be partly copied")
    undone = request(cluster.url(1) + f"/brokers/{spare}/recommission", "POST")
    assert undone.status == 200 and undone.json()["membership"] == "active", undone.body
    wait_moves_done(cluster)
    assert replicas_of(cluster, "mv")[0] == target and brokers(cluster)[spare]["membership"] == "active"


def test_replication_factor_one_to_two_to_three_to_five_to_three(cluster_factory):
    cluster = cluster_factory(3)
    cluster.add_broker()
    cluster.add_broker()
    cluster.create_topic("rf", 2, 1)
    acked = {p: produce_values(cluster.url(1), "rf", p, [b"rf1-%d-%d" % (p, i) for i in range(100)]) for p in range(2)}
    for factor in (2, 3, 5, 3):
        if factor == 2:  # through the CLI, which waits with a progress bar
            output = raftka(cluster, "topics", "alter", "rf", "--replication-factor", "2", "--wait")
            assert "Replication factor of rf -> 2: 2 partition(s) moving" in output and "done" in output
        else:
            resp = request(cluster.url(2) + "/topics/rf", "PATCH", {"replication_factor": factor})
            assert resp.status == 202, resp.body
        wait_moves_done(cluster)
        assert [len(r) for r in replicas_of(cluster, "rf")] == [factor, factor]
        assert get_json(cluster, "/topics/rf")["replication_factor"] == factor
        for p in range(2):
            acked[p] += produce_values(cluster.url(3), "rf", p, [b"rf%d-%d" % (factor, p)])
            assert read_partition(cluster, "rf", p) == acked[p]
    assert_replicas_identical(cluster, "rf")
    for p in range(2):  # every replica, those the moves added too, has its partition log as its Raft log
        journal = group_name(cluster, "rf", p).replace("/", "~")
        assert not [b for b in replicas_of(cluster, "rf")[p]
                    if (Path(cluster.root) / f"broker-{b}" / "raft" / journal).exists()], "a separate journal"
    too_many = request(cluster.url(1) + "/topics/rf", "PATCH", {"replication_factor": 6})
    assert too_many.status == 422 and too_many.json()["error_code"] == 42210, too_many.body
    same = request(cluster.url(1) + "/topics/rf", "PATCH", {"replication_factor": 3})
    assert same.status == 200 and same.json()["reassignments"] == []
    current = replicas_of(cluster, "rf")[0]
    target = [*current[:2], next(b for b in cluster.ids if b not in current)]  # one replica really moves
    moved = raftka(cluster, "topics", "reassign", "rf", "-p", "0", "--replicas", ",".join(map(str, target)), "--wait")
    assert "Moving rf/0" in moved and "rf/0 moved." in moved
    assert replicas_of(cluster, "rf")[0] == target
    listing = raftka(cluster, "cluster", "brokers")
    assert "Membership" in listing and "voter" in listing and "learner" not in listing  # five brokers, five seats


@slow
def test_a_replica_moved_off_a_stopped_broker_is_cleaned_up_there_and_can_move_back(cluster_factory):
    """The broker was down when its replica moved away: restarted, it deletes that replica's log and its record in
    the hard state store (term, vote, compaction point: it would keep a new replica of the group from opening);
    moved back later, the replica starts empty and catches up."""
    cluster = cluster_factory(3)
    cluster.add_broker()
    cluster.create_topic("back", 1, 3)
    acked = []
    for i in range(260):  # more entries than a journal keeps: the replicas compact (a compaction point > 0)
        acked += produce_values(cluster.url(1), "back", 0, [b"%04d" % i])
    original = replicas_of(cluster, "back")[0]
    victim = next(b for b in original if b != cluster.leader_of("back", 0))
    spare = next(b for b in cluster.ids if b not in original)
    wait_until(lambda: next((g for g in get_json(cluster, f"/brokers/{victim}/raft")["groups"]
                             if g.get("partition") == "back/0"), {}).get("snapshot_index", 0) > 0, 60,
               f"broker {victim}'s replica to compact its Raft log")
    cluster.stop_broker(victim)
    away = [b for b in original if b != victim] + [spare]
    assert request(cluster.url(spare) + "/topics/back/partitions/0/reassignment", "POST",
                   {"replicas": away}).status == 202
    wait_moves_done(cluster)
    cluster.start_broker(victim)
    cluster.wait_healthy(30, [victim])
    wait_until(lambda: not list((Path(cluster.root) / f"broker-{victim}" / "partitions").glob("back-0-*")), 30,
               f"broker {victim} to remove the replica moved off it while it was down")
    group = group_name(cluster, "back", 0)
    cluster.stop_broker(victim)
    assert group not in HardStateStore(str(Path(cluster.root) / f"broker-{victim}" / "raft")).groups
    cluster.start_broker(victim)
    cluster.wait_healthy(30, [victim])
    acked += produce_values(cluster.url(1), "back", 0, [b"moved away"])
    assert request(cluster.url(victim) + "/topics/back/partitions/0/reassignment", "POST",
                   {"replicas": original}).status == 202
    wait_moves_done(cluster)
    assert replicas_of(cluster, "back")[0] == original
    acked += produce_values(cluster.url(victim), "back", 0, [b"moved back"])
    assert read_partition(cluster, "back", 0) == acked
    assert_replicas_identical(cluster, "back")
