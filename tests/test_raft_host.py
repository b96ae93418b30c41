"""RaftHost: several brokers' hosts on real sockets and real journals in one event loop."""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import threading
import time

import orjson
import pytest
import uvloop

from raftka.raft.core import NotLeaderError, Role
from raftka.raft.host import HostConfig, RaftHost
from raftka.storage import LEDGER_ENV, atomic_write
from raftka.storage.powerloss import apply_ledger


class JsonListMachine:
    """A small durable state machine for host tests: the list of applied payloads."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "sm.json")
        try:
            with open(self.path, "rb") as f:
                state = orjson.loads(f.read())
        except FileNotFoundError:
            state = {"index": 0, "term": 0, "items": []}
        self.applied_index, self.applied_term, self.items = state["index"], state["term"], state["items"]
        self.staging = None
        self.checkpoint_io, self.installs = threading.Lock(), 0

    def apply(self, index, term, data):
        assert index == self.applied_index + 1, (index, self.applied_index)
        self.applied_index, self.applied_term = index, term
        if data:
            self.items.append(data.decode())
        return len(self.items)

    def checkpoint(self):
        index, job = self.begin_checkpoint()
        job()
        return index

    def begin_checkpoint(self):
        """The state taken now, written in the host's worker thread (as a partition and the metadata do)."""
        index, document, installs = self.applied_index, self.document(), self.installs

        def job():
            with self.checkpoint_io:
                if installs == self.installs:  # else an install's checkpoint, newer, is on disk
                    atomic_write(self.path, document)
        return index, job

    def document(self):
        return orjson.dumps({"index": self.applied_index, "term": self.applied_term, "items": self.items})

    def close(self):
        pass

    def begin_install(self):
        self.staging = None
        return b""

    def read_chunk(self, cursor):
        return orjson.dumps({"index": self.applied_index, "items": self.items}), True, self.applied_index

    def install_chunk(self, data):
        self.staging = orjson.loads(data)
        return b""

    def finish_install(self, index, term):
        if self.staging is None or self.staging["index"] != index:
            return False
        self.items, self.applied_index, self.applied_term = self.staging["items"], index, term
        self.staging = None
        with self.checkpoint_io:
            self.installs += 1
            atomic_write(self.path, self.document())
        return True


FAST = HostConfig(tick_ms=20, election_ticks=10, heartbeat_ticks=2, checkpoint_interval_s=0.2,
                  journal_keep_entries=5)


async def start_cluster(tmp_path, n, secret=b"s3cret", ports=None, config=FAST):
    ids = list(range(1, n + 1))
    hosts = {}
    # Bind every transport first (port 0), then tell each host its peers' real ports.
    for i in ids:
        port = ports[i] if ports else 0
        hosts[i] = RaftHost(i, str(tmp_path / f"b{i}"), listen=("127.0.0.1", port),
                            peers={j: ("127.0.0.1", 1) for j in ids}, secret=secret, config=config)
        await hosts[i].start()
    addresses = {i: ("127.0.0.1", hosts[i].port) for i in ids}
    for i in ids:
        hosts[i].transport.set_peers({j: a for j, a in addresses.items() if j != i})
    return hosts, addresses


def add_group(hosts, tmp_path, name="g", members=None):
    members = members or sorted(hosts)
    machines = {}
    for i in members:
        machines[i] = JsonListMachine(str(tmp_path / f"b{i}" / "sm" / name))
        hosts[i].add_group(name, members, machines[i])
    return machines


