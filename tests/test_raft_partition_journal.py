"""The partition log as the Raft log: one copy of each record, meta entries with the hard state, crash recovery."""

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.raft.hardstate import HardStateStore
from raftka.raft.messages import ENTRY_CONFIG, Entry
from raftka.raft.partition import Admission, PartitionStateMachine, ProduceError, encode_produce
from raftka.raft.partition_journal import PartitionJournal
from raftka.storage import LEDGER_ENV, LogConfig, PartitionLog, Record, encode_batch, fsync_count, iter_records
from raftka.storage.powerloss import apply_ledger

from partition_helpers import same_entry

CONFIG = LogConfig(segment_bytes=4096)


def data(value: bytes, pid: int = -1, seq: int = -1) -> bytes:
    return encode_produce(encode_batch([Record(None, value, (), 1000)], producer_id=pid,
                                       producer_epoch=0 if pid >= 0 else -1, base_sequence=seq))


def open_journal(root, store=None) -> tuple[PartitionLog, HardStateStore, PartitionJournal]:
    log = PartitionLog.open(os.path.join(root, "log"), CONFIG, lock=False)
    store = store or HardStateStore(os.path.join(root, "raft"))
    return log, store, PartitionJournal(log, store, "g")


def sync(log, store, journal) -> None:
    journal.stage_hard_state()
    store.sync()
    job = journal.begin_sync()
    if job is not None:
        job()


def test_data_entries_are_the_log_and_meta_entries_the_hard_state(tmp_path):
    log, store, journal = open_journal(tmp_path)
    entries = [Entry(1, b""), Entry(1, data(b"a")), Entry(1, data(b"b")), Entry(2, b""),
               Entry(2, b'{"voters":[1],"learners":[]}', ENTRY_CONFIG), Entry(2, data(b"c"))]
    journal.append(entries)
    sync(log, store, journal)
    assert journal.synced_index == 6
    assert [r.value for r in log.read_records(0)] == [b"a", b"b", b"c"]  # offsets stay dense: data only
    assert [b.partition_leader_epoch for b in _headers(log)] == [1, 1, 2]
    assert all(same_entry(a, b) for a, b in zip(journal.entries(1, 7, 1 << 20), entries))
    assert journal.config_at(6) == (5, b'{"voters":[1],"learners":[]}')
    log.close()
    store.close()
    log, store, journal = open_journal(tmp_path)
    assert [journal.term_at(i) for i in range(7)] == [0, 1, 1, 1, 2, 2, 2]
    assert all(same_entry(a, b) for a, b in zip(journal.entries(1, 7, 1 << 20), entries))
    assert journal.data_range(6) == (2, 2) and journal.is_meta(4) and not journal.is_meta(2)


def test_a_data_entry_after_a_meta_entry_waits_for_the_store(tmp_path):
    log, store, journal = open_journal(tmp_path)
    journal.append([Entry(1, data(b"x"))])
    sync(log, store, journal)
    journal.append([Entry(2, b"")])  # a new leader's no-op
    before = fsync_count()
    journal.append([Entry(2, data(b"y"))])  # must not reach the log before the no-op is durable
    assert fsync_count() - before == 1 and store.synced_seq == store.put_seq


def test_truncation_cuts_the_log_and_the_meta_entries(tmp_path):
    log, store, journal = open_journal(tmp_path)
    journal.append([Entry(1, data(b"a")), Entry(1, b""), Entry(1, data(b"b")), Entry(1, data(b"c"))])
    sync(log, store, journal)
    journal.truncate_from(2)
    assert log.log_end_offset == 1 and journal.last_index == 1
    journal.append([Entry(3, data(b"d")), Entry(3, b"")])
    sync(log, store, journal)
    log.close()
    store.close()
    log, store, journal = open_journal(tmp_path)
    assert [journal.term_at(i) for i in (1, 2, 3)] == [1, 3, 3] and journal.is_meta(3)
    assert [r.value for r in log.read_records(0)] == [b"a", b"d"]


def test_compaction_keeps_the_data_and_reopens_from_the_compaction_point(tmp_path):
    log, store, journal = open_journal(tmp_path)
    journal.append([Entry(1, data(b"v%d" % i)) for i in range(10)] + [Entry(2, b"")])
    sync(log, store, journal)
    journal.compact(6)
    store.sync()
    assert (journal.snapshot_index, journal.snapshot_offset, journal.raft_floor_offset) == (6, 6, 6)
    log.close()
    store.close()
    log, store, journal = open_journal(tmp_path)
    assert (journal.snapshot_index, journal.last_index, journal.term_at(11)) == (6, 11, 2)
    assert [r.value for r in log.read_records(0)][:2] == [b"v0", b"v1"]  # retention, not compaction, deletes data


