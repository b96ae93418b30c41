"""`node.cluster.heap`: what exists when the hosted partitions change is frozen out of the garbage collector's
scans; after partitions were removed, their reference cycles are still freed."""

from __future__ import annotations

import gc
import weakref

from raftka.node.cluster import heap


class Group:  # a removed partition's group: a reference cycle, as RaftGroup and RaftNode's hooks make
    def __init__(self):
        self.hook = lambda: self


def test_frozen_objects_are_not_scanned_and_a_removal_frees_their_cycles():
    try:
        group = Group()
        gone = weakref.ref(group)
        heap.settle(removed=False)
        assert gc.get_freeze_count() > 0
        del group
        gc.collect()
        assert gone() is not None, "a frozen cycle was scanned"
        heap.settle(removed=True)
        assert gone() is None, "the removed group's cycle was not freed"
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
