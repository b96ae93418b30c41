"""Real runs of the jepsen-style harness against real brokers (netns when root, else loopback):
a leader kill under load must come out valid, and canaries (test-only bugs switched on in the
brokers, raft/canary.py) must come out invalid with the anomaly that exposes them; a checker
that never fails proves nothing.

Fast tier (part of ``make test``): the leader kill, a disk loss, a leader's disk filling up, and the
ack-before-commit canary (lost writes, divergence). Every other canary runs with RAFTKA_SLOW=1:
follower-reads, no-dedup and commit-offset-lww (``fast`` in scenarios.py: part of ``run.py --quick``), skip-truncate, no-fsync, wiped-node-votes, full-disk-keeps-leadership, new-replica-votes
(``run.py --full``), and so does the elastic-cluster run (membership changes with kills and partitions, 3 -> 5
brokers). The checker's detection of every anomaly kind is also tested on recorded and generated
histories (``test_jepsen_check*.py``).
"""

import os

import orjson
import pytest
from jepsen_raftka import netns, scenarios
from jepsen_raftka.history import load_history
from jepsen_raftka.loopback import free_port
from jepsen_raftka.report import INVALID, VALID
from jepsen_raftka.runner import RunSpec, run


def _unusable_reason() -> str | None:
    usable, why = netns.availability()
    if usable:
        return None
    try:
        free_port()
    except OSError as exc:
        return f"network namespaces unavailable ({why}) and loopback unusable ({exc})"
    return None


pytestmark = pytest.mark.skipif(_unusable_reason() is not None, reason=str(_unusable_reason()))
needs_slow = pytest.mark.skipif(os.environ.get("RAFTKA_SLOW") != "1", reason="slow canary run: set RAFTKA_SLOW=1")
slow = [pytest.mark.slow, needs_slow]


def carried_out(spec: RunSpec, tmp_path):
    result = run(spec, tmp_path, log=lambda line: None)
    assert result.error is None, result.error
    return result


def test_leader_kill_under_load_is_valid(tmp_path):
    """kill -9 the leader of a partition under load, twice, restarting it after each window."""
    spec = RunSpec(nodes=3, nemeses=("kill-leader",), time_limit_s=12.0, fault_s=4.0, heal_s=3.0, seed=1)
    result = carried_out(spec, tmp_path)
    report = result.report
    assert report.verdict == VALID, report.to_text(examples_per_kind=3)
    assert report.stats["ok_sends"] >= 100 and report.stats["polled_records"] >= 100
    assert report.checks["replica-divergence"] == "checked (3 replicas)"
    assert report.checks["election-safety"].startswith("checked")
    history = load_history(result.run_dir / "history.jsonl")
    kills = [e for e in history.nemesis if e.f == "start-kill"]
    assert kills and all(k.value["target"] == "leader" for k in kills)  # the leader, not a fallback
    assert any(op.f == "final_poll" and op.type == "ok" for op in history.ops)
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"history.jsonl", "report.json", "report.txt", "latency.png", "throughput.png", "replicas.json",
            "leaders.jsonl", "run.json"} <= files
    assert (result.run_dir / "nodes" / "n1" / "broker.log").stat().st_size > 0
    assert not (result.run_dir / "nodes" / "n1" / "data").exists()
    assert orjson.loads((result.run_dir / "run.json").read_bytes())["as_expected"] is True


