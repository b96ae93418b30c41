"""Removing a Raft group from a host: what is left of it in memory and on disk.

A removed group is freed as its last reference goes, not by a full garbage collection. A broker freezes its
heap out of the collector's scans (node/cluster/heap.py); a removed group caught in a reference cycle would
then stay until a full collection, which takes about half a second on a broker with 10,000 partitions.
Three in-process hosts run a partition group (the broker's state machine, with its log as the Raft log)
until it goes quiet, remove it, and with the collector off nothing of it may be left.

A group removed while a checkpoint is being written in a worker thread keeps its final checkpoint: the
removal waits for the older one first.
"""

import asyncio
import gc
import threading
import weakref

import orjson

from raftka.raft.partition import PartitionStateMachine
from raftka.storage import LogConfig

from test_raft_host import FAST, JsonListMachine, running_hosts, start_cluster, wait_leader, wait_until
from test_raft_partition_journal import data


def test_a_removed_partition_group_is_freed_without_the_garbage_collector(tmp_path):
    async def main():
        hosts, _ = await start_cluster(tmp_path, 3, config=FAST)
        try:
            for i, host in hosts.items():
                sm = PartitionStateMachine(str(tmp_path / f"b{i}" / "p"), LogConfig(segment_bytes=4096), lock=False,
                                           raft_log=True)
                host.add_group("p", sorted(hosts), sm)
            del sm  # only the hosts hold the state machines
            leader = await wait_leader(hosts, "p")
            for k in range(20):
                await hosts[leader].propose("p", data(b"r%d" % k))
            await wait_until(lambda: all(h.group("p").node.quiesced for h in hosts.values()))
            hosts[leader].group("p").node.on_wake()  # the wake hook has been used
            left = [weakref.ref(obj) for h in hosts.values() for obj in (h.group("p"), h.group("p").node,
                                                                          h.group("p").sm)]
            gc.disable()
            try:
                for host in hosts.values():
                    await host.remove_group("p", delete_data=True)
                await asyncio.sleep(0.2)  # the hosts' pumps and tickers run on past the removal
                alive = [type(ref()).__name__ for ref in left if ref() is not None]
            finally:
                gc.enable()
            assert alive == [], f"still referenced after removal (a reference cycle?): {alive}"
        finally:
            for host in hosts.values():
                await host.stop()

    asyncio.run(main())


class HeldCheckpointMachine(JsonListMachine):
    """The host test machine whose first checkpoint job waits, in its worker thread, until `release` is set."""

    def __init__(self, directory):
        super().__init__(directory)
        self.release, self.held = threading.Event(), threading.Event()

    def begin_checkpoint(self):
        index, job = super().begin_checkpoint()
        if self.held.is_set():
            return index, job

        def held_job():
            self.held.set()
            self.release.wait(30)
            job()
        return index, held_job


def test_a_group_removed_during_a_checkpoint_keeps_its_final_checkpoint(tmp_path):
    async def main():
        async with running_hosts(tmp_path) as (hosts, _, _restarted, _disks):
            machines = {}
            for i, host in hosts.items():
                machines[i] = HeldCheckpointMachine(str(tmp_path / f"b{i}" / "sm" / "g"))
                host.add_group("g", sorted(hosts), machines[i])
            try:
                leader = await wait_leader(hosts)
                sm, k = machines[leader], 0
                while not sm.held.is_set():  # FAST checkpoints every few entries
                    await hosts[leader].propose("g", b"a%d" % k)
                    k += 1
                for _ in range(3):  # applied after the held checkpoint took its state
                    await hosts[leader].propose("g", b"a%d" % k)
                    k += 1
                removal = asyncio.ensure_future(hosts[leader].remove_group("g"))
                await asyncio.sleep(0.3)
                assert not removal.done()  # it waits for the checkpoint in flight
                sm.release.set()
                await asyncio.wait_for(removal, 30)
                with open(sm.path, "rb") as f:
                    on_disk = orjson.loads(f.read())
                assert (on_disk["index"], len(on_disk["items"])) == (sm.applied_index, k)
            finally:  # the held jobs of every replica, also when the test fails
                for m in machines.values():
                    m.release.set()

    asyncio.run(main())
