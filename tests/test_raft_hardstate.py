"""The broker-wide hard state store: one file, one fsync per sync for every group, torn tails, compaction."""

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.raft.hardstate import FILE, HardStateError, HardStateStore
from raftka.storage import LEDGER_ENV, fsync_count
from raftka.storage.powerloss import apply_ledger


def state(term: int, vote: int | None = None) -> dict:
    return {"term": term, "vote": vote, "snapshot_index": 0, "snapshot_term": 0, "snapshot_config": ""}


def test_the_newest_state_of_each_group_survives_reopen(tmp_path):
    store = HardStateStore(str(tmp_path))
    store.put("a", state(1))
    store.put("b", state(2, 7))
    store.put("a", state(3, 1))
    store.sync()
    store.close()
    store = HardStateStore(str(tmp_path))
    assert store.get("a") == state(3, 1) and store.get("b") == state(2, 7) and store.get("c") is None


def test_one_sync_makes_every_group_durable_with_one_fsync(tmp_path):
    store = HardStateStore(str(tmp_path))
    assert not os.path.exists(tmp_path / FILE)  # nothing is created before there is something to write
    store.put("first", state(1))
    store.sync()  # creates the file (and fsyncs the directory)
    for i in range(1000):
        store.put(f"group-{i}", state(i))
    before = fsync_count()
    store.sync()
    assert fsync_count() - before == 1
    assert not store.pending


def test_a_removed_group_stays_removed(tmp_path):
    store = HardStateStore(str(tmp_path))
    store.put("a", state(1))
    store.sync()
    store.remove("a")
    store.sync()
    store.close()
    assert HardStateStore(str(tmp_path)).get("a") is None


def test_a_torn_tail_is_cut_and_a_corrupt_middle_is_refused(tmp_path):
    store = HardStateStore(str(tmp_path))
    store.put("a", state(1))
    store.put("a", state(2))
    store.sync()
    store.close()
    path = tmp_path / FILE
    data = path.read_bytes()
    path.write_bytes(data + data[:10])  # half a record after the last good one: a crash mid-write
    assert HardStateStore(str(tmp_path)).get("a") == state(2)
    assert path.read_bytes() == data
    damaged = bytearray(data)
    damaged[12] ^= 0xFF  # inside the first record, followed by a good one
    path.write_bytes(bytes(damaged))
    with pytest.raises(HardStateError):
        HardStateStore(str(tmp_path))


def test_the_file_is_rewritten_with_the_live_states_once_it_grows(tmp_path):
    store = HardStateStore(str(tmp_path), compact_bytes=4096)
    for term in range(200):
        store.put("a", state(term))
        store.put("b", state(term, 1))
        store.sync()
    assert os.path.getsize(tmp_path / FILE) < 4096 + 1024
    store.close()
    store = HardStateStore(str(tmp_path))
    assert store.get("a") == state(199) and store.get("b") == state(199, 1)


def test_a_failed_sync_keeps_its_records_for_the_next_one(tmp_path):
    store = HardStateStore(str(tmp_path))
    store.put("a", state(4))
    store.sync()
    store.put("a", state(5))
    real_fd = store._fd
    store._fd = os.open(os.devnull, os.O_RDONLY)  # writes fail with EBADF
    with pytest.raises(OSError):
        store.sync()
    assert store.pending
    os.close(store._fd)
    store._fd = real_fd
    store.sync()
    store.close()
    assert HardStateStore(str(tmp_path)).get("a") == state(5)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "remove", "sync"]), st.sampled_from("abc"), st.integers(0, 9)),
                max_size=40), st.integers(0, 2**32 - 1))
def test_power_loss_keeps_exactly_what_was_synced(tmp_path_factory, operations, seed):
    """Whatever reached the disk beyond the last sync, the store reopens with the state as of that sync."""
    root = tmp_path_factory.mktemp("store")
    ledger = root / "ledger"
    directory = root / "raft"
    previous = os.environ.get(LEDGER_ENV)
    os.environ[LEDGER_ENV] = str(ledger)
    try:
        store = HardStateStore(str(directory))
        current: dict[str, dict] = {}
        synced: dict[str, dict] = {}
        for op, group, term in operations:
            if op == "put":
                store.put(group, state(term))
                current[group] = state(term)
            elif op == "remove":
                store.remove(group)
                current.pop(group, None)
            else:
                store.sync()
                synced = dict(current)
        if store._fd >= 0:
            os.close(store._fd)  # the process dies
    finally:
        if previous is None:
            del os.environ[LEDGER_ENV]
        else:
            os.environ[LEDGER_ENV] = previous
    apply_ledger(str(ledger), str(directory), keep_unsynced=random.Random(seed))
    reopened = HardStateStore(str(directory))
    assert {g: reopened.get(g) for g in "abc" if reopened.get(g) is not None} == synced
