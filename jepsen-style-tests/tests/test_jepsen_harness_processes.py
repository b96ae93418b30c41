"""Process nemeses on stand-in brokers that write through raftka.storage: kill -9 and
restart, pause/resume, power failure (only fsynced data survives); the child
environment (ledger, canary, run marker) and the broker command line."""

import random
import sys
import time
from pathlib import Path

import pytest
from jepsen_harness_support import (MODES, health_server_command, segment_bytes, skip_unless_mode_available, wait_for,
                                    writer_command)

from jepsen_raftka import nemesis as nm
from jepsen_raftka.api import BrokerApi, NoAnswer
from jepsen_raftka.client import ClientSettings
from jepsen_raftka.cluster import detect_mode, open_cluster
from jepsen_raftka.history import HistoryRecorder, load_history
from jepsen_raftka.processes import Brokers, ProcessFailed, libfaketime_path, raftka_node_command
from jepsen_raftka.security import ApiSecurity, RunTls, hosts_of
from jepsen_raftka.topology import CLIENT
from jepsen_raftka.workload import WorkloadConfig
from raftka.node.config import load_config
from raftka.storage import PartitionLog

AUTO_MODE = detect_mode()[0]
FLUSHED, WRITTEN = 100, 150  # jepsen_harness_writer.py burst mode


def stored(brokers, node) -> list[tuple[int, bytes]]:
    with PartitionLog.open(brokers.data_dir(node)) as log:
        return [(r.offset, r.value) for r in log.read_records(0, max_records=100_000)]


@pytest.fixture
def cluster(request):
    mode = getattr(request, "param", AUTO_MODE)
    skip_unless_mode_available(mode)
    with open_cluster(3, mode=mode) as c:
        yield c


def make_ctx(cluster, brokers, path):
    return nm.NemesisContext(cluster, brokers, HistoryRecorder(path), random.Random(3))


@pytest.mark.parametrize("cluster", MODES, indirect=True)
def test_power_failure_keeps_exactly_the_fsynced_records(cluster, tmp_path):
    with Brokers(cluster, tmp_path, command=writer_command("burst"), health_service=None) as brokers:
        brokers.start()
        ready = [brokers.node_dir(n) / "ready" for n in cluster.nodes]
        wait_for(lambda: all(p.exists() for p in ready), what="writers")
        ctx = make_ctx(cluster, brokers, tmp_path / "history.jsonl")
        power = nm.PowerFailure(ctx, nm.fixed(1))
        kill = nm.Kill(ctx, nm.fixed(2))
        torn = nm.PowerFailure(ctx, nm.fixed(3), torn_writes=True)
        value = power.start()
        kill.start()
        torn.start()
        assert not any(brokers.running(n) for n in cluster.nodes)
        assert value["lost"]["1"]["truncated_bytes"] > 0

        expected = [(i, str(i).encode()) for i in range(WRITTEN)]
        assert stored(brokers, 1) == expected[:FLUSHED]  # power loss: unfsynced tail gone
        assert stored(brokers, 2) == expected  # kill -9 alone: the page cache survives
        torn_records = stored(brokers, 3)
        assert expected[:FLUSHED] <= torn_records <= expected  # a prefix, maybe torn mid-tail
        assert torn_records[:FLUSHED] == expected[:FLUSHED]

        for p in ready:
            p.unlink()
        power.stop()  # powers node 1 on: it recovers and appends after its 100 records
        wait_for(ready[0].exists, what="restarted writer")
        assert ready[0].read_text().strip() == str(FLUSHED + WRITTEN)
    history = load_history(tmp_path / "history.jsonl")
    assert [e.f for e in history.nemesis] == ["start-power-failure", "start-kill", "start-power-failure",
                                              "stop-power-failure"]


def test_kill_and_restart(cluster, tmp_path):
    with Brokers(cluster, tmp_path, command=writer_command("steady"), health_service=None) as brokers:
        brokers.start()
        brokers.wait_healthy(timeout_s=10)
        ctx = make_ctx(cluster, brokers, tmp_path / "history.jsonl")
        kill = nm.Kill(ctx, nm.chosen_by("leader", lambda: 2))
        first_pid = brokers.processes[2].pid
        wait_for(lambda: segment_bytes(brokers, 2) > 0, what="first records")
        assert kill.start() == {"nodes": [2], "target": "leader"}
        assert brokers.processes[2].returncode == -9
        assert brokers.running(1) and brokers.running(3)
        size = segment_bytes(brokers, 2)
        kill.stop()
        assert brokers.running(2) and brokers.processes[2].pid != first_pid
        wait_for(lambda: segment_bytes(brokers, 2) > size, what="writes after restart")
        log = brokers.log_path(2).read_text()
        assert log.count("--- harness: starting node 2") == 2


