"""`node.cluster.heap`: what exists when the hosted partitions change is frozen out of the garbage collector's
scans, and a frozen object with no reference cycle is still freed as its last reference goes (a removed
partition's group is such an object: tests/test_raft_host_removal.py)."""

from __future__ import annotations

import gc
import weakref

from raftka.node.cluster import heap


class Obj:
    pass


def test_frozen_objects_are_not_scanned_and_are_freed_by_reference_counting():
    try:
        cycle, plain = Obj(), Obj()
        cycle.me = cycle
        cycle_gone, plain_gone = weakref.ref(cycle), weakref.ref(plain)
        heap.settle()
        assert gc.get_freeze_count() > 0
        del cycle, plain
        gc.collect()
        assert cycle_gone() is not None, "a frozen object was scanned"
        assert plain_gone() is None, "a frozen object without a cycle outlived its last reference"
    finally:
        gc.unfreeze()
        gc.collect()
