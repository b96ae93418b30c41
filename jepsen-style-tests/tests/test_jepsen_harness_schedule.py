"""The nemesis schedule on a real cluster of stand-in servers: alternating windows in the
history, combinations, errors recorded without stopping the run, early stop, and a final
heal that leaves every node up, reachable and healthy."""

import random
import threading
import time

import pytest
from jepsen_harness_support import health_server_command

from jepsen_raftka import nemesis as nm
from jepsen_raftka.cluster import open_cluster
from jepsen_raftka.history import HistoryRecorder, load_history
from jepsen_raftka.probe import reachability
from jepsen_raftka.processes import Brokers
from jepsen_raftka.schedule import Schedule


class Broken(nm.Nemesis):
    name = "broken"

    def _start(self):
        raise RuntimeError("cannot inject")

    def _stop(self):
        return None


@pytest.fixture
def ctx(tmp_path):
    with open_cluster(3) as cluster, Brokers(cluster, tmp_path, command=health_server_command) as brokers, \
            HistoryRecorder(tmp_path / "history.jsonl") as recorder:
        brokers.start()
        brokers.wait_healthy(timeout_s=15)
        yield nm.NemesisContext(cluster, brokers, recorder, random.Random(5))


def nemesis_fs(path):
    return [e.f for e in load_history(path / "history.jsonl").nemesis]


def test_windows_alternate_and_the_run_ends_healed(ctx, tmp_path):
    entries = [nm.Partition(ctx, nm.halves), nm.Kill(ctx, nm.one()),
               [nm.Pause(ctx, nm.fixed(1)), nm.Kill(ctx, nm.fixed(1))], nm.ClientIsolation(ctx, nm.one())]
    schedule = Schedule(ctx, entries, fault_s=0.4, heal_s=0.2, health_timeout_s=15)
    result = schedule.run(duration_s=3.4)
    assert result["healthy"] and schedule.windows >= 4 and schedule.errors == []
    fs = nemesis_fs(tmp_path)
    assert fs[:10] == ["start-partition", "stop-partition", "start-kill", "stop-kill",
                       "start-pause", "start-kill", "stop-kill", "stop-pause",
                       "start-isolate-client", "stop-isolate-client"]
    assert fs[-1] == "heal" and fs.count("heal") == 1
    history = load_history(tmp_path / "history.jsonl")
    windows = history.fault_windows()
    assert len(windows) == fs.count("stop-partition") + fs.count("stop-kill") + fs.count("stop-pause") \
        + fs.count("stop-isolate-client") and all(w.end is not None for w in windows)
    assert all(ctx.brokers.healthy(n) for n in ctx.cluster.nodes)
    assert all(reachability(ctx.cluster, timeout_s=1.0).values())


def test_failing_nemesis_is_recorded_and_the_run_goes_on(ctx, tmp_path):
    schedule = Schedule(ctx, [Broken(ctx), nm.Pause(ctx, nm.fixed(2))], fault_s=0.2, heal_s=0.1)
    schedule.run(duration_s=0.9)
    fs = nemesis_fs(tmp_path)
    assert fs[:3] == ["nemesis-error", "start-pause", "stop-pause"] and fs[-1] == "heal"
    assert schedule.errors and "cannot inject" in schedule.errors[0]


def test_max_windows_heals_after_the_last_window_without_waiting_for_the_time_limit(ctx, tmp_path):
    schedule = Schedule(ctx, [nm.Pause(ctx, nm.fixed(2))], fault_s=0.2, heal_s=0.1, health_timeout_s=15,
                        max_windows=1)
    started = time.monotonic()
    result = schedule.run(duration_s=120)
    assert time.monotonic() - started < 15
    assert result["healthy"] and schedule.windows == 1
    assert nemesis_fs(tmp_path) == ["start-pause", "stop-pause", "heal"]


def test_stop_event_ends_the_run_early_and_heals_an_active_fault(ctx, tmp_path):
    stop = threading.Event()
    kill = nm.Kill(ctx, nm.fixed(3))
    schedule = Schedule(ctx, [kill], fault_s=60, heal_s=0.1, health_timeout_s=15)
    threading.Timer(0.6, stop.set).start()
    started = time.monotonic()
    result = schedule.run(duration_s=120, stop=stop)
    assert time.monotonic() - started < 15
    assert nemesis_fs(tmp_path) == ["start-kill", "stop-kill", "heal"]
    assert result["healthy"] and ctx.brokers.healthy(3)


def test_heal_restarts_and_resumes_whatever_faults_left_behind(ctx, tmp_path):
    ctx.brokers.kill([1])
    ctx.brokers.pause([2])
    nm.Partition(ctx, nm.isolated(nm.fixed(3))).start()
    result = Schedule(ctx, [nm.Kill(ctx, nm.one())], health_timeout_s=15).heal()
    assert result["healthy"]
    assert all(ctx.brokers.healthy(n) for n in ctx.cluster.nodes)
    assert all(reachability(ctx.cluster, timeout_s=1.0).values())
    assert nemesis_fs(tmp_path)[-1] == "heal"


def test_heal_reports_a_node_that_never_becomes_healthy_again(tmp_path):
    def hangs_after_first_start(brokers, node):
        marker = brokers.node_dir(node) / "started"
        server = " ".join(health_server_command(brokers, node))
        return ["sh", "-c", f"if [ -e {marker} ]; then exec sleep 60; fi; touch {marker}; exec {server}"]

    with open_cluster(3) as cluster, Brokers(cluster, tmp_path, command=hangs_after_first_start) as brokers, \
            HistoryRecorder(tmp_path / "history.jsonl") as recorder:
        brokers.start()
        brokers.wait_healthy(timeout_s=15)
        brokers.kill([2])
        ctx = nm.NemesisContext(cluster, brokers, recorder)
        result = Schedule(ctx, [nm.Kill(ctx, nm.one())], health_timeout_s=2).heal()
    assert not result["healthy"] and "nodes [2]" in result["error"]
    assert load_history(tmp_path / "history.jsonl").nemesis[-1].value == result