async def wait_leader(hosts, name="g", timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        leaders = [i for i, h in hosts.items() if name in h.groups and h.read_allowed(name)]
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no leader for {name}: {[h.status() for h in hosts.values()]}")


async def propose_retrying(hosts, value, name="g", timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        leader = await wait_leader(hosts, name, timeout)
        try:
            return await asyncio.wait_for(hosts[leader].propose(name, value), 2)
        except (NotLeaderError, asyncio.TimeoutError, Exception):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def wait_until(predicate, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def test_three_hosts_replicate_and_survive_leader_loss(tmp_path):
    async def main():
        hosts, addresses = await start_cluster(tmp_path, 3)
        machines = add_group(hosts, tmp_path)
        leader = await wait_leader(hosts)
        for k in range(20):
            await hosts[leader].propose("g", b"v%d" % k)
        await wait_until(lambda: all(len(m.items) == 20 for m in machines.values()))
        # A follower refuses proposals with a hint to the leader.
        follower = next(i for i in hosts if i != leader)
        with pytest.raises(NotLeaderError) as info:
            await hosts[follower].propose("g", b"x")
        assert info.value.leader == leader
        before = {i: h.election_stats() for i, h in hosts.items()}  # GET /raft "elections"
        assert before[leader]["won"] >= 1 and before[leader]["started"] >= 1, before
        await hosts.pop(leader).stop(transfer_timeout=0)  # crash-like: no transfer
        await propose_retrying(hosts, b"after")
        successor = await wait_leader(hosts)
        assert hosts[successor].election_stats()["won"] > before[successor]["won"]
        assert sum(h.election_stats()["started"] for h in hosts.values()) > sum(before[i]["started"] for i in hosts)
        survivors = [machines[i] for i in hosts]
        await wait_until(lambda: all(m.items[-1] == "after" for m in survivors))
        assert all(m.items[:20] == ["v%d" % k for k in range(20)] for m in survivors)
        await hosts.pop(next(i for i in hosts if i != successor)).stop(transfer_timeout=0)  # no quorum left
        await wait_until(lambda: hosts[successor].group("g").node.role is not Role.LEADER)
        assert hosts[successor].election_stats()["stepped_down"] == 1
        for h in hosts.values():
            await h.stop()
    asyncio.run(main())


@pytest.mark.parametrize("quiet", [False, True], ids=["busy", "quiesced"])
def test_an_event_loop_that_stood_still_starts_no_election(tmp_path, quiet):
    """A broker's event loop stands still for longer than an election timeout (a long callback, CPU starvation, a
    paused process): its peers' frames wait unread, and uvloop (the brokers' loop) runs the due timers before it
    reads them.  The ticker then took every peer for silent: quiesced followers woke up to campaign against
    leaders that were there all along, and leaders could step down for want of a quorum.  The time the loop stood
    still does not count as the peers' silence: here the three hosts share one loop, and no group starts an
    election, loses its leader or changes its term, awake or quiesced."""
    names = [f"g{k}" for k in range(6)]

    async def main():
        async with running_hosts(tmp_path) as (hosts, _, _, _):
            for name in names:
                add_group(hosts, tmp_path, name)
            leaders = {name: await wait_leader(hosts, name) for name in names}
            for name in names:
                await propose_retrying(hosts, b"x", name)
            await asyncio.sleep(3 * FAST.election_timeout_s)  # idle groups go quiet ...
            assert all(h.group(n).node.quiesced for h in hosts.values() for n in names)
            if not quiet:  # ... and a proposal wakes them
                await asyncio.gather(*(hosts[leaders[name]].propose(name, b"y") for name in names))
            terms = {name: hosts[leaders[name]].group(name).node.log.term for name in names}
            campaigns = {i: h.liveness.campaigns_started for i, h in hosts.items()}
            time.sleep(3 * FAST.election_timeout_s)  # the loop stands still
            await asyncio.sleep(3 * FAST.election_timeout_s)
            assert {i: h.liveness.stepped_down for i, h in hosts.items()} == {i: 0 for i in hosts}
            assert {i: h.liveness.campaigns_started for i, h in hosts.items()} == campaigns
            assert {name: await wait_leader(hosts, name) for name in names} == leaders
            assert {name: hosts[leaders[name]].group(name).node.log.term for name in names} == terms

    uvloop.run(main())


def test_a_quiesced_followers_clock_keeps_time_while_it_sleeps(tmp_path):
    """A follower goes quiet on its leader's last heartbeat (a message, not a tick): its clock must still
    catch up when it is next touched.  Left behind, it took itself for just restarted when a vote request
    woke it (leader stickiness for an election timeout): every first election after a broker's death was
    refused, and 10,000 partitions took seconds longer to regain leaders."""
    async def main():
        hosts, _ = await start_cluster(tmp_path, 3)
        try:
            add_group(hosts, tmp_path)
            leader = await wait_leader(hosts)
            await hosts[leader].propose("g", b"v")
            await wait_until(lambda: all(h.groups["g"].node.quiesced for h in hosts.values()), timeout=10)
            before = {i: (h.groups["g"].node.now, h.host_ticks) for i, h in hosts.items()}
            await asyncio.sleep(5 * FAST.election_ticks * FAST.tick_ms / 1000)
            for i, h in hosts.items():
                h.liveness.catch_up(h.groups["g"])
                slept = h.host_ticks - before[i][1]
                assert slept >= 3 * FAST.election_ticks
                assert h.groups["g"].node.now - before[i][0] >= slept - 1, (i, "leader" if i == leader else "follower")
        finally:
            for h in hosts.values():
                await h.stop()
    asyncio.run(main())


# Heartbeat interval close to half the election timeout: an answer in the next heartbeat could come after
# the lease ran out, so heartbeats are answered at once (two frames per interval each way).
SLOW_BEATS = dataclasses.replace(FAST, heartbeat_ticks=4)


@pytest.mark.parametrize("config, frames_per_beat", [(FAST, 1), (SLOW_BEATS, 2)], ids=["echo", "answer-at-once"])
def test_idle_hosts_exchange_heartbeats_and_keep_the_lease(tmp_path, config, frames_per_beat):
    """With every group quiesced, a host wakes once per heartbeat interval (not per tick) and sends one
    frame per interval to each peer: its heartbeat, which also answers the peer's last one (the echo).  The
    quiesced leader keeps its read lease throughout on those answers."""
    async def main():
        hosts, _ = await start_cluster(tmp_path, 3, config=config)
        try:
            add_group(hosts, tmp_path)
            leader = await wait_leader(hosts)
            await hosts[leader].propose("g", b"v")
            await wait_until(lambda: all(h.groups["g"].node.quiesced for h in hosts.values()), timeout=10)
            await asyncio.sleep(0.2)  # the last answers of the wake-up are out

            def frames():
                return {i: {p: st["frames_sent"] for p, st in h.transport_stats()["peers"].items()}
                        for i, h in hosts.items()}
            before, rounds = frames(), {i: h.ticker_rounds for i, h in hosts.items()}
            beat_s = config.heartbeat_ticks * config.tick_ms / 1000
            began = time.monotonic()
            lapses = 0
            while time.monotonic() - began < 40 * beat_s:
                lapses += not hosts[leader].read_allowed("g")
                await asyncio.sleep(0.01)
            beats = (time.monotonic() - began) / beat_s
            after = frames()
            assert lapses == 0, "the quiesced leader lost its lease while idle"
            assert all(h.groups["g"].node.quiesced for h in hosts.values())
            for i, h in hosts.items():
                assert h.ticker_rounds - rounds[i] <= 1.3 * beats, (i, h.ticker_rounds - rounds[i], beats)
                for peer, sent in after[i].items():
                    assert 0.7 * frames_per_beat * beats <= sent - before[i][peer] <= 1.3 * frames_per_beat * beats, \
                        (i, peer, sent - before[i][peer], beats)
        finally:
            for h in hosts.values():
                await h.stop()
    asyncio.run(main())


def test_an_unchanged_announcement_still_counts_as_hearing_the_incarnation(tmp_path):
    """Heartbeats whose announcement did not change are not decoded again, but each one still says when
    the broker's incarnation was last heard: the broker registry tells a live data directory from a gone
    one by it (two directories announcing one broker id; a join with a live broker's id)."""
    async def main():
        hosts, _ = await start_cluster(tmp_path, 2)
        try:
            hosts[1].announce(7, True)
            await wait_until(lambda: 7 in hosts[2].incarnations_heard[1])
            first = hosts[2].incarnations_heard[1][7]
            await asyncio.sleep(20 * FAST.heartbeat_ticks * FAST.tick_ms / 1000)
            assert time.monotonic() - hosts[2].incarnations_heard[1][7] < 0.5, "the incarnation went unheard"
            assert hosts[2].incarnations_heard[1][7] > first
            assert hosts[2].peer_announcements[1].incarnation == 7
        finally:
            for h in hosts.values():
                await h.stop()
    asyncio.run(main())


def test_large_entries_replicate_to_every_follower(tmp_path):
    async def main():
        hosts, _ = await start_cluster(tmp_path, 3)
        machines = add_group(hosts, tmp_path)
        leader = await wait_leader(hosts)
        big = b"x" * (1 << 20)
        for _ in range(3):
            await hosts[leader].propose("g", big)
        await wait_until(lambda: all(len(m.items) == 3 for m in machines.values()), timeout=10)
        statuses = {i: h.status()[0] for i, h in hosts.items()}
        followers = statuses[leader]["followers"]
        assert all(f["lag"] == 0 for f in followers.values()), followers
        for h in hosts.values():
            await h.stop()
    asyncio.run(main())


def test_wrong_secret_peer_cannot_make_a_node_apply_anything(tmp_path):
    async def main():
        hosts, addresses = await start_cluster(tmp_path, 2)
        machines = add_group(hosts, tmp_path, members=[1, 2])
        leader = await wait_leader(hosts)
        await hosts[leader].propose("g", b"honest")
        def handshake_failures():
            stats = [h.transport_stats() for h in hosts.values()]
            return sum(s["unattributed_handshake_failures"] + sum(p["handshake_failures"] for p in s["peers"].values())
                       for s in stats)

        # An impostor claims to be broker 3 and then broker 1, with the wrong secret.
        for claimed in (3, leader):
            before = handshake_failures()
            impostor = RaftHost(claimed, str(tmp_path / f"imp{claimed}"), listen=("127.0.0.1", 0),
                                peers={**{i: a for i, a in addresses.items()}, claimed: ("127.0.0.1", 0)},
                                secret=b"wrong", config=FAST)
            await impostor.start()
            impostor.add_group("g", [1, 2, claimed] if claimed == 3 else [1, 2], JsonListMachine(
                str(tmp_path / f"imp{claimed}" / "sm")))
            await wait_until(lambda: handshake_failures() > before)  # it tried, and was refused
            await impostor.stop(transfer_timeout=0)
        await propose_retrying(hosts, b"after")
        await wait_until(lambda: all(m.items == ["honest", "after"] for m in machines.values()))
        for h in hosts.values():
            await h.stop()
    asyncio.run(main())


def test_multi_broker_host_requires_a_secret(tmp_path):
    with pytest.raises(ValueError, match="cluster secret"):
        RaftHost(1, str(tmp_path), listen=("127.0.0.1", 0), peers={1: ("127.0.0.1", 1), 2: ("127.0.0.1", 2)},
                 secret=None)


def test_restart_replays_without_applying_twice_and_lagging_follower_catches_up(tmp_path):
    async def main():
        hosts, addresses = await start_cluster(tmp_path, 3)
        add_group(hosts, tmp_path)
        leader = await wait_leader(hosts)
        lagging = next(i for i in hosts if i != leader)
        await hosts[lagging].stop(transfer_timeout=0)
        for k in range(40):
            await hosts[leader].propose("g", b"v%d" % k)
        # Checkpoints (every 0.2 s) compact the leader's journal past the lagging node.
        await wait_until(lambda: hosts[leader].groups["g"].journal.snapshot_index > 0, timeout=30)
        # Restart the lagging broker on its old port: it catches up through a snapshot.
        port = addresses[lagging][1]
        restarted = RaftHost(lagging, str(tmp_path / f"b{lagging}"), listen=("127.0.0.1", port),
                             peers={j: a for j, a in addresses.items()}, secret=b"s3cret", config=FAST)
        await restarted.start()
        sm = JsonListMachine(str(tmp_path / f"b{lagging}" / "sm" / "g"))
        restarted.add_group("g", sorted(hosts), sm)
        await wait_until(lambda: len(sm.items) == 40, timeout=10)
        assert sm.items == ["v%d" % k for k in range(40)]
        # Restart the leader's broker: replay from its checkpoint must not apply twice.
        hosts[lagging] = restarted
        for h in hosts.values():
            await h.stop()
        again = JsonListMachine(str(tmp_path / f"b{leader}" / "sm" / "g"))
        assert again.items == ["v%d" % k for k in range(40)]
    asyncio.run(main())


def test_a_follower_owed_more_than_one_frame_by_several_groups_catches_up(tmp_path):
    """A broker back after a while, catching up while producers go on, is owed more appends in one pump,
    summed over its groups, than one transport frame carries (CI caught 68 MB against the 64 MiB frame:
    the pump raised, every message of that pump was lost, and the broker never caught up): the host
    splits a peer's messages into frames that fit, and its pump never fails."""
    config = dataclasses.replace(FAST, max_frame_bytes=64 << 10, max_append_bytes=16 << 10,
                                 checkpoint_interval_s=60.0, journal_keep_entries=100_000)
    names, backlog, bursts, value = ["g1", "g2", "g3"], 40, 3, b"x" * (12 << 10)
    pump_errors = []

    async def burst(hosts, name, count):
        leader = await wait_leader(hosts, name)
        await asyncio.gather(*(hosts[leader].propose(name, value) for _ in range(count)), return_exceptions=True)

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: pump_errors.append(context))
        hosts, addresses = await start_cluster(tmp_path, 3, config=config)
        for name in names:
            add_group(hosts, tmp_path, name)
            await wait_leader(hosts, name)
        await hosts.pop(3).stop(transfer_timeout=0)
        for name in names:
            await burst(hosts, name, backlog)
        restarted = RaftHost(3, str(tmp_path / "b3"), listen=("127.0.0.1", addresses[3][1]),
                             peers=dict(addresses), secret=b"s3cret", config=config)
        await restarted.start()
        machines = {name: JsonListMachine(str(tmp_path / "b3" / "sm" / name)) for name in names}
        for name in names:
            restarted.add_group(name, [1, 2, 3], machines[name])
        hosts[3] = restarted
        try:
            for _ in range(bursts):  # each burst fills every group's window of appends to broker 3 at once
                await asyncio.gather(*(burst(hosts, name, 32) for name in names))
            leaders = {name: await wait_leader(hosts, name) for name in names}
            await wait_until(lambda: all(machines[n].items == hosts[leaders[n]].groups[n].sm.items
                                         for n in names), timeout=20)
            assert all(len(machines[n].items) == backlog + 32 * bursts for n in names)
        finally:
            for h in hosts.values():
                await h.stop()
        assert not pump_errors, pump_errors[0]
    asyncio.run(main())


class StallableDisk(concurrent.futures.Executor):
    """Fault injection in front of a host's fsync worker pool: while `stalled`, fsyncs wait
    (a slow disk); `power_cut()` drops the waiting ones, which then never happen.  Every call
    comes from the event loop's thread.  `covered` keeps, per waiting fsync, the journal's
    last index when it was submitted (what the fsync makes durable)."""

    def __init__(self, pool, journal):
        self.pool, self.journal = pool, journal
        self.stalled = False
        self.waiting: list[tuple[concurrent.futures.Future, object]] = []
        self.covered: list[int] = []

    def submit(self, fn, /, *args, **kwargs):
        if not self.stalled:
            return self.pool.submit(fn, *args, **kwargs)
        future = concurrent.futures.Future()
        self.waiting.append((future, lambda: fn(*args, **kwargs)))
        self.covered.append(self.journal.last_index)
        return future

    def power_cut(self):
        self.waiting.clear()

    def resume(self):
        self.stalled = False
        waiting, self.waiting = self.waiting, []
        for future, job in waiting:
            self.pool.submit(job).add_done_callback(
                lambda done, future=future: future.set_exception(done.exception()) if done.exception()
                else future.set_result(done.result()))

    def shutdown(self, wait=True, **kwargs):
        self.pool.shutdown(wait=wait, **kwargs)


async def power_cut(host: RaftHost, disk: StallableDisk | None = None) -> None:
    """Stop a host the way a power loss does: no hand-over, no checkpoint, no closing fsync;
    fsyncs still waiting on a stalled disk never happen."""
    if disk is not None:
        disk.power_cut()
    host._ticker.cancel()
    await asyncio.gather(host._ticker, return_exceptions=True)
    await host.transport.close()
    for group in host.groups.values():
        group.closed = True  # its in-flight pump finishes without sending or applying anything
    host._fsync_pool.shutdown(wait=True)


def release_journals(host: RaftHost) -> None:
    """After the files were cut back to their fsynced sizes: let go of the dead host's file
    handles and directory locks (what the kernel does when a process dies)."""
    for group in host.groups.values():
        group.journal._log.close()  # its flush now only fsyncs the already-cut files
    os.close(host._data_dir_lock)


def record_fsyncs(tmp_path, monkeypatch):
    """The ledger where every fsync of the hosts this test starts is recorded (`apply_ledger` cuts files back to
    it). A plain function, not a fixture: test_raft_mutants runs these tests with tmp_path and monkeypatch only."""
    path = tmp_path / "fsync.ledger"
    monkeypatch.setenv(LEDGER_ENV, str(path))
    return path


def stall_disk(host: RaftHost) -> StallableDisk:
    """A stalled disk in front of the host's fsyncs of group "g"; every fsync goes through it, none on the loop."""
    disk = StallableDisk(host._fsync_pool, host.groups["g"].journal)
    disk.stalled = True
    host._fsync_pool = disk
    host.sync_policy.max_s = 0
    return disk


async def cut_power_everywhere(hosts: dict, ledger, tmp_path, disks: dict | None = None,
                               cut_back: list[int] | None = None) -> None:
    """Power fails on every host (fsyncs waiting on a stalled disk never happen); the files of the brokers in
    `cut_back` (all of them by default) are cut back to what was fsynced, and every host's handles let go."""
    for i, host in hosts.items():
        await power_cut(host, (disks or {}).get(i))
    for i in hosts if cut_back is None else cut_back:
        apply_ledger(ledger, tmp_path / f"b{i}")
    for host in hosts.values():
        release_journals(host)


async def group_with_three_entries(hosts: dict, tmp_path) -> tuple[dict, int, list[str]]:
    """Group "g" on every host, three entries applied everywhere: (state machines, leader, the entries)."""
    machines = add_group(hosts, tmp_path)
    leader = await wait_leader(hosts, timeout=30)
    entries = []
    for k in range(3):
        entries.append("v%d" % k)
        await hosts[leader].propose("g", entries[-1].encode())
    await wait_until(lambda: all(len(m.items) == 3 for m in machines.values()), timeout=30)
    return machines, leader, entries


async def stop_everything(hosts: dict, restarted: dict, disks: dict | None = None) -> None:
    """Stop the restarted hosts, release stalled disks (a host stopped early must not wait on a stalled fsync
    forever), then stop whatever original host still runs."""
    for host in restarted.values():
        await host.stop(transfer_timeout=0)
    for disk in (disks or {}).values():
        disk.resume()
    for host in hosts.values():
        if not host._ticker.done():
            await host.stop(transfer_timeout=0)


@contextlib.asynccontextmanager
async def running_hosts(tmp_path, config=FAST):
    """Three started hosts, with the dicts a test fills: hosts it restarted and stalled disks by broker. Whatever
    happens, everything is stopped at the end (`stop_everything`)."""
    hosts, addresses = await start_cluster(tmp_path, 3, config=config)
    restarted, disks = {}, {}
    try:
        yield hosts, addresses, restarted, disks
    finally:
        await stop_everything(hosts, restarted, disks)


async def restart_host(i: int, tmp_path, addresses: dict, members: list[int],
                       config=FAST) -> tuple[RaftHost, JsonListMachine]:
    """Host `i` started again from its data directory, with group "g" of `members` on its JsonListMachine."""
    host = RaftHost(i, str(tmp_path / f"b{i}"), listen=addresses[i], peers=addresses, secret=b"s3cret", config=config)
    await host.start()
    machine = JsonListMachine(str(tmp_path / f"b{i}" / "sm" / "g"))
    host.add_group("g", members, machine)
    return host, machine


async def restart_and_check_nothing_acknowledged_is_lost(restarted, ids, members, addresses, tmp_path, acknowledged):
    """Restart the hosts `ids` from their disks into `restarted` (which the caller stops), commit one more entry
    and check that each of their state machines holds every `acknowledged` value."""
    survivors = {}
    for i in ids:
        restarted[i], survivors[i] = await restart_host(i, tmp_path, addresses, members)
    await propose_retrying(restarted, b"after", timeout=60)
    await wait_until(lambda: all("after" in m.items for m in survivors.values()), timeout=30)
    for i, sm in survivors.items():
        lost = [v for v in acknowledged if v not in sm.items]
        assert not lost, f"acknowledged entries {lost[:5]} lost after power loss (broker {i} has {len(sm.items)})"


async def power_fails_everywhere_and_nothing_acknowledged_is_lost(hosts, restarted, ledger, tmp_path, addresses,
                                                                 acknowledged, disks=None):
    """Power fails on every host at once; all of them restart (into `restarted`) from what they had fsynced,
    and each must hold every acknowledged entry."""
    await cut_power_everywhere(hosts, ledger, tmp_path, disks)
    await restart_and_check_nothing_acknowledged_is_lost(restarted, sorted(hosts), sorted(hosts), addresses, tmp_path,
                                                         acknowledged)


def test_a_follower_acknowledges_only_entries_it_has_fsynced(tmp_path, monkeypatch):
    """Raft's durability rule on the follower side, through the real RaftHost pump: with both
    followers' disks stalled, a new entry is appended by them but not fsynced; the leader must
    not get an acknowledgement for it (so cannot commit it).  Then power fails everywhere, the
    leader's broker never comes back, and the followers restart from what they fsynced: every
    entry the leader acknowledged to its client must still be there."""
    ledger = record_fsyncs(tmp_path, monkeypatch)

    async def main():
        async with running_hosts(tmp_path) as (hosts, addresses, restarted, disks):
            machines, leader, acknowledged = await group_with_three_entries(hosts, tmp_path)
            followers = sorted(i for i in hosts if i != leader)
            await wait_until(lambda: all(hosts[i].groups["g"].synced is None for i in followers), timeout=30)
            for i in followers:
                disks[i] = stall_disk(hosts[i])
            node = hosts[leader].groups["g"].node
            index = node.log.last_index + 1
            proposal = asyncio.ensure_future(hosts[leader].propose("g", b"x"))
            # Both followers appended x and wait for its fsync; the leader's own fsync of x is done.
            await wait_until(lambda: all(any(c >= index for c in disks[i].covered) for i in followers)
                             and hosts[leader].groups["g"].journal.synced_index >= index, timeout=30)
            # Any acknowledgement a follower sent before waiting precedes, on the same connection,
            # its answers to broker heartbeats sent from now on: once the leader has those, it has
            # processed every acknowledgement there was.
            mark = time.monotonic()
            await wait_until(lambda: all(hosts[leader].peer_acked.get(i, 0) > mark for i in followers), timeout=30)
            matched = {i: node.progress[i].match if i in node.progress else 0 for i in followers}
            synced = {i: hosts[i].groups["g"].journal.synced_index for i in followers}
            if node.commit >= index:
                await asyncio.wait_for(asyncio.shield(proposal), 30)
            if proposal.done() and not proposal.exception():
                acknowledged.append("x")
            proposal.cancel()
            await cut_power_everywhere(hosts, ledger, tmp_path, disks, cut_back=followers)
            # the leader's broker is gone for good; its followers restart
            await restart_and_check_nothing_acknowledged_is_lost(restarted, followers, sorted(hosts), addresses,
                                                                 tmp_path, acknowledged)
            assert all(matched[i] <= synced[i] for i in followers), \
                f"the leader saw followers match {matched} beyond what they had fsynced {synced}"
    asyncio.run(main())


def test_a_leader_answers_once_both_followers_fsynced_while_its_own_fsync_hangs(tmp_path, monkeypatch):
    """A slow disk on the leader alone does not hold back answers its followers' disks made safe: with the
    leader's fsyncs stalled, a proposal is answered once both followers have fsynced it (a majority without
    the leader), and so is the next one: the leader sends new entries to its followers while its own fsync
    still runs.  Then power fails everywhere before the leader's fsync ever happens: the leader's journal
    lost the entries it applied, and after the restart every broker, that one too, holds every answered entry."""
    ledger = record_fsyncs(tmp_path, monkeypatch)

    async def main():
        async with running_hosts(tmp_path) as (hosts, addresses, restarted, disks):
            machines, leader, acknowledged = await group_with_three_entries(hosts, tmp_path)
            await wait_until(lambda: hosts[leader].groups["g"].synced is None, timeout=30)
            disks[leader] = stall_disk(hosts[leader])
            index = hosts[leader].groups["g"].node.log.last_index + 1
            for value in ("x", "y"):
                await asyncio.wait_for(hosts[leader].propose("g", value.encode()), 30)
                acknowledged.append(value)
                assert value in machines[leader].items
            assert hosts[leader].groups["g"].journal.synced_index < index  # answered before its own fsync
            await wait_until(lambda: any(c >= index for c in disks[leader].covered), timeout=5)  # stalled there
            await power_fails_everywhere_and_nothing_acknowledged_is_lost(hosts, restarted, ledger, tmp_path,
                                                                        addresses, acknowledged, disks)
    asyncio.run(main())


# A leader's own fsync waits a minute here unless a checkpoint or a silent follower needs it.
LAZY_LEADER = dataclasses.replace(FAST, leader_sync_delay_ms=60_000, commit_lag_ms=60_000)
# Every replica fsyncs each round (tests of the fsync paths themselves count a leader's fsyncs too).
EAGER_LEADER = dataclasses.replace(FAST, leader_sync_delay_ms=0)


def test_a_leader_whose_followers_commit_lets_its_fsync_wait_and_power_loss_loses_nothing(tmp_path, monkeypatch):
    """While both followers answer, a leader lets its own journal fsync wait (`leader_sync_delay_ms`): its
    proposals are answered once the followers fsynced them.  Power then fails everywhere before the leader
    fsyncs: its journal lost every one of them, and after the restart every broker holds every answered entry."""
    ledger = record_fsyncs(tmp_path, monkeypatch)
    config = dataclasses.replace(LAZY_LEADER, journal_keep_entries=10_000)  # no checkpoint fsyncs the journal

    async def main():
        async with running_hosts(tmp_path, config) as (hosts, addresses, restarted, disks):
            machines, leader, acknowledged = await group_with_three_entries(hosts, tmp_path)
            journal = hosts[leader].groups["g"].journal
            synced = journal.synced_index
            for k in range(20):
                acknowledged.append(f"lazy{k}")
                await asyncio.wait_for(hosts[leader].propose("g", acknowledged[-1].encode()), 10)
            assert journal.synced_index == synced < journal.last_index  # answered, never fsynced by the leader
            await power_fails_everywhere_and_nothing_acknowledged_is_lost(hosts, restarted, ledger, tmp_path,
                                                                        addresses, acknowledged)
    asyncio.run(main())


def test_a_leader_fsyncs_at_once_when_a_follower_falls_silent(tmp_path):
    """With one follower gone, the leader's fsync is part of every commit: it stops waiting for the delay (a
    minute here) as soon as the follower's silence shows, whether it went before or after the proposal came."""
    async def main():
        async with running_hosts(tmp_path, LAZY_LEADER) as (hosts, _, restarted, disks):
            machines, leader, _ = await group_with_three_entries(hosts, tmp_path)
            follower = next(i for i in hosts if i != leader)
            await hosts[follower].stop(transfer_timeout=0)
            started = time.monotonic()
            await asyncio.wait_for(hosts[leader].propose("g", b"right after"), 10)
            await asyncio.sleep(0.5)
            await asyncio.wait_for(hosts[leader].propose("g", b"later"), 10)
            assert time.monotonic() - started < 5
            assert machines[leader].items[-2:] == ["right after", "later"]
    asyncio.run(main())


def test_a_leader_fsyncs_once_its_entries_wait_uncommitted_for_a_slow_follower(tmp_path):
    """One follower's disk stalls while it still looks healthy (its silence would show only after 2 s here): the
    leader's entries stay uncommitted for `commit_lag_ms`, and then it fsyncs them itself, without waiting for
    the delay (a minute) or for the follower's silence."""
    config = dataclasses.replace(FAST, leader_sync_delay_ms=60_000, commit_lag_ms=2, election_ticks=200,
                                 heartbeat_ticks=50)

    async def main():
        async with running_hosts(tmp_path, config) as (hosts, _, restarted, disks):
            machines, leader, _ = await group_with_three_entries(hosts, tmp_path)
            follower = next(i for i in hosts if i != leader)
            await wait_until(lambda: hosts[follower].groups["g"].synced is None, timeout=30)
            disks[follower] = stall_disk(hosts[follower])
            started = time.monotonic()
            await asyncio.wait_for(hosts[leader].propose("g", b"slow follower"), 10)
            assert time.monotonic() - started < 1
            assert hosts[leader].groups["g"].journal.synced_index == hosts[leader].groups["g"].node.log.last_index
    asyncio.run(main())


def test_a_leader_that_let_its_fsync_wait_fsyncs_before_it_checkpoints(tmp_path):
    """The checkpoint of a leader that applied entries its own fsync has not covered fsyncs the journal first,
    in the checkpoint's worker thread: checkpoints (and the journal compaction behind them) go on, and none
    gets ahead of the durable journal."""
    async def main():
        async with running_hosts(tmp_path, LAZY_LEADER) as (hosts, _, restarted, disks):
            machines, leader, _ = await group_with_three_entries(hosts, tmp_path)
            group = hosts[leader].groups["g"]
            deadline = time.monotonic() + 10
            k = 0
            while group.checkpointed < 30:  # proposals keep coming: the group never goes quiet (which fsyncs too)
                assert time.monotonic() < deadline, f"no checkpoint past {group.checkpointed}"
                await asyncio.wait_for(hosts[leader].propose("g", b"c%d" % k), 10)
                k += 1
            with open(machines[leader].path, "rb") as f:
                on_disk = orjson.loads(f.read())["index"]
            assert group.checkpointed <= on_disk <= group.journal.synced_index
            assert group.journal.snapshot_index > 0  # compacted
    asyncio.run(main())


def test_fast_lone_fsyncs_run_on_the_loop_and_what_they_acknowledged_survives_power_loss(tmp_path, monkeypatch):
    """A pump's only journal fsync runs on the event loop once fsyncs have been fast (sync_policy), in worker
    threads when the policy says no: both paths replicate every entry, and no entry acknowledged through the
    inline path is lost when power fails on every broker at once (files cut back to what was fsynced)."""
    ledger = record_fsyncs(tmp_path, monkeypatch)

    async def main():
        async with running_hosts(tmp_path, EAGER_LEADER) as (hosts, addresses, restarted, disks):
            for h in hosts.values():  # fast enough whatever the disk and the machine's load: only the streak counts
                h.sync_policy.max_s = 60.0
            add_group(hosts, tmp_path)
            acknowledged = []
            for k in range(80):
                acknowledged.append(f"inline{k}")
                await propose_retrying(hosts, acknowledged[-1].encode())
            inline = {i: h.sync_policy.inline_count for i, h in hosts.items()}
            assert all(inline.values()), f"no fsync ran on the loop: {inline}"
            for h in hosts.values():
                h.sync_policy.max_s = 0
            for k in range(20):
                acknowledged.append(f"threads{k}")
                await propose_retrying(hosts, acknowledged[-1].encode())
            assert {i: h.sync_policy.inline_count for i, h in hosts.items()} == inline
            await power_fails_everywhere_and_nothing_acknowledged_is_lost(hosts, restarted, ledger, tmp_path,
                                                                        addresses, acknowledged)
    asyncio.run(main())


def test_slow_fsyncs_are_counted_and_logged_at_most_once_a_second(tmp_path, caplog):
    """Every fsync counts as slow here (slow_s 0), on the loop and in the threads: each host counts them all and
    logs at most one line a second, which names the group and where the fsync ran."""
    async def main():
        hosts, _ = await start_cluster(tmp_path, 3, config=EAGER_LEADER)
        try:
            for h in hosts.values():
                h.sync_policy.slow_s = 0.0
                h.sync_policy.max_s = 60.0  # on the loop once the streak is there
            add_group(hosts, tmp_path)
            started = time.monotonic()
            for k in range(60):
                await propose_retrying(hosts, b"e%d" % k)
            await asyncio.sleep(1.1)  # the next slow fsync is logged again, with the count of those that were not
            for k in range(5):
                await propose_retrying(hosts, b"f%d" % k)
            return {i: (h.sync_policy.slow_count, h.sync_policy.slow_inline_count) for i, h in hosts.items()}, \
                time.monotonic() - started
        finally:
            for h in hosts.values():
                await h.stop(transfer_timeout=0)

    with caplog.at_level(logging.WARNING, logger="raftka.raft.host"):
        counts, seconds = asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "journal fsync took" in r.getMessage()]
    # 65 entries; a leader that answers from its followers' majority while its own fsync runs may fold the next
    # entry into its following fsync, so a host syncs a little less often than once per entry
    assert all(slow >= 40 and inline > 0 for slow, inline in counts.values()), counts
    assert 6 <= len(lines) <= 3 * (int(seconds) + 2), (len(lines), seconds)
    assert any(line.startswith("raft group g: a journal fsync took") and "on the event loop" in line
               and "similar in the last 1 s not logged" in line for line in lines), lines


def test_an_idle_broker_beats_half_as_often_unless_an_echo_could_then_come_too_late_for_a_lease():
    # the brokers' defaults: 50 ms ticks, heartbeat 100 ms, election timeout 800 ms -> idle beat 200 ms
    assert HostConfig(tick_ms=50, heartbeat_ticks=2, election_ticks=16).idle_beat_ticks == 4
    # a quiesced leader's lease is election_ticks - 1 ticks; an echo comes at most two idle beats after
    # the beat it answers (plus a tick of slack): 2 * 4 + 2 > 10 - 1, so the idle beat stays the heartbeat
    assert HostConfig(tick_ms=50, heartbeat_ticks=2, election_ticks=10).idle_beat_ticks == 2
    assert HostConfig(heartbeat_ticks=2, election_ticks=10, idle_heartbeat_ticks=3).idle_beat_ticks == 3


def test_a_leader_says_when_a_followers_disk_lost_entries_it_had_acknowledged(tmp_path, monkeypatch, caplog):
    """A disk that lies: a follower's files are cut back to what it had fsynced a few entries earlier (it
    acknowledged the later ones as durable). Raft cannot repair that; the leader's log says it."""
    ledger = record_fsyncs(tmp_path, monkeypatch)
    config = dataclasses.replace(FAST, journal_keep_entries=10_000)  # no checkpoint rewrites a file meanwhile

    async def main():
        async with running_hosts(tmp_path, config) as (hosts, addresses, restarted, _disks):
            machines, leader, _ = await group_with_three_entries(hosts, tmp_path)
            follower = next(i for i in hosts if i != leader)
            before = ledger.read_text()
            for k in range(5):
                await asyncio.wait_for(hosts[leader].propose("g", b"later%d" % k), 10)
            node = hosts[leader].groups["g"].node
            await wait_until(lambda: node.progress[follower].match == node.log.last_index, timeout=10)
            await power_cut(hosts[follower])
            earlier = tmp_path / "earlier.ledger"
            earlier.write_text(before)
            apply_ledger(earlier, tmp_path / f"b{follower}")  # what it fsynced before the last five entries
            release_journals(hosts[follower])
            del hosts[follower]
            restarted[follower], _ = await restart_host(follower, tmp_path, addresses, sorted(addresses), config)
            with caplog.at_level(logging.WARNING, logger="raftka.raft.host"):
                await asyncio.wait_for(hosts[leader].propose("g", b"next"), 10)  # the other follower commits it
                await wait_until(lambda: "its disk lost fsynced writes" in caplog.text, timeout=10)
            assert f"broker {follower}'s replica no longer holds entry" in caplog.text
    asyncio.run(main())
