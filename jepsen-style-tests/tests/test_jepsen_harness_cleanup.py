"""Nothing outlives a run: close, SIGTERM, Ctrl-C and (with cleanup_stale) SIGKILL of the
harness all leave no namespaces, links, firewall rules or child processes behind, and
cleanup_stale never touches a live run."""

import os
import shutil
import signal
import subprocess
import sys
import time

import orjson
import pytest
from jepsen_harness_support import HERE, MODES, health_server_command, skip_unless_mode_available

from jepsen_raftka import netns, runslot
from jepsen_raftka.cluster import cleanup_stale, open_cluster
from jepsen_raftka.probe import reachability
from jepsen_raftka.processes import Brokers
from jepsen_raftka.topology import isolate

CRASH_SCRIPT = HERE / "jepsen_harness_crash.py"


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pids, timeout_s=5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def slot_names(slot: int) -> list[str]:
    return [name for name in netns.leftovers() if name.startswith((f"rk-{slot}-", f"rk{slot}c"))]


def root_firewall() -> str:
    """The root namespace's ruleset (empty on a host that never had a rule: iptables-save then prints nothing)."""
    if not netns.availability()[0]:
        return ""
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def without_counters(ruleset: str) -> list[str]:
    return [line.split(" [")[0] for line in ruleset.splitlines() if not line.startswith("#")]


@pytest.fixture
def crash_harness(tmp_path):
    """Start the crash harness (`crash_harness(mode)` -> process, its JSON line); whatever a failed test left
    running is killed afterwards and its namespaces and orphans removed (cleanup_stale spares live runs)."""
    started = []

    def start(mode: str):
        process = subprocess.Popen([sys.executable, str(CRASH_SCRIPT), mode, str(tmp_path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(process)
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"crash harness did not start: {process.stderr.read().decode()}")
        return process, orjson.loads(line)

    yield start
    leftovers = [p for p in started if p.poll() is None]
    for process in leftovers:
        process.kill()
        process.wait(timeout=10)
    if leftovers:
        cleanup_stale()


@pytest.mark.parametrize("mode", MODES)
def test_close_leaves_nothing_behind(mode, tmp_path):
    skip_unless_mode_available(mode)
    firewall = without_counters(root_firewall())
    with open_cluster(3, mode=mode) as cluster, Brokers(cluster, tmp_path, command=health_server_command) as brokers:
        brokers.start()
        brokers.wait_healthy(timeout_s=15)
        cluster.set_grudge("test", isolate(cluster.nodes, [2]))
        slot, pids = cluster.slot, [p.pid for p in brokers.processes.values()]
        if mode == "netns":
            assert len(slot_names(slot)) == 5  # 3 hosts, the switch, the client link
    assert slot_names(slot) == []
    assert wait_dead(pids) == []
    assert without_counters(root_firewall()) == firewall


@pytest.mark.parametrize("mode", MODES)
def test_sigkilled_harness_leaves_leftovers_that_cleanup_stale_removes(mode, crash_harness):
    skip_unless_mode_available(mode)
    process, info = crash_harness(mode)
    process.kill()
    process.wait(timeout=10)
    assert all(alive(p) for p in info["pids"])  # orphans: nobody cleaned up
    if mode == "netns":
        assert slot_names(info["slot"])
    if mode == "netns":  # the namespaces alone lead to the orphans inside them
        assert set(slot_names(info["slot"])) <= set(netns.cleanup_stale())
    else:  # the run marker in their environment does
        assert set(info["pids"]) <= set(cleanup_stale()["killed_pids"])
    assert wait_dead(info["pids"]) == []
    assert slot_names(info["slot"]) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("mode", MODES)
def test_sigterm_and_ctrl_c_make_the_harness_clean_up_itself(mode, sig, crash_harness):
    skip_unless_mode_available(mode)
    process, info = crash_harness(mode)
    process.send_signal(sig)
    assert process.wait(timeout=20) != 0
    said = process.stderr.read().decode(errors="replace")[-3000:]  # what its teardown reported, if it failed
    assert wait_dead(info["pids"]) == [], said
    assert slot_names(info["slot"]) == [], said
    assert info["token"] not in runslot.live_tokens()


def test_a_namespace_that_cannot_be_deleted_does_not_keep_the_others(tmp_path, monkeypatch):
    """A namespace `ip netns delete` keeps failing on fails close() with its name and the reason, after every
    other namespace and link of the run is deleted all the same.  (The failure comes from an `ip` earlier on
    PATH that refuses that one delete: the kernel offers no steady way to keep a namespace file busy.)"""
    skip_unless_mode_available("netns")
    cluster = netns.NetnsCluster(3, {"http": 8080})
    slot, stuck = cluster.slot, netns.ns_name(cluster.slot, 2)
    real_ip = shutil.which("ip")
    fake = tmp_path / "bin" / "ip"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
if [ "$*" = "netns delete {stuck}" ]; then echo 'Cannot remove namespace file: Device or resource busy' >&2; exit 1; fi
exec {real_ip} "$@"
""")
    fake.chmod(0o755)
    try:
        monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
        with pytest.raises(netns.NetnsError, match=f"{stuck} failed.*busy"):
            cluster.close()
        assert slot_names(slot) == [stuck]
    finally:
        monkeypatch.undo()
        cluster.close()
        netns.cleanup_stale()  # whatever close() left, once the run's slot is free
    assert slot_names(slot) == []


@pytest.mark.parametrize("mode", MODES)
def test_cleanup_stale_spares_live_runs(mode, tmp_path):
    skip_unless_mode_available(mode)
    with open_cluster(3, mode=mode) as cluster, Brokers(cluster, tmp_path, command=health_server_command) as brokers:
        brokers.start()
        brokers.wait_healthy(timeout_s=15)
        result = cleanup_stale()
        assert not set(result["killed_pids"]) & {p.pid for p in brokers.processes.values()}
        assert all(brokers.running(n) for n in cluster.nodes)
        assert all(reachability(cluster, timeout_s=1.0).values())


def test_run_slots_are_exclusive_and_freed_on_release():
    first, second = runslot.acquire(), runslot.acquire()
    try:
        assert first.number != second.number
        assert {first.token, second.token} <= runslot.live_tokens()
        with runslot.stale_slots([first.number]) as stale:
            assert stale == set()
    finally:
        first.release()
    try:
        assert first.token not in runslot.live_tokens()
        with runslot.stale_slots([first.number]) as stale:
            assert stale == {first.number}
    finally:
        second.release()
