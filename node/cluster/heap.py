"""The broker's garbage-collector policy: long-lived objects are frozen out of the collector's scans.

A broker's heap is mostly long-lived: every hosted partition's Raft group, log,
indexes and buffers.  CPython's full (generation 2) collection scans all of it,
and with 10,000 partitions on a broker it ran every 2-3 s for 0.5-1.7 s each
(finding nothing to free): the event loop stood still for longer than an
election timeout, peers elected new leaders, and the extra work made the next
pauses longer until 10,000 partitions had almost no leader (the hosting of many
groups then never settled).  `settle` freezes what exists after the hosted
partitions changed (`gc.freeze`, which only moves the collector's lists: the
collector no longer scans those objects; reference counting still frees them);
after partitions were removed it first unfreezes and collects once, so the
removed groups' reference cycles are freed (one pause, at that moment, in
proportion to the heap).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("raftka.heap")


def settle(removed: bool) -> None:
    """The hosted partitions changed (`removed`: some were removed): freeze the heap as it is now."""
    if removed:
        began = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        log.info("freed the removed partitions' objects: full collection in %.0f ms", (time.perf_counter() - began) * 1000)
    gc.freeze()