def test_pause_stops_progress_and_resume_restarts_it(cluster, tmp_path):
    with Brokers(cluster, tmp_path, command=writer_command("steady"), health_service=None) as brokers:
        brokers.start()
        wait_for(lambda: segment_bytes(brokers, 1) > 0, what="first records")
        ctx = make_ctx(cluster, brokers, tmp_path / "history.jsonl")
        pause = nm.Pause(ctx, nm.fixed(1))
        pause.start()
        assert brokers.processes[1].state() == "T"
        assert not brokers.healthy(1)
        size = segment_bytes(brokers, 1)
        time.sleep(0.3)
        assert segment_bytes(brokers, 1) == size
        pause.stop()
        wait_for(lambda: segment_bytes(brokers, 1) > size, what="writes after resume")
        assert brokers.healthy(1)


def test_children_get_ledger_canary_secret_and_run_marker_but_no_proxy(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("RAFTKA_CONFIG", "/nonexistent.toml")  # must not leak into brokers
    with pytest.raises(ValueError, match="unknown canary"):
        Brokers(cluster, tmp_path, command=health_server_command, canary="no-such-bug")
    with Brokers(cluster, tmp_path, command=health_server_command, canary="no-dedup",
                 secret="s" * 32) as brokers:
        brokers.start([1])
        brokers.wait_healthy([1], timeout_s=10)
        raw = Path(f"/proc/{brokers.processes[1].pid}/environ").read_bytes().split(b"\0")
        env = dict(kv.decode().split("=", 1) for kv in raw if b"=" in kv)
    assert env["RAFTKA_CANARY"] == "no-dedup"
    assert env["RAFTKA_CLUSTER_SECRET"] == "s" * 32
    assert env["RAFTKA_FSYNC_LEDGER"] == str(brokers.ledger_path(1))
    assert env["RAFTKA_JEPSEN_RUN"] == cluster.run_token
    assert "http_proxy" not in env and "RAFTKA_CONFIG" not in env


def test_wait_healthy_fails_fast_with_the_log_of_a_dying_process(cluster, tmp_path):
    def dying(brokers, node):
        return [sys.executable, "-c", f"print('node {node} cannot start'); raise SystemExit(3)"]

    with Brokers(cluster, tmp_path, command=dying) as brokers:
        brokers.start([2])
        started = time.monotonic()
        with pytest.raises(ProcessFailed, match="(?s)node 2 exited with 3.*node 2 cannot start"):
            brokers.wait_healthy([2], timeout_s=30)
        assert time.monotonic() - started < 10


def test_broker_command_line_is_what_raftka_node_accepts(cluster, tmp_path):
    brokers = Brokers(cluster, tmp_path, secret="x" * 32)
    try:
        for node in cluster.nodes:
            argv = raftka_node_command(brokers, node)
            assert argv[1:3] == ["-m", "raftka.node.main"]
            config = load_config(argv[3:], {"RAFTKA_CLUSTER_SECRET": "x" * 32})
            assert config.broker_id == node and config.data_dir == brokers.data_dir(node)
            assert (config.listen.host, config.listen.port) == cluster.bind_address(node, "http")
            assert (config.raft_listen.host, config.raft_listen.port) == cluster.bind_address(node, "raft")
            assert (config.kafka_listen.host, config.kafka_listen.port) == cluster.bind_address(node, "kafka")
            assert (config.kafka_advertise.host, config.kafka_advertise.port) == cluster.address(CLIENT, node,
                                                                                                 "kafka")
            for peer in config.peers:
                assert (peer.host, peer.http_port) == cluster.address(node, peer.broker_id, "http")
                assert (peer.host, peer.raft_port) == cluster.address(node, peer.broker_id, "raft")
        if cluster.mode == "loopback":  # every node reaches node 1 through its own proxy link
            assert len({cluster.address(src, 1, "raft") for src in (2, 3, CLIENT)}) == 3
    finally:
        brokers.close()


def test_nodes_beyond_the_bootstrap_ones_join_and_a_rejoin_switches_to_join(cluster, tmp_path):
    brokers = Brokers(cluster, tmp_path, secret="x" * 32, bootstrap=[1, 2])
    try:
        assert brokers.bootstrap == (1, 2) and brokers.joiners == {3}
        env = {"RAFTKA_CLUSTER_SECRET": "x" * 32}
        bootstrapping = load_config(raftka_node_command(brokers, 1)[3:], env)
        assert [p.broker_id for p in bootstrapping.peers] == [1, 2] and bootstrapping.join is None
        joining = load_config(raftka_node_command(brokers, 3)[3:], env)
        assert joining.join_urls == ["http://{}:{}".format(*cluster.address(3, n, "http")) for n in (1, 2)]
        assert joining.self_peer.host == cluster.bind_address(3, "http")[0]
        (brokers.data_dir(1) / "leftover").write_text("x")
        brokers.rejoin(1)  # a decommissioned node comes back as a new broker: empty data dir, --join
        assert brokers.joiners == {1, 3} and "--join" in brokers.processes[1].argv
        assert not (brokers.data_dir(1) / "leftover").exists()
    finally:
        brokers.close()
    tls = RunTls(tmp_path / "tls", hosts_of(cluster))  # a --tls run: the joiner serves and joins over https
    with Brokers(cluster, tmp_path / "tls-run", secret="x" * 32, bootstrap=[1, 2], **tls.broker_options()) as secured:
        joining = load_config(raftka_node_command(secured, 3)[3:], env)
        assert joining.join_urls == ["https://{}:{}".format(*cluster.address(3, n, "http")) for n in (1, 2)]
        assert joining.self_peer.http_url.startswith("https://") and joining.security.auth == "required"


@pytest.mark.skipif(libfaketime_path() is None, reason="libfaketime missing (Debian package faketime)")
def test_clock_jump_shifts_only_the_target_clock(cluster, tmp_path):
    def clock_printer(brokers, node):
        out = brokers.node_dir(node) / "clock"
        code = ("import os, time\n"
                "while True:\n"
                f"    open({str(out) + '.tmp'!r}, 'w').write(repr(time.time()))\n"
                f"    os.replace({str(out) + '.tmp'!r}, {str(out)!r})\n"
                "    time.sleep(0.05)\n")
        return [sys.executable, "-c", code]

    def skew(node):
        return float((brokers.node_dir(node) / "clock").read_text()) - time.time()

    with Brokers(cluster, tmp_path, command=clock_printer, health_service=None, clock_faults=True) as brokers:
        brokers.start()
        wait_for(lambda: all((brokers.node_dir(n) / "clock").exists() for n in cluster.nodes), what="clocks")
        ctx = make_ctx(cluster, brokers, tmp_path / "history.jsonl")
        jump = nm.ClockJump(ctx, nm.fixed(2), max_offset_s=1000)
        offset = jump.start()["offsets_s"]["2"]
        wait_for(lambda: abs(skew(2) - offset) < 1.0, timeout_s=5, what="the jump")
        assert abs(skew(1)) < 1.0 and abs(skew(3)) < 1.0
        jump.stop()
        wait_for(lambda: abs(skew(2)) < 1.0, timeout_s=5, what="the reset")


def test_a_tls_run_serves_https_and_only_to_its_admin(cluster, tmp_path):
    """--tls: brokers with the run's certificate and admin; the workload's API over https with the password
    read from the run's user file (the workload config names the file, not the password)."""
    tls = RunTls(tmp_path / "tls", hosts_of(cluster))
    with Brokers(cluster, tmp_path, **tls.broker_options()) as brokers:
        brokers.start()
        brokers.wait_healthy(timeout_s=60.0)
        addresses = {n: cluster.address(CLIENT, n, "http") for n in cluster.nodes}
        admin = BrokerApi(addresses, security=tls.api)
        deadline = time.monotonic() + 30
        while (reply := admin.request(1, "GET", "/topics", timeout_s=5)).status == 401:
            assert time.monotonic() < deadline, "the bootstrap admin was never created"
            time.sleep(0.2)  # the admin is created once a metadata leader is elected
        assert (reply.status, reply.doc) == (200, [])
        stranger = BrokerApi(addresses, security=ApiSecurity(tls.api.ca_file, "admin", str(tmp_path / "wrong")))
        (tmp_path / "wrong").write_text("admin:not-the-password\n")
        assert stranger.request(2, "GET", "/topics", timeout_s=5).error_code == 40101
        with pytest.raises(NoAnswer):  # plain HTTP to a TLS port
            BrokerApi(addresses).request(3, "GET", "/topics", timeout_s=5)
    password = tls.users_file.read_text().strip().partition(":")[2]
    config = WorkloadConfig(ClientSettings("t", ("k",)), addresses, security=tls.api).to_json()
    assert password not in repr(config) and password not in brokers.log_path(1).read_text()