def test_disk_loss_under_load_is_valid(tmp_path):
    """kill -9 the metadata leader, delete its data directory and start it again on the empty one,
    while another broker is paused: it comes back as a new incarnation, is registered by the new
    metadata leader, swapped in for its lost replicas and catches up; nothing acknowledged is lost,
    no offset reused, and its new replicas hold what the others hold."""
    spec = RunSpec(nodes=3, nemeses=("disk-loss",), time_limit_s=30.0, fault_s=4.0, heal_s=3.0, seed=1, windows=1)
    result = carried_out(spec, tmp_path)
    report = result.report
    assert report.verdict == VALID, report.to_text(examples_per_kind=3)
    assert report.checks["replica-divergence"] == "checked (3 replicas)"
    history = load_history(result.run_dir / "history.jsonl")
    [wipe] = [e for e in history.nemesis if e.f == "start-disk-loss"]
    [pause] = [e for e in history.nemesis if e.f == "start-pause"]
    assert wipe.value["target"] == "metadata-leader" and pause.value["nodes"] != wipe.value["nodes"]
    wiped = wipe.value["nodes"][0]
    log = (result.run_dir / "nodes" / f"n{wiped}" / "broker.log").read_text()
    assert f"node {wiped} lost its data directory" in log and "joining as a new incarnation" in log
    info = orjson.loads((result.run_dir / "run.json").read_bytes())
    assert info["convergence"]["converged"], info["convergence"]


@pytest.mark.parametrize("nemesis", ["kill-leader", "partition"])
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RAFTKA_SLOW") != "1", reason="slow run: set RAFTKA_SLOW=1")
def test_kafka_protocol_clients_under_faults_are_valid(tmp_path, nemesis):
    """The workload's clients speak the Kafka protocol (confluent-kafka: producers, assign-mode consumers,
    group commits) while the leader is killed or the network partitioned."""
    spec = RunSpec(nodes=3, nemeses=(nemesis,), time_limit_s=20.0, fault_s=5.0, heal_s=4.0, seed=3,
                   protocol="kafka")
    report = carried_out(spec, tmp_path).report
    assert report.verdict == VALID, report.to_text(examples_per_kind=3)
    assert report.stats["ok_sends"] >= 100 and report.stats["polled_records"] >= 100


def test_full_disk_of_a_leader_under_load_is_valid_and_heals_without_a_restart(tmp_path):
    """The data directory of a partition's leader fills up (a filler takes every free byte of its
    small filesystem): its replicas stop and hand over, nothing acknowledged is lost, and once the
    filler is deleted the broker reopens its replicas from their checkpoints; it is never restarted.
    Needs root for the mounts (skipped with the reason otherwise)."""
    spec = RunSpec(nodes=3, nemeses=("disk-full",), time_limit_s=10.0, fault_s=6.0, heal_s=2.0, seed=3)
    result = carried_out(spec, tmp_path)
    if result.skipped:
        pytest.skip(result.skipped)
    report = result.report
    assert report.verdict == VALID, report.to_text(examples_per_kind=3)
    assert report.checks["replica-divergence"] == "checked (3 replicas)"
    history = load_history(result.run_dir / "history.jsonl")
    [fill] = [e for e in history.nemesis if e.f == "start-disk-full"]
    assert fill.value["target"] == "leader"
    [node] = fill.value["nodes"]
    assert fill.value["filled_bytes"][str(node)] > 0
    log = (result.run_dir / "nodes" / f"n{node}" / "broker.log").read_text()
    assert "stops acting for the group" in log or "its partition replicas stop" in log
    assert "partition replicas resume" in log or "reopened from the checkpoint" in log
    assert log.count("--- harness: starting") == 1  # recovered in place, never restarted


@pytest.mark.parametrize("seed", [pytest.param(7, marks=slow)])
def test_membership_changes_with_kills_and_partitions_are_valid(tmp_path, seed):
    """3 brokers bootstrap, 2 join during the run; each fault window changes the cluster's shape (a join, a
    partition moved, the replication factor changed, a broker drained and added back, a rebalance), alone or
    with a kill or a partition: nothing acknowledged is lost, no offset reused, every replica the same."""
    spec = RunSpec(nodes=5, bootstrap_nodes=3, nemeses=("membership",), time_limit_s=60.0, fault_s=6.0,
                   heal_s=3.0, seed=seed)
    result = carried_out(spec, tmp_path)
    report = result.report
    assert report.verdict == VALID, report.to_text(examples_per_kind=3)
    history = load_history(result.run_dir / "history.jsonl")
    actions = [e.value.get("action") for e in history.nemesis if e.f == "start-membership" and e.value]
    assert actions.count("join") == 2 and len(set(actions)) >= 3, actions
    assert report.checks["replica-divergence"].startswith("checked")


