"""The broker's garbage-collector policy: long-lived objects are frozen out of the collector's scans.

A broker's heap is mostly long-lived: every hosted partition's Raft group, log,
indexes and buffers.  CPython's full (generation 2) collection scans all of it,
and with 10,000 partitions on a broker it ran every 2-3 s for 0.5-1.7 s each
(finding nothing to free): the event loop stood still for longer than an
election timeout, peers elected new leaders, and the extra work made the next
pauses longer until 10,000 partitions had almost no leader (the hosting of many
groups then never settled).  `settle` freezes what exists after partitions
were opened (`gc.freeze`, which only moves the collector's lists: the
collector no longer scans those objects; reference counting still frees them).

A removed partition is freed by reference counting alone: its Raft group holds
no reference cycle (`raft.liveness.Liveness.hook`; tests/test_raft_host_removal.py
keeps it so).  Removals used to unfreeze the heap and collect it in full to free
such cycles: 0.34-0.59 s with 10,000 partitions, for nothing once the cycle was
gone (a full collection after deleting a topic then found 0 objects), so a
removal freezes nothing either: it leaves no new long-lived objects behind.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Partitions were opened: freeze the heap as it is now."""
    gc.freeze()
