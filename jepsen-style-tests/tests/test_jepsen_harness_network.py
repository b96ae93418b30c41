"""Partition nemeses on a real 3-host cluster (netns, and the loopback fault proxy):
measured reachability between every pair of hosts, and from the harness, must be
exactly what each fault's grudge says; heal restores everything."""

import random
import subprocess

import pytest
from jepsen_harness_support import MODES, grudge_from_json, health_server_command, skip_unless_mode_available

from jepsen_raftka import nemesis as nm
from jepsen_raftka.cluster import open_cluster
from jepsen_raftka.history import HistoryRecorder, load_history
from jepsen_raftka.probe import reachability
from jepsen_raftka.processes import Brokers
from jepsen_raftka.topology import CLIENT, can_talk

PROBE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module", params=MODES)
def cluster_ctx(request, tmp_path_factory):
    skip_unless_mode_available(request.param)
    run_dir = tmp_path_factory.mktemp(f"net-{request.param}")
    with open_cluster(3, mode=request.param) as cluster, \
            Brokers(cluster, run_dir, command=health_server_command) as brokers, \
            HistoryRecorder(run_dir / "history.jsonl") as recorder:
        brokers.start()
        brokers.wait_healthy(timeout_s=15)
        yield nm.NemesisContext(cluster, brokers, recorder, random.Random(7))


@pytest.fixture
def ctx(cluster_ctx):
    """The module's cluster, healed after each test."""
    yield cluster_ctx
    cluster_ctx.cluster.heal_network()


def everyone(ctx):
    return {(s, d): True for s in (*ctx.cluster.nodes, CLIENT) for d in ctx.cluster.nodes if s != d}


def cut(matrix, *pairs):
    """The matrix with these node pairs unable to talk, both ways."""
    out = dict(matrix)
    for a, b in pairs:
        out[a, b] = out[b, a] = False
    return out


def test_all_hosts_reach_each_other_and_the_harness_reaches_all(ctx):
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == everyone(ctx)


def test_isolating_one_node_cuts_exactly_its_links_and_heal_restores_them(ctx):
    partition = nm.Partition(ctx, nm.isolated(nm.fixed(2)))
    value = partition.start()
    assert value["nodes"] == [2]
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == cut(everyone(ctx), (1, 2), (2, 3))
    partition.stop()
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == everyone(ctx)


def test_isolating_the_node_a_callback_names(ctx):
    partition = nm.Partition(ctx, nm.isolated(nm.chosen_by("leader", lambda: 3)))
    assert partition.start()["target"] == "leader"
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == cut(everyone(ctx), (1, 3), (2, 3))


def test_halves_cut_one_node_from_the_other_two(ctx):
    nm.Partition(ctx, nm.halves).start()
    matrix = reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S)
    lonely = [n for n in ctx.cluster.nodes if not any(matrix[n, m] for m in ctx.cluster.nodes if m != n)]
    assert len(lonely) == 1
    others = [n for n in ctx.cluster.nodes if n != lonely[0]]
    assert matrix == cut(everyone(ctx), *[(lonely[0], o) for o in others])


def test_bridge_leaves_exactly_the_two_ends_apart(ctx):
    value = nm.Partition(ctx, nm.bridge).start()
    matrix = reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S)
    apart = sorted({tuple(sorted(pair)) for pair, ok in matrix.items() if not ok})
    assert len(apart) == 1 and CLIENT not in apart[0]
    assert matrix == cut(everyone(ctx), apart[0])
    a, b = apart[0]
    assert grudge_from_json(value["grudge"]) == {a: {b}, b: {a}}


def test_one_way_partition_breaks_request_response_both_ways(ctx):
    value = nm.Partition(ctx, nm.one_way(nm.fixed(1))).start()
    assert grudge_from_json(value["grudge"]) == {2: {1}, 3: {1}}
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == cut(everyone(ctx), (1, 2), (1, 3))


def test_client_isolation_cuts_only_the_harness_from_the_node(ctx):
    isolation = nm.ClientIsolation(ctx, nm.fixed(3))
    isolation.start()
    expected = dict(everyone(ctx))
    expected[CLIENT, 3] = False
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == expected
    isolation.stop()
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == everyone(ctx)