def test_a_staged_install_committed_by_the_state_machine_restarts_the_journal_there(tmp_path):
    log, store, journal = open_journal(tmp_path)
    journal.append([Entry(1, data(b"old"))])
    sync(log, store, journal)
    journal.stage_snapshot(40, 3, b'{"voters":[1],"learners":[]}')
    log.reset(100)  # the state machine replaced the log with the snapshot's batches, then the process died
    log.append([Record(None, b"installed", (), 1)], partition_leader_epoch=3)
    log.flush()
    journal = PartitionJournal(log, store, "g", applied=(40, 3, 101))
    assert (journal.snapshot_index, journal.snapshot_term, journal.snapshot_offset, journal.last_index) == (40, 3, 101, 40)
    assert journal.config_at(40) == (40, b'{"voters":[1],"learners":[]}')


def test_the_leader_admits_against_its_whole_log_and_answers_a_retry_with_the_original_offsets(tmp_path):
    sm = PartitionStateMachine(str(tmp_path / "p"), CONFIG, raft_log=True)
    store = HardStateStore(str(tmp_path / "raft"))
    journal = sm.open_journal(store, "g", 1 << 20)
    first = data(b"one", pid=7, seq=0)
    assert sm.admit(first, 1) == Admission(None)
    journal.append([Entry(1, first)])
    sm.proposed(1, first)
    retry = sm.admit(first, 1)  # not applied yet: answered with its offsets once entry 1 is applied
    assert (retry.result.base_offset, retry.result.duplicate, retry.wait_index, retry.wait_term) == (0, True, 1, 1)
    gap = sm.admit(data(b"three", pid=7, seq=2), 1)
    assert gap.result.error is ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert sm.admit(b"P" + b"\0" * 80, 1).result.error is ProduceError.CORRUPT_MESSAGE
    assert sm.apply(1, 1, first).base_offset == 0 and sm.high_watermark == 1
    assert sm.admit(first, 1).wait_index == 0  # applied: answered at once
    # A new leader (another term) rebuilds the state from its log: the uncommitted entry 2 counts.
    second = data(b"two", pid=7, seq=1)
    journal.append([Entry(2, second)])
    assert sm.admit(second, 2).result.duplicate


OPS = st.lists(st.one_of(
    st.tuples(st.just("data"), st.integers(1, 3)),
    st.tuples(st.just("meta"), st.integers(0, 1)),
    st.tuples(st.just("sync"), st.just(0)),
    st.tuples(st.just("truncate"), st.integers(1, 4)),
), max_size=30)


@settings(max_examples=150, deadline=None)
@given(OPS, st.integers(0, 2**32 - 1))
def test_power_loss_leaves_a_prefix_of_a_log_it_had_that_holds_every_synced_entry(tmp_path_factory, ops, seed):
    """Whatever part of the unsynced writes reached the disk, the reopened journal holds the first entries of
    a log it had at or after its last sync (same terms, same data at the same indexes: never a batch under
    another entry's index), at least every entry that was synced (acknowledged)."""
    root = tmp_path_factory.mktemp("pj")
    ledger = root / "ledger"
    previous = os.environ.get(LEDGER_ENV)
    os.environ[LEDGER_ENV] = str(ledger)
    try:
        log, store, journal = open_journal(str(root))
        expected: list[Entry] = []
        history: list[list[Entry]] = [[]]  # the log after each step since the last sync
        synced = 0
        term = 1
        for op, arg in ops:
            if op == "data":
                new = [Entry(term, data(b"v%d" % (len(expected) + k))) for k in range(arg)]
            elif op == "meta":
                term += 1
                new = [Entry(term, b"" if arg == 0 else b'{"voters":[%d],"learners":[]}' % term,
                             0 if arg == 0 else ENTRY_CONFIG)]
            elif op == "sync":
                sync(log, store, journal)
                synced = journal.synced_index
                history = [list(expected)]
                continue
            else:
                cut = max(synced + 1, len(expected) - arg + 1)  # never below what is durable (acknowledged)
                if cut <= len(expected):
                    journal.truncate_from(cut)
                    del expected[cut - 1:]
                    history.append(list(expected))
                continue
            journal.append(new)
            expected += new
            history.append(list(expected))
    finally:
        if previous is None:
            del os.environ[LEDGER_ENV]
        else:
            os.environ[LEDGER_ENV] = previous
    for fd in [store._fd] + [s.fd for s in log._segments if s.fd is not None]:
        if fd is not None and fd >= 0:
            os.close(fd)  # the process dies
    apply_ledger(str(ledger), str(root), keep_unsynced=random.Random(seed))
    log, store, journal = open_journal(str(root))
    got = journal.entries(1, journal.last_index + 1, 1 << 30)
    assert synced <= journal.last_index == len(got)
    assert any(len(got) <= len(state) and all(same_entry(a, b) for a, b in zip(got, state)) for state in history), \
        (got, history)