def assert_canary_caught(bug: str, tmp_path, **overrides):
    result = carried_out(RunSpec.for_canary(bug, **overrides), tmp_path)
    report = result.report
    caught = {kind: n for kind, n in report.counts.items() if kind in scenarios.CANARIES[bug].detects}
    assert report.verdict == INVALID and caught, report.to_text(examples_per_kind=3)
    assert "vacuous" not in report.counts  # enough happened for the run to count
    assert result.as_expected
    return report


@pytest.mark.slow
@needs_slow
def test_no_dedup_canary_gives_duplicates(tmp_path):
    """The idempotent producer with the broker's duplicate detection off. The harness never
    retries in its normal workload; here the workload deliberately sends 20 % of the acknowledged
    batches again, byte for byte (producer id, epoch, sequence), as a client does when an ack
    is lost. A correct broker answers the original offset (the same run without the canary is
    valid); with the canary the value lands a second time and polls read it at two offsets."""
    report = assert_canary_caught("no-dedup", tmp_path, time_limit_s=6.0, seed=2)
    assert report.counts["duplicate"] >= 10


@pytest.mark.slow
@needs_slow
def test_follower_reads_canary_gives_nonmonotonic_polls(tmp_path):
    """Every replica serves fetches. One node is partitioned away and falls behind; a consumer
    that already read further on the leader asks it, gets offset-out-of-range, resets to its
    stale end (auto.offset.reset=latest) and then reads offsets it had read before."""
    assert_canary_caught("follower-reads", tmp_path, seed=3)


def test_ack_before_commit_canary_loses_acknowledged_writes(tmp_path):
    """The leader of a partition is cut off from the other replicas; with the canary it counts
    itself as a majority and acks writes until its lease ends. The new leader overwrites them:
    acked writes lost, and the old leader's applied log diverges."""
    assert_canary_caught("ack-before-commit", tmp_path, seed=4)


@pytest.mark.parametrize("bug", [pytest.param(bug, marks=slow) for bug, c in scenarios.CANARIES.items()
                                 if not c.fast])
def test_slow_canaries(bug, tmp_path):
    assert_canary_caught(bug, tmp_path, seed=5)


@pytest.mark.slow
@needs_slow
def test_commit_offset_lww_canary_lets_committed_offsets_go_back(tmp_path):
    """Consumers of one group commit their own positions (no seek). The grow-only register
    keeps the highest; with last-writer-wins a later, lower commit replaces it, and the next
    list_committed reads an offset below one that was already committed."""
    assert_canary_caught("commit-offset-lww", tmp_path, seed=6)


@pytest.mark.parametrize("bug", ["no-dedup", "follower-reads"])
def test_a_canary_kafka_clients_cannot_expose_is_skipped_with_the_reason(bug, tmp_path):
    """`run.py --quick --protocol kafka` reported these two canaries as not caught: the Kafka workload cannot
    resend an acknowledged batch, and its consumers never fetch from a follower. They are skipped, saying so,
    before any broker starts."""
    result = run(RunSpec.for_canary(bug, protocol="kafka"), tmp_path, log=lambda line: None)
    assert result.skipped and "needs HTTP clients" in result.skipped, result.skipped
    assert result.as_expected and result.verdict == "skipped"
    assert not any(tmp_path.rglob("broker.log"))  # no broker started


def test_quick_run_proves_four_canaries():
    assert sorted(b for b, c in scenarios.CANARIES.items() if c.fast) == [
        "ack-before-commit", "commit-offset-lww", "follower-reads", "no-dedup"]
