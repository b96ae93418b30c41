"""RaftHost on a disk that fills up: three hosts in one event loop, broker 3's data dir on a real tmpfs.

A replica whose write fails (ENOSPC) stops acting for its group: leadership moves within an
election timeout, proposals to it fail at once with StorageUnavailableError (nothing appended),
the others keep committing, and once space is freed the replica reopens from its checkpoint and
catches up without a restart. Below the low-disk watermark only non-critical groups stop.
An fsync that fails (EIO, on an ext4 that is shut down) under a leader whose followers sleep
(quiesced group) still lets them elect another leader.
"""

import asyncio
import os

import pytest

from raftka.raft.core import Role
from raftka.raft.host import HostConfig, ProposalOutcomeUnknownError, RaftHost, StorageUnavailableError

from test_raft_host import JsonListMachine, wait_until
from small_fs import mounted_ext4, mounted_tmpfs

pytestmark = pytest.mark.timeout(60)
MIB = 1 << 20


class ReopenableMachine(JsonListMachine):
    def reopen(self):
        self.__init__(os.path.dirname(self.path))


def config(min_free_bytes: int = 0) -> HostConfig:
    return HostConfig(tick_ms=20, election_ticks=10, heartbeat_ticks=2, checkpoint_interval_s=0.2,
                      journal_keep_entries=5, min_free_bytes=min_free_bytes, storage_check_ticks=2)


async def start_hosts(dirs: dict[int, str], configs: dict[int, HostConfig]) -> dict[int, RaftHost]:
    hosts = {}
    for i, directory in dirs.items():
        hosts[i] = RaftHost(i, directory, listen=("127.0.0.1", 0), peers={j: ("127.0.0.1", 1) for j in dirs},
                            secret=b"s3cret", config=configs[i])
        await hosts[i].start()
    for i in dirs:
        hosts[i].transport.set_peers({j: ("127.0.0.1", hosts[j].port) for j in dirs if j != i})
    return hosts


def add_group(hosts, dirs, name, critical=False):
    machines = {}
    for i, host in hosts.items():
        machines[i] = ReopenableMachine(os.path.join(dirs[i], "sm", name))
        host.add_group(name, sorted(hosts), machines[i], critical=critical)
    return machines


def leader_of(hosts, name):
    leaders = [i for i, h in hosts.items() if h.read_allowed(name)]
    return leaders[0] if len(leaders) == 1 else None


async def lead_from(hosts, name, broker):
    """Make `broker` the group's leader (leadership transfer)."""
    async def moved():
        while leader_of(hosts, name) != broker:
            current = leader_of(hosts, name)
            if current is not None:
                hosts[current].groups[name].node.transfer_leadership(broker)
            await asyncio.sleep(0.1)
    await asyncio.wait_for(moved(), 15)