def _headers(log):
    from raftka.storage import iter_batches
    return [h for h, _ in iter_batches(log.read(0, 1 << 20).data)]


def test_records_read_back_by_offset_are_the_appended_ones(tmp_path):
    log, store, journal = open_journal(tmp_path)
    journal.append([Entry(1, data(b"r%d" % i)) for i in range(5)])
    sync(log, store, journal)
    assert [r.value for r in iter_records(log.read(2, 1 << 20).data, start_offset=2)] == [b"r2", b"r3", b"r4"]


def test_real_hosts_replicate_the_partition_log_and_a_lagging_replica_catches_up_from_a_snapshot(tmp_path):
    """Three Raft hosts with the log as the Raft log: every replica holds the same records at the same
    offsets; a replica stopped while the others compact is brought back by the snapshot stream and holds
    the same log; an idempotent retry is answered with its original offsets, not written twice."""
    import asyncio

    from raftka.raft.host import RaftHost
    from test_raft_host import FAST, start_cluster, wait_leader, wait_until

    def machine(i):
        return PartitionStateMachine(str(tmp_path / f"b{i}" / "p"), CONFIG, lock=False, raft_log=True)

    def records(sm):
        return [(r.offset, r.value) for r in sm.log.read_records(sm.log_start_offset, 1 << 20, 1 << 30,
                                                                 max_offset=sm.high_watermark)]

    async def main():
        hosts, addresses = await start_cluster(tmp_path, 3)
        sms = {i: machine(i) for i in hosts}
        for i, host in hosts.items():
            host.add_group("g", sorted(hosts), sms[i])
        leader = await wait_leader(hosts)
        first = await hosts[leader].propose("g", data(b"p0", pid=3, seq=0))
        again = await hosts[leader].propose("g", data(b"p0", pid=3, seq=0))
        assert (first.base_offset, again.base_offset, again.duplicate) == (0, 0, True)
        lagging = next(i for i in hosts if i != leader)
        await hosts[lagging].stop(transfer_timeout=0)
        for k in range(60):
            await hosts[leader].propose("g", data(b"v%d" % k))
        await wait_until(lambda: hosts[leader].groups["g"].journal.snapshot_index > 10, timeout=30)
        restarted = RaftHost(lagging, str(tmp_path / f"b{lagging}"), listen=addresses[lagging],
                             peers=dict(addresses), secret=b"s3cret", config=FAST)
        await restarted.start()
        hosts[lagging] = restarted
        sms[lagging] = machine(lagging)
        restarted.add_group("g", sorted(hosts), sms[lagging])
        await wait_until(lambda: sms[lagging].high_watermark == sms[leader].high_watermark == 61, timeout=30)
        assert records(sms[lagging]) == records(sms[leader]) == [(0, b"p0")] + [(k + 1, b"v%d" % k) for k in range(60)]
        assert restarted.groups["g"].journal.snapshot_index > 10  # it got there by a snapshot install
        for host in hosts.values():
            await host.stop()

    asyncio.run(main())


def test_a_deleted_replica_leaves_no_hard_state_behind_and_a_new_one_on_the_same_broker_starts_empty(tmp_path):
    """A replica moved away is deleted with its log and its record in the hard state store, even when that
    record changed since the last pump; moved back, the broker hosts a new, empty replica of the group."""
    import asyncio
    import shutil

    from raftka.raft.host import RaftHost
    from test_raft_host import FAST, wait_until

    def machine():
        return PartitionStateMachine(str(tmp_path / "p"), CONFIG, lock=False, raft_log=True)

    async def lead(host, sm, value):
        host.add_group("g", [1], sm)
        host.group("g").node.campaign()
        await wait_until(lambda: host.read_allowed("g"))
        return await host.propose("g", data(value))

    async def main():
        host = RaftHost(1, str(tmp_path / "b1"), config=FAST)
        await host.start()
        try:
            sm = machine()
            await lead(host, sm, b"old0")
            for k in (1, 2):
                await host.propose("g", data(b"old%d" % k))
            journal = host.group("g").journal
            sm.checkpoint()
            journal.compact(sm.applied_index)  # a compaction point beyond the offsets a new replica starts at
            journal.set_hard_state(journal.term + 1, None)  # changed since the last pump
            await host.remove_group("g", delete_data=True)
            shutil.rmtree(sm.directory)
            host.hard_states.sync()
            assert "g" not in host.hard_states.groups
            sm = machine()
            first = await lead(host, sm, b"new")
            assert first.base_offset == 0 and sm.log.log_start_offset == 0
        finally:
            await host.stop()

    asyncio.run(main())
