"""What an idle 3-broker cluster still does (default election timeout): one Raft frame per idle heartbeat
interval to each peer, one ticker round per interval, about as many wake-ups of the event loop (the brokers'
timers share the ticker's, see raft/wake_grid.py), and no `GET /raft/leaders` while no peer's leadership
changed; and that peers still learn of new leaders (a broker that hosts no replica of a partition routes to it)."""

import signal
import time

import pytest

from cluster import request, retry, wait_until

IDLE_HEARTBEAT_S = 0.16  # heartbeat interval while no group is awake: twice the 80 ms of an 800 ms election timeout
WINDOW_S = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from raftka.client.devcluster import LocalCluster

    c = LocalCluster(3, tmp_path_factory.mktemp("idle"), election_timeout_ms=800).start()
    yield c
    c.close()


def raft_docs(cluster) -> dict[int, dict]:
    return {b: cluster.http_json(cluster.url(b) + "/raft") for b in cluster.procs}


def all_quiesced(docs: dict[int, dict]) -> bool:
    return all(g["quiesced"] for doc in docs.values() for g in doc["groups"])


def ticker_rounds_in(cluster, seconds: float) -> dict[int, int]:
    before = raft_docs(cluster)
    time.sleep(seconds)
    after = raft_docs(cluster)
    return {b: after[b]["ticker_rounds"] - before[b]["ticker_rounds"] for b in cluster.procs}


def loop_sleeps(pid: int) -> int:
    """How often the process's main thread (its event loop) went to sleep: its voluntary context switches."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches:"))


def test_an_idle_broker_sends_one_frame_per_heartbeat_and_does_not_poll_its_peers(cluster):
    cluster.create_topic("quiet", partitions=2, replication_factor=3)
    for p in range(2):
        cluster.leader_of("quiet", p, timeout=30)
    wait_until(lambda: all_quiesced(raft_docs(cluster)), 30, "every group quiesced")
    # For a while after a peer announced a new data-directory incarnation (at the cluster's start, too) the
    # ticker looks at quiesced groups every tick; then it naps between heartbeats.
    wait_until(lambda: max(ticker_rounds_in(cluster, 1.0).values()) <= 1.3 / IDLE_HEARTBEAT_S, 30, "the tickers nap")
    before = raft_docs(cluster)
    sleeps_before = {b: loop_sleeps(proc.pid) for b, proc in cluster.procs.items()}
    began = time.monotonic()
    time.sleep(WINDOW_S)
    sleeps = {b: loop_sleeps(proc.pid) - sleeps_before[b] for b, proc in cluster.procs.items()}
    after = raft_docs(cluster)
    beats = (time.monotonic() - began) / IDLE_HEARTBEAT_S
    assert all_quiesced(after), "a group woke up in an idle cluster"
    for b in cluster.procs:
        rounds = after[b]["ticker_rounds"] - before[b]["ticker_rounds"]
        assert rounds <= 1.3 * beats, (b, rounds, beats)  # was one round per tick: four per idle heartbeat
        # Periodic tasks, the ticker and the peers' heartbeats share wake-ups (two per beat, it was eight:
        # timers at their own phases, and a heartbeat every 0.1 s)
        assert sleeps[b] <= 3 * beats, (b, sleeps[b], beats)
        # No peer's leadership changed: no poll (it was one per peer every 0.5 s)
        assert after[b]["leader_polls"] == before[b]["leader_polls"], b
        for peer, stats in after[b]["transport"]["peers"].items():
            sent = stats["frames_sent"] - before[b]["transport"]["peers"][peer]["frames_sent"]
            assert 0.7 * beats <= sent <= 1.3 * beats, (b, peer, sent, beats)  # was two: heartbeat and answer


def test_peers_learn_new_leaders_of_partitions_they_do_not_host(cluster):
    cluster.create_topic("solo", partitions=3, replication_factor=1)
    leaders = {p: cluster.leader_of("solo", p, timeout=30) for p in range(3)}
    for p, leader in leaders.items():
        for b in cluster.procs:
            if b == leader:
                continue
            url = cluster.url(b) + f"/topics/solo/partitions/{p}"
            wait_until(lambda: request(url).json().get("leader") == leader, 15,
                       f"broker {b} knows that broker {leader} leads solo/{p}")
            resp = retry(lambda: request(url, "POST", {"records": [{"value": "eA=="}]},
                                         content_type="application/vnd.kafka.binary.v2+json"))
            assert resp.status == 200, resp.body


def test_a_broker_kept_from_running_reports_how_late_its_ticker_woke(cluster):
    # Last in this module: the pause may cost leaderships. /raft's ticker_late_max_ms is how an operator sees
    # that a broker's event loop was kept from running (CPU starvation, a blocking call) before elections say so.
    broker = max(cluster.procs)
    before = raft_docs(cluster)[broker]["ticker_late_max_ms"]
    cluster.procs[broker].send_signal(signal.SIGSTOP)
    try:
        time.sleep(1.5)
    finally:
        cluster.procs[broker].send_signal(signal.SIGCONT)
    doc = wait_until(lambda: (d := raft_docs(cluster)[broker])["ticker_late_max_ms"] >= 1300 and d, 10,
                     f"broker {broker} reports its ticker woke at least 1.3 s late (it was {before} ms before the pause)")
    assert doc["ticker_late_recent_max_ms"] >= 1300, doc  # within the last minute, too: what an alert reads
    metrics = request(cluster.url(broker) + "/metrics").body.decode()
    [gauge] = [line for line in metrics.splitlines() if line.startswith("raftka_ticker_late_max_seconds ")]
    assert float(gauge.split()[1]) >= 1.3, gauge
    slow = {line.split('"')[1]: float(line.split()[1]) for line in metrics.splitlines()
            if line.startswith("raftka_slow_fsyncs_total{")}
    doc = raft_docs(cluster)[broker]
    assert slow == {"inline": doc["slow_inline_syncs"], "thread": doc["slow_syncs"] - doc["slow_inline_syncs"]}, slow
