"""The parts of the disk-loss nemeses: on stand-in brokers, a wipe kills the node and leaves an
empty data directory and fsync ledger, stop() starts it again under the same id, and a cluster
that is not settled is never wiped; what in a broker's log shows that it heard from a peer; and
when the brokers' view of their Raft groups counts as settled (raft_state). The nemeses against
real brokers: tests/test_jepsen_runs.py."""

import random

import pytest
from jepsen_harness_support import segment_bytes, wait_for, writer_command

from jepsen_raftka import nemesis as nm
from jepsen_raftka import raft_state
from jepsen_raftka.cluster import open_cluster
from jepsen_raftka.disk_loss import DiskLoss, heard_from
from jepsen_raftka.history import HistoryRecorder, load_history
from jepsen_raftka.processes import Brokers


@pytest.fixture
def writers(tmp_path):
    with open_cluster(3) as cluster, Brokers(cluster, tmp_path, command=writer_command("steady"),
                                             health_service=None) as brokers, \
            HistoryRecorder(tmp_path / "history.jsonl") as recorder:
        brokers.start()
        wait_for(lambda: all(segment_bytes(brokers, n) > 0 for n in cluster.nodes), what="first records")
        yield nm.NemesisContext(cluster, brokers, recorder, random.Random(7))


def test_disk_loss_kills_wipes_and_restarts_the_node_on_an_empty_directory(writers, tmp_path):
    brokers = writers.brokers
    first_pid = brokers.processes[2].pid
    loss = DiskLoss(writers, nm.fixed(2), ready=lambda: None)
    assert loss.start() == {"nodes": [2], "target": "fixed"}
    assert not brokers.running(2) and brokers.processes[2].returncode == -9
    assert brokers.data_dir(2).is_dir() and list(brokers.data_dir(2).iterdir()) == []
    assert brokers.ledger_path(2).read_text() == ""  # a power failure later finds nothing of the old disk
    assert segment_bytes(brokers, 1) > 0 and segment_bytes(brokers, 3) > 0  # the others keep theirs
    assert "--- harness: node 2 lost its data directory" in brokers.log_path(2).read_text()
    assert loss.stop() == {"nodes": [2]}
    assert brokers.running(2) and brokers.processes[2].pid != first_pid
    wait_for(lambda: segment_bytes(brokers, 2) > 0, what="writes on the new disk")
    assert brokers.log_since_start(2).startswith("node 2 at ")  # the new process's log only
    assert [e.f for e in load_history(tmp_path / "history.jsonl").nemesis] == ["start-disk-loss", "stop-disk-loss"]


def test_a_cluster_that_has_not_settled_is_not_wiped(writers):
    brokers = writers.brokers
    loss = DiskLoss(writers, nm.fixed(1), ready=lambda: "group g: learners [5] are catching up",
                    ready_timeout_s=0.3)
    value = loss.start()
    assert value == {"skipped": "not settled after 0.3 s: group g: learners [5] are catching up"}
    assert brokers.running(1) and segment_bytes(brokers, 1) > 0
    assert loss.stop() is None and brokers.running(1)


def test_heard_from_reads_the_brokers_own_word():
    waiting = ("x INFO raftka.node.cluster.broker: broker 2: waiting for peers to tell every broker to start "
               "(not heard from: [{}])\n")
    assert not heard_from("", 1)
    assert not heard_from(waiting.format("1, 3"), 1)
    assert heard_from(waiting.format("1, 3") + waiting.format("3"), 1)
    assert heard_from(waiting.format("13"), 1) and not heard_from(waiting.format("13"), 13)
    assert heard_from("x WARNING ...: broker 2 started with an empty data dir: joining as a new incarnation "
                      "1f2e3d4c (its old replicas are replaced once the cluster registers it)\n", 1)
    assert not heard_from("broker 2: waiting for peers to tell whether the cluster has formed "
                          "(not heard from: [3])\n", 1)


def entry(replica, role, *, voters=(1, 2, 3), learners=(), applied=10, last=10):
    return {"id": replica, "role": role, "voters": list(voters), "learners": list(learners),
            "applied_index": applied, "last_index": last, "commit_index": applied}


def test_membership_is_settled_with_one_leader_no_learner_and_every_voter_running():
    settled = {1: entry(1, "leader"), 2: entry(2, "follower"), 3: entry(3, "follower")}
    assert raft_state.membership_problem(settled) is None
    assert "0 replicas" in raft_state.membership_problem({1: entry(1, "follower"), 2: entry(2, "follower")})
    assert "2 replicas" in raft_state.membership_problem({1: entry(1, "leader"), 2: entry(2, "leader")})
    new = 7 << 31 | 3  # broker 3's next incarnation
    replacing = {1: entry(1, "leader", voters=(1, 2), learners=(new,)), 2: entry(2, "follower"),
                 3: entry(new, "follower")}
    assert "learners" in raft_state.membership_problem(replacing)
    not_yet_replaced = {1: entry(1, "leader"), 2: entry(2, "follower"), 3: entry(new, "follower")}
    assert raft_state.membership_problem(not_yet_replaced) == f"voters [1, 2, 3] but replicas [1, 2, {new}] run"
    down = {1: entry(1, "leader"), 2: entry(2, "follower")}
    assert raft_state.membership_problem(down) == "voters [1, 2, 3] but replicas [1, 2] run"


def test_replication_is_settled_once_every_replica_applied_all_the_leader_holds():
    assert raft_state.replication_problem({1: entry(1, "leader"), 2: entry(2, "follower"),
                                           3: entry(3, "follower")}) is None
    behind = {1: entry(1, "leader"), 2: entry(2, "follower", applied=9), 3: entry(3, "follower")}
    assert raft_state.replication_problem(behind) == "applied indexes {1: 10, 2: 9, 3: 10}, the leader's last index 10"
    pending = {n: entry(n, "leader" if n == 1 else "follower", last=11 if n == 1 else 10) for n in (1, 2, 3)}
    assert "the leader's last index 11" in raft_state.replication_problem(pending)  # an entry still in flight
    states = {"__metadata": behind, "t/0": behind, "t/1": {1: entry(1, "leader"), 2: entry(2, "follower"),
                                                            3: entry(3, "follower")}}
    assert list(raft_state.problems(states, raft_state.replication_problem, partitions_only=True)) == ["t/0"]
    assert list(raft_state.problems(states, raft_state.membership_problem)) == []