def test_faults_combine_and_stopping_one_keeps_the_other(ctx):
    partition = nm.Partition(ctx, nm.isolated(nm.fixed(1)))
    isolation = nm.ClientIsolation(ctx, nm.fixed(2))
    partition.start()
    isolation.start()
    expected = cut(everyone(ctx), (1, 2), (1, 3))
    expected[CLIENT, 2] = False
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == expected
    partition.stop()
    expected = dict(everyone(ctx))
    expected[CLIENT, 2] = False
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == expected


def test_nemesis_windows_are_recorded_in_the_history(ctx, tmp_path):
    with HistoryRecorder(tmp_path / "h.jsonl") as recorder:
        local = nm.NemesisContext(ctx.cluster, ctx.brokers, recorder, random.Random(1))
        partition = nm.Partition(local, nm.isolated(nm.fixed(2)))
        partition.start()
        partition.stop()
        partition.stop()  # not active any more: no second stop event
    history = load_history(tmp_path / "h.jsonl")
    assert [e.f for e in history.nemesis] == ["start-partition", "stop-partition"]
    (window,) = history.fault_windows()
    assert window.name == "partition" and window.value["nodes"] == [2] and window.end > window.start


def test_packet_loss_and_bandwidth_rules(ctx):
    if ctx.cluster.mode != "netns":
        with pytest.raises(nm.UnsupportedFault):
            nm.PacketLoss(ctx, nm.fixed(1))
        with pytest.raises(nm.UnsupportedFault):
            nm.Bandwidth(ctx, nm.fixed(1))
        return
    total = nm.PacketLoss(ctx, nm.fixed(2), probability=1.0)
    total.start()
    expected = cut(everyone(ctx), (1, 2), (2, 3))
    expected[CLIENT, 2] = False
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == expected
    total.stop()
    assert reachability(ctx.cluster, timeout_s=PROBE_TIMEOUT_S) == everyone(ctx)

    def node_state(node):
        inside = ctx.cluster.command(node, ["iptables", "-S", "INPUT"])
        rules = subprocess.run(inside, capture_output=True, text=True, check=True).stdout
        qdisc = subprocess.run(ctx.cluster.command(node, ["tc", "qdisc", "show", "dev", "eth0"]),
                               capture_output=True, text=True, check=True).stdout
        return rules, qdisc

    loss, bandwidth = nm.PacketLoss(ctx, nm.fixed(1)), nm.Bandwidth(ctx, nm.fixed(1), rate="2mbit")
    loss.start()
    bandwidth.start()
    rules, qdisc = node_state(1)
    assert "--probability 0.2" in rules and "tbf" in qdisc and "2Mbit" in qdisc
    assert "statistic" not in node_state(2)[0]
    loss.stop()
    bandwidth.stop()
    rules, qdisc = node_state(1)
    assert "statistic" not in rules and "tbf" not in qdisc


@pytest.mark.parametrize("mode", MODES)
def test_majorities_ring_on_five_hosts(mode, tmp_path):
    skip_unless_mode_available(mode)
    with open_cluster(5, mode=mode) as cluster, \
            Brokers(cluster, tmp_path, command=health_server_command) as brokers, \
            HistoryRecorder(tmp_path / "history.jsonl") as recorder:
        brokers.start()
        brokers.wait_healthy(timeout_s=15)
        ring = nm.Partition(nm.NemesisContext(cluster, brokers, recorder, random.Random(2)), nm.majorities_ring)
        grudge = grudge_from_json(ring.start()["grudge"])
        matrix = reachability(cluster, timeout_s=PROBE_TIMEOUT_S)
        assert matrix == {(s, d): can_talk(grudge, s, d) for (s, d) in matrix}
        for node in cluster.nodes:  # each sees exactly its two ring neighbours
            assert sum(matrix[node, other] for other in cluster.nodes if other != node) == 2
        ring.stop()
        assert all(reachability(cluster, timeout_s=PROBE_TIMEOUT_S).values())