async def commit(hosts, name, value, timeout=10.0):
    """Propose through whichever healthy broker leads; returns it once applied there."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        leader = leader_of(hosts, name)
        if leader is not None:
            try:
                await asyncio.wait_for(hosts[leader].propose(name, value), 2)
                return leader
            except Exception:
                pass
        assert asyncio.get_running_loop().time() < deadline, f"{value!r} not committed"
        await asyncio.sleep(0.05)


@pytest.fixture
def dirs(tmp_path):
    with mounted_tmpfs(tmp_path / "b3", 8 * MIB) as disk:
        yield {1: str(tmp_path / "b1"), 2: str(tmp_path / "b2"), 3: str(tmp_path / "b3")}, disk


async def stop_all(hosts):
    for host in hosts.values():
        await host.stop()


def test_full_disk_moves_leadership_and_the_replica_reopens_once_space_returns(dirs):
    dirs, disk = dirs

    async def main():
        hosts = await start_hosts(dirs, {i: config() for i in dirs})
        try:
            machines = add_group(hosts, dirs, "g")
            await wait_until(lambda: leader_of(hosts, "g") is not None)
            await lead_from(hosts, "g", 3)
            acked = [f"v{i}" for i in range(20)]
            for value in acked:
                await hosts[3].propose("g", value.encode())
            disk.fill()
            refused, fate_unknown = None, set()
            for i in range(200):  # a page may still have room for a few small entries
                try:
                    await asyncio.wait_for(hosts[3].propose("g", b"w%d" % i), 2)
                    acked.append(f"w{i}")
                except StorageUnavailableError as exc:  # refused before it was appended
                    refused = exc
                    break
                except ProposalOutcomeUnknownError:  # appended, then the disk failed (e.g. its checkpoint)
                    fate_unknown.add(f"w{i}")
                    break
            assert fate_unknown or (refused is not None and refused.reason == "disk full"), refused
            await wait_until(lambda: leader_of(hosts, "g") in (1, 2), timeout=10)  # the core: within an election timeout
            assert hosts[3].storage_status()["status"] == "failed"
            assert hosts[3].groups["g"].node.storage_failed
            with pytest.raises(StorageUnavailableError):
                await hosts[3].propose("g", b"refused")
            for i in range(20):
                acked.append(f"x{i}")
                await commit(hosts, "g", acked[-1].encode())
            assert hosts[3].groups["g"].node.role is Role.FOLLOWER
            disk.free()
            await wait_until(lambda: hosts[3].groups["g"].storage_error is None, timeout=15)
            leader = leader_of(hosts, "g")
            await wait_until(lambda: machines[3].items == machines[leader].items, timeout=15)
            assert [v for v in machines[3].items if v not in fate_unknown] == acked
            await lead_from(hosts, "g", 3)  # a working replica again: it may lead
            await hosts[3].propose("g", b"after")
        finally:
            await stop_all(hosts)

    asyncio.run(main())


def test_low_disk_watermark_stops_partition_groups_but_not_critical_ones(dirs):
    dirs, disk = dirs

    async def main():
        hosts = await start_hosts(dirs, {i: config(min_free_bytes=3 * MIB) for i in dirs})
        try:
            data = add_group(hosts, dirs, "data")
            add_group(hosts, dirs, "meta", critical=True)
            for name in ("data", "meta"):
                await wait_until(lambda: leader_of(hosts, name) is not None)
                await lead_from(hosts, name, 3)
            disk.fill(leave_bytes=2 * MIB)
            await wait_until(lambda: hosts[3].storage_status()["status"] == "low")
            await wait_until(lambda: leader_of(hosts, "data") in (1, 2))
            with pytest.raises(StorageUnavailableError) as refused:
                await hosts[3].propose("data", b"x")
            assert "below --min-free-bytes" in refused.value.reason
            await hosts[3].propose("meta", b"still-working")  # the metadata group uses the reserve
            assert leader_of(hosts, "meta") == 3
            await commit(hosts, "data", b"elsewhere")
            disk.free()
            await wait_until(lambda: hosts[3].storage_status()["status"] == "ok")
            assert not hosts[3].groups["data"].node.storage_failed
            leader = leader_of(hosts, "data")
            await wait_until(lambda: data[3].items == data[leader].items == ["elsewhere"])
        finally:
            await stop_all(hosts)

    asyncio.run(main())


def test_a_failed_fsync_under_a_quiesced_group_still_lets_the_followers_elect_another_leader(tmp_path):
    """The leader of an idle, quiesced group appends an entry and its fsync fails (EIO): it can send
    nothing that the entry's durability would back, yet its sleeping followers must not wait forever."""
    with mounted_ext4(tmp_path / "b3", tmp_path / "b3.img", 32 * MIB) as disk:
        dirs = {1: str(tmp_path / "b1"), 2: str(tmp_path / "b2"), 3: str(tmp_path / "b3")}

        async def main():
            hosts = await start_hosts(dirs, {i: config() for i in dirs})
            try:
                add_group(hosts, dirs, "g")
                await wait_until(lambda: leader_of(hosts, "g") is not None)
                await lead_from(hosts, "g", 3)
                await hosts[3].propose("g", b"before")
                await wait_until(lambda: all(h.groups["g"].node.quiesced for h in hosts.values()), timeout=10)
                group = hosts[3].groups["g"]
                group.node.propose(b"never durable")  # appended; the pump fsyncs it on the next tick ...
                disk.shut_down()  # ... and that fsync fails
                await wait_until(lambda: group.storage_error == "I/O error", timeout=5)
                await wait_until(lambda: leader_of({i: hosts[i] for i in (1, 2)}, "g") is not None, timeout=10)
                await commit({i: hosts[i] for i in (1, 2)}, "g", b"after")
            finally:
                await stop_all(hosts)

        asyncio.run(main())
