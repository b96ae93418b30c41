"""A removed Raft group is freed as its last reference goes, not by a full garbage collection.

A broker freezes its heap out of the collector's scans (node/cluster/heap.py); a removed group caught in a
reference cycle would then stay until a full collection, which takes about half a second on a broker with
10,000 partitions.  Three in-process hosts run a partition group (the broker's state machine, with its log
as the Raft log) until it goes quiet, remove it, and with the collector off nothing of it may be left.
"""

import asyncio
import gc
import weakref

from raftka.raft.partition import PartitionStateMachine
from raftka.storage import LogConfig

from test_raft_host import FAST, start_cluster, wait_leader, wait_until
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
