"""Decommissioning (real broker processes): the broker that leads the metadata group drains — its replicas and its
metadata voter seat move to others first — and cannot come back with its old data; it can rejoin afresh. Drains
that would leave a partition short are refused and change nothing. Brokers the cluster does not know are told to
use --join."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from cluster import request, retry, wait_until
from raftka.client.devcluster import free_ports
from elastic_support import (assert_replicas_identical, brokers, get_json, produce_values, read_partition,
                             replicas_of, slow)

pytestmark = pytest.mark.timeout(240)

TOPIC = "drain"


NODE = [sys.executable, "-m", "raftka.node.main"]


def run_node(cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A broker process that is expected to exit (it is refused): its output."""
    return subprocess.run([*NODE, *args, "--cluster-secret-file", str(cluster.secret_file()),
                           "--election-timeout-ms", "300", "--heartbeat-ms", "30"],
                          capture_output=True, text=True, timeout=timeout)


def test_decommission_the_metadata_leaders_broker(cluster_factory):
    cluster = cluster_factory(3)
    cluster.create_topic(TOPIC, 2, 3)
    acked = {p: produce_values(cluster.url(1), TOPIC, p, [b"before-%d-%d" % (p, i) for i in range(50)])
             for p in range(2)}
    for b in cluster.ids:  # three brokers, factor 3: any drain would leave partitions short
        resp = retry(lambda: request(cluster.url(1) + f"/brokers/{b}/decommission", "POST"))
        assert resp.status == 409 and resp.json()["error_code"] == 40922, resp.body
        assert f"{TOPIC}/0" in resp.json()["message"]
    assert request(cluster.url(1) + "/brokers/9/decommission", "POST").status == 404
    assert all(d["membership"] == "active" for d in brokers(cluster).values())
    joined = cluster.add_broker()
    leader = get_json(cluster, "/health")["metadata_leader"]
    wait_until(lambda: brokers(cluster, via=leader)[joined]["alive"], 30,
               f"the metadata leader to hear from broker {joined} (a drain counts only live brokers)")
    other = next(b for b in cluster.procs if b != leader)
    resp = request(cluster.url(other) + f"/brokers/{leader}/decommission", "POST")  # forwarded to the leader itself
    assert resp.status == 202, resp.body
    assert resp.json()["membership"] == "draining"

    def drained():
        status = get_json(cluster, f"/brokers/{leader}/decommission")
        return status if status["done"] else None

    status = wait_until(drained, 90, f"broker {leader} to drain")
    assert status["partitions_remaining"] == 0 and not status["metadata_voter"]
    roles = wait_until(lambda: (r := brokers(cluster, via=other))[leader]["metadata_role"] == "none" and r, 30,
                       "the broker's view to drop the decommissioned broker from the metadata group")
    assert roles[leader]["membership"] == "decommissioned"
    assert sorted(b for b, d in roles.items() if d["metadata_role"] == "voter") == sorted(
        b for b in cluster.ids if b != leader)  # the learner (broker 4) took the seat
    assert get_json(cluster, "/health")["metadata_leader"] != leader
    assert all(leader not in r and len(r) == 3 for r in replicas_of(cluster, TOPIC))
    for p in range(2):
        acked[p] += produce_values(cluster.url(other), TOPIC, p, [b"after-%d" % p])
        assert read_partition(cluster, TOPIC, p) == acked[p]
    assert_replicas_identical(cluster, TOPIC)
    health = request(cluster.url(leader) + "/health").json()
    assert any("decommissioned" in problem for problem in health["problems"]), health
    relayed = request(cluster.url(other) + f"/brokers/{leader}/health")  # still running: its views are relayed
    assert relayed.status == 200 and relayed.json()["broker"] == leader, relayed.body
    kafka = AdminClient({"bootstrap.servers": cluster.kafka_address(other)})
    wait_until(lambda: sorted(kafka.list_topics(timeout=10).brokers) == sorted(b for b in cluster.ids if b != leader),
               30, "Kafka Metadata to list the brokers left and not the decommissioned one")

    cluster.stop_broker(leader)
    refused = run_node(cluster, *cluster.command(leader)[3:])
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"broker {leader} was decommissioned" in refused.stderr and "--join" in refused.stderr
    assert "empty its data directory" in refused.stderr

    shutil.rmtree(cluster.root / f"broker-{leader}")  # the same machine comes back afresh
    cluster.add_broker(leader, via=other)
    wait_until(lambda: brokers(cluster)[leader]["membership"] == "active", 30, "the broker to be active again")
    cluster.restart(leader)  # a broker that joined restarts from its data directory (no --peers to go by)
    wait_until(lambda: brokers(cluster)[leader]["metadata_role"] != "none" and brokers(cluster)[leader]["alive"], 30,
               "the restarted broker to follow the metadata group again")


@slow
def test_brokers_the_cluster_does_not_know_are_told_to_join(cluster_factory, tmp_path):
    cluster = cluster_factory(3)
    cluster_id = wait_until(lambda: get_json(cluster, "/cluster")["formed"] and get_json(cluster, "/cluster"), 20,
                            "the cluster to form")["cluster_id"]
    # A fourth broker listed in --peers that the running cluster never heard of: it exits and says to use --join.
    peers = cluster.peers_arg() + ",4=127.0.0.1:1:2"
    unknown = run_node(cluster, "--id", "4", "--data-dir", str(tmp_path / "b4"), "--peers", peers,
                       "--listen", "127.0.0.1:0", "--raft-listen", "127.0.0.1:0")
    assert unknown.returncode == 2, unknown.stderr[-2000:]
    assert f"broker 4 is not a member of cluster {cluster_id}" in unknown.stderr and "--join" in unknown.stderr
    # Joining with another secret is refused by the cluster, and the broker says so.
    (tmp_path / "wrong").write_text("another-secret-0123456789")
    http_port, raft_port = free_ports(2)
    wrong = subprocess.run([*NODE, "--id", "4", "--data-dir", str(tmp_path / "w4"),
                            "--join", cluster.url(2), "--listen", f"127.0.0.1:{http_port}",
                            "--raft-listen", f"127.0.0.1:{raft_port}",
                            "--cluster-secret-file", str(tmp_path / "wrong")], capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 2 and "does not match cluster" in wrong.stderr, wrong.stderr[-2000:]
    # A running broker restarted with a changed peer list keeps its data: the cluster id no longer depends on it.
    cluster.bootstrap_ids.append(9)  # --peers now names a broker 9 that never existed
    cluster.http_ports[9], cluster.raft_ports[9] = free_ports(2)
    cluster.restart(3)
    assert get_json(cluster, "/cluster")["cluster_id"] == cluster_id
    assert sorted(brokers(cluster)) == [1, 2, 3]
