"""Partition state machine (raftka.raft.partition): apply, idempotent producer, checkpoint, crash recovery.

Real files throughout; power loss is simulated with a child process killed without closing its
files plus the fsync ledger (raftka.storage.powerloss), I/O failures with RLIMIT_FSIZE.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import orjson
import pytest
from crc32c import crc32c

from partition_helpers import Journal, batch, file_size_limit, produce, values_of

from raftka.raft.partition import (
    PartitionDataLossError,
    PartitionStateError,
    PartitionStateMachine,
    ProduceError,
    encode_produce,
)
from raftka.raft.partition_producers import INT32_MAX, CachedBatch, ProducerTable
from raftka.raft.storage_health import storage_failure_reason
from raftka.storage import LEDGER_ENV, LogConfig
from raftka.storage.powerloss import apply_ledger

CONFIG = LogConfig(segment_bytes=1024, index_interval_bytes=256)


# ---- apply ------------------------------------------------------------------------------------


def test_offsets_are_dense_from_zero_and_high_watermark_is_the_log_end(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    assert (sm.applied_index, sm.applied_term, sm.high_watermark, sm.log_start_offset) == (0, 0, 0, 0)
    assert sm.apply(1, 1, b"") is None  # Raft no-op
    assert (sm.applied_index, sm.applied_term, sm.high_watermark) == (1, 1, 0)
    expected, offset = [], 0
    for i, size in enumerate([1, 3, 7, 2, 40, 1], start=2):
        values = [b"%d-%d-" % (i, k) + b"v" * 30 for k in range(size)]
        result = sm.apply(i, 2, produce(values))
        assert result.ok and not result.duplicate
        assert (result.base_offset, result.last_offset, result.log_append_time) == (offset, offset + size - 1, -1)
        expected += [(offset + k, v) for k, v in enumerate(values)]
        offset += size
        assert sm.high_watermark == offset
    assert (sm.applied_index, sm.applied_term) == (7, 2)
    assert values_of(sm) == expected
    assert len(sm.log.segments()) > 1  # small segments: the log rolled
    sm.close()


def test_appended_batches_carry_the_raft_term_as_partition_leader_epoch(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    sm.apply(1, 7, produce([b"a"]))
    sm.apply(2, 9, produce([b"b"]))
    data = sm.log.read(0).data
    assert int.from_bytes(data[12:16], "big") == 7
    assert int.from_bytes(data[12 + len(data) // 2:16 + len(data) // 2], "big") == 9
    sm.close()


def test_entries_already_applied_are_skipped_and_a_gap_is_refused(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    assert sm.apply(1, 1, produce([b"a"])).base_offset == 0
    assert sm.apply(1, 1, produce([b"a"])) is None
    assert sm.high_watermark == 1
    with pytest.raises(PartitionStateError, match="entries are missing"):
        sm.apply(3, 1, produce([b"c"]))
    assert (sm.applied_index, sm.high_watermark) == (1, 1)
    sm.close()


def _with_attributes(raw: bytes, attributes: int) -> bytes:
    data = bytearray(raw)
    data[21:23] = attributes.to_bytes(2, "big")
    data[17:21] = crc32c(bytes(data[21:])).to_bytes(4, "big")
    return bytes(data)


def _flip_value_byte(raw: bytes) -> bytes:
    data = bytearray(raw)
    data[-3] ^= 0x40
    return bytes(data)


BAD_COMMANDS = {
    "unknown tag": (b"Z" + batch([b"x"]), ProduceError.INVALID_REQUEST, "unknown partition command tag"),
    "crc mismatch": (encode_produce(_flip_value_byte(batch([b"xyz"]))), ProduceError.CORRUPT_MESSAGE, "CRC"),
    "truncated": (encode_produce(batch([b"x", b"y"])[:-5]), ProduceError.CORRUPT_MESSAGE, "truncated"),
    "trailing bytes": (encode_produce(batch([b"x"]) + b"!!"), ProduceError.CORRUPT_MESSAGE, "after the batch"),
    "tag only": (b"P", ProduceError.CORRUPT_MESSAGE, "truncated batch header"),
    "control batch": (encode_produce(_with_attributes(batch([b"x"]), 0x20)), ProduceError.INVALID_RECORD, "control"),
    "transactional": (encode_produce(_with_attributes(batch([b"x"], 5, 0, 0), 0x10)), ProduceError.INVALID_RECORD,
                      "transactional"),
    "producer without sequence": (produce([b"x"], 5, 0, -1), ProduceError.INVALID_RECORD, "base sequence >= 0"),
    "producer without epoch": (produce([b"x"], 5, -1, 0), ProduceError.INVALID_RECORD, "epoch >= 0"),
}


@pytest.mark.parametrize("name", BAD_COMMANDS)
def test_bad_commands_give_an_error_result_and_write_nothing(tmp_path, name):
    command, error, message = BAD_COMMANDS[name]
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    sm.apply(1, 1, produce([b"before"]))
    result = sm.apply(2, 1, command)
    assert result.error is error and not result.ok
    assert message in result.error_message
    assert (result.base_offset, result.last_offset) == (-1, -1)
    assert sm.applied_index == 2  # the entry is consumed
    assert sm.apply(3, 1, produce([b"after"])).base_offset == 1
    assert values_of(sm) == [(0, b"before"), (1, b"after")]
    sm.close()


# ---- idempotent producer ----------------------------------------------------------------------


def test_retry_of_any_of_the_last_five_batches_returns_its_original_offsets(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    j = Journal()
    originals = []
    for n in range(7):
        seq = 2 * n
        originals.append((seq, sm.apply(*j.add(produce([b"p%d" % n, b"q%d" % n], 42, 0, seq)))))
        sm.apply(*j.add(produce([b"noise%d" % n])))  # non-idempotent batches in between
    end = sm.high_watermark
    for seq, original in originals[-5:]:
        retry = sm.apply(*j.add(produce([b"p", b"q"], 42, 0, seq)))
        assert retry.duplicate and retry.ok
        assert (retry.base_offset, retry.last_offset) == (original.base_offset, original.last_offset)
    seq, _ = originals[1]  # sixth from the end: no longer cached
    old = sm.apply(*j.add(produce([b"p", b"q"], 42, 0, seq)))
    assert old.error is ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert "expected sequence 14, got 2" in old.error_message
    assert sm.high_watermark == end
    assert sm.apply(*j.add(produce([b"next"], 42, 0, 14))).base_offset == end
    sm.close()


def test_a_duplicate_must_match_the_whole_sequence_range(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    sm.apply(1, 1, produce([b"a", b"b", b"c"], 1, 0, 0))
    partial = sm.apply(2, 1, produce([b"a", b"b"], 1, 0, 0))
    assert partial.error is ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert sm.high_watermark == 3
    sm.close()


def test_out_of_order_sequences_are_rejected_with_expected_and_received(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    assert sm.apply(1, 1, produce([b"a"], 9, 3, 0)).ok
    gap = sm.apply(2, 1, produce([b"c"], 9, 3, 2))
    assert gap.error is ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert gap.error_message == "producer 9 epoch 3: expected sequence 1, got 2"
    assert sm.apply(3, 1, produce([b"b"], 9, 3, 1)).base_offset == 1
    assert values_of(sm) == [(0, b"a"), (1, b"b")]
    sm.close()


def test_older_epochs_are_fenced_and_a_new_epoch_starts_at_sequence_zero(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    j = Journal()
    sm.apply(*j.add(produce([b"a"], 5, 1, 0)))
    sm.apply(*j.add(produce([b"b"], 5, 1, 1)))
    not_zero = sm.apply(*j.add(produce([b"c"], 5, 2, 2)))
    assert not_zero.error is ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert "new epoch 2 must start at sequence 0, got 2" in not_zero.error_message
    assert sm.apply(*j.add(produce([b"c"], 5, 2, 0))).base_offset == 2
    fenced = sm.apply(*j.add(produce([b"b"], 5, 1, 1)))  # a retry from the old epoch
    assert fenced.error is ProduceError.INVALID_PRODUCER_EPOCH
    assert "epoch 1 is fenced: epoch 2" in fenced.error_message
    assert sm.apply(*j.add(produce([b"d"], 5, 2, 1))).base_offset == 3
    assert sm.apply(*j.add(produce([b"c"], 5, 2, 0))).duplicate  # epoch 2 batches are cached
    assert [v for _, v in values_of(sm)] == [b"a", b"b", b"c", b"d"]
    sm.close()


def test_unknown_producers_may_start_at_any_sequence(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    assert sm.apply(1, 1, produce([b"a"], 77, 0, 1234)).ok
    assert sm.apply(2, 1, produce([b"b"], 77, 0, 1235)).ok
    assert sm.apply(3, 1, produce([b"a"], 77, 0, 1234)).duplicate
    assert sm.apply(4, 1, produce([b"x"], 77, 0, 0)).error is ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER
    sm.close()


def test_sequence_numbers_wrap_around_after_int32_max(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    first = sm.apply(1, 1, produce([b"a", b"b", b"c"], 3, 0, INT32_MAX - 1))  # sequences MAX-1, MAX, 0
    assert first.ok
    bad = sm.apply(2, 1, produce([b"d"], 3, 0, INT32_MAX + 0))
    assert bad.error is ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER and "expected sequence 1" in bad.error_message
    assert sm.apply(3, 1, produce([b"d"], 3, 0, 1)).base_offset == 3
    retry = sm.apply(4, 1, produce([b"a", b"b", b"c"], 3, 0, INT32_MAX - 1))
    assert retry.duplicate and (retry.base_offset, retry.last_offset) == (0, 2)
    edge = sm.apply(5, 1, produce([b"e"], 4, 0, INT32_MAX))  # one record at MAX: next is 0
    assert edge.ok
    assert sm.apply(6, 1, produce([b"f"], 4, 0, 0)).ok
    sm.close()


def test_batches_without_producer_id_are_never_deduplicated(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    assert sm.apply(1, 1, produce([b"a"])).base_offset == 0
    assert sm.apply(2, 1, produce([b"a"])).base_offset == 1
    assert sm.producer_count == 0
    sm.close()


def test_least_recently_appending_producer_is_evicted_beyond_max_producers(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG, max_producers=2)
    sm.apply(1, 1, produce([b"a"], 1, 0, 0))
    sm.apply(2, 1, produce([b"b"], 2, 0, 0))
    sm.apply(3, 1, produce([b"a2"], 1, 0, 1))  # producer 1 is now the most recent
    sm.apply(4, 1, produce([b"c"], 3, 0, 0))  # evicts producer 2
    assert sm.producer_count == 2
    assert sm.apply(5, 1, produce([b"a2"], 1, 0, 1)).duplicate
    forgotten = sm.apply(6, 1, produce([b"b"], 2, 0, 0))  # documented: an evicted producer is unknown again
    assert forgotten.ok and not forgotten.duplicate and forgotten.base_offset == 4
    sm.checkpoint()
    sm.close()
    reopened = PartitionStateMachine(str(tmp_path), CONFIG, max_producers=2)
    assert reopened.apply(7, 1, produce([b"b"], 2, 0, 0)).duplicate
    assert not reopened.apply(8, 1, produce([b"a2"], 1, 0, 1)).duplicate  # evicted by producer 2 at entry 6
    reopened.close()


def test_producer_table_json_round_trip_and_validation():
    table = ProducerTable(3)
    table.record(1, 0, CachedBatch(0, 4, 0, 4))
    table.record(2, 7, CachedBatch(INT32_MAX, 0, 5, 6))
    table.record(1, 0, CachedBatch(5, 5, 7, 7))
    doc = orjson.loads(orjson.dumps(table.to_json()))
    assert doc == [[2, 7, [[INT32_MAX, 0, 5, 6]]], [1, 0, [[0, 4, 0, 4], [5, 5, 7, 7]]]]
    again = ProducerTable.from_json(doc, 3)
    assert again.to_json() == table.to_json()
    for bad in ({"1": 2}, [[1, 0, []]], [[1, "0", [[0, 0, 0, 0]]]], [[1, 0, [[0, 0, 0]]]], [[1, 0]]):
        with pytest.raises(ValueError):
            ProducerTable.from_json(bad, 3)


# ---- checkpoint, restart, crash -----------------------------------------------------------------


def _workload(journal: Journal, count: int, seed: int) -> dict[int, int]:
    """Random produce traffic (two idempotent producers with retries, plain batches, no-ops); returns next sequences."""
    rng = random.Random(seed)
    seqs = {1: 0, 2: 0}
    for n in range(count):
        kind = rng.random()
        if kind < 0.1:
            journal.add(b"", term=2)
        elif kind < 0.6:
            pid = rng.choice([1, 2])
            values = [b"%d:%d:%d" % (pid, n, k) + b"x" * rng.randrange(80) for k in range(rng.randint(1, 4))]
            if rng.random() < 0.3 and seqs[pid]:
                back = rng.randint(1, 3)  # a retry of a recent batch (duplicate or rejected)
                journal.add(produce(values[:1], pid, 0, max(0, seqs[pid] - back)), term=2)
                continue
            journal.add(produce(values, pid, 0, seqs[pid]), term=2)
            seqs[pid] += len(values)
        else:
            journal.add(produce([b"plain%d" % n + b"y" * rng.randrange(120)]), term=2)
    return seqs


def test_checkpoint_and_reopen_restore_applied_state_and_dedup(tmp_path):
    j = Journal()
    seqs = _workload(j, 60, seed=1)
    last = j.add(produce([b"last", b"batch"], 1, 0, seqs[1]), term=3)
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    results = j.apply_all(sm)
    assert sm.checkpoint() == 61
    before = values_of(sm)
    sm.close()
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    assert (sm.applied_index, sm.applied_term, sm.high_watermark) == (61, 3, before[-1][0] + 1)
    assert values_of(sm) == before
    retry = sm.apply(62, 3, last[2])  # the last idempotent batch, retried after the restart
    assert retry.duplicate and (retry.base_offset, retry.last_offset) == results[-1][:2]
    assert sm.apply(63, 3, produce([b"next"], 1, 0, seqs[1] + 2)).base_offset == before[-1][0] + 1
    sm.close()


def test_crash_without_checkpoint_cuts_the_log_back_and_replay_is_exactly_once(tmp_path):
    j = Journal()
    _workload(j, 80, seed=2)
    reference = PartitionStateMachine(str(tmp_path / "reference"), CONFIG)
    results = j.apply_all(reference)
    sm = PartitionStateMachine(str(tmp_path / "sm"), CONFIG)
    for e in j.entries[:50]:
        sm.apply(*e)
    sm.checkpoint()
    end_at_50 = sm.high_watermark
    for e in j.entries[50:]:
        sm.apply(*e)
    sm.close()  # crash: no checkpoint after index 50 (the log itself reached the disk)
    sm = PartitionStateMachine(str(tmp_path / "sm"), CONFIG)
    assert (sm.applied_index, sm.high_watermark) == (50, end_at_50)
    assert sm.log.log_end_offset == end_at_50  # cut back to the checkpoint
    assert j.apply_all(sm) == [None] * 50 + results[50:]  # entries up to the checkpoint are skipped
    assert values_of(sm) == values_of(reference)  # no batch twice
    sm.close()
    reference.close()


CHILD = r"""
import os, sys, orjson
from raftka.raft.partition import PartitionStateMachine
from raftka.storage import LogConfig
directory, entries_file, checkpoint_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
sm = PartitionStateMachine(directory, LogConfig(segment_bytes=1024, index_interval_bytes=256))
results = []
for index, term, data in orjson.loads(open(entries_file, "rb").read()):
    r = sm.apply(index, term, bytes.fromhex(data))
    results.append(None if r is None else [r.base_offset, r.last_offset, r.duplicate, int(r.error)])
    if index == checkpoint_at:
        sm.checkpoint()
sys.stdout.write(orjson.dumps(results).decode())
sys.stdout.flush()
os._exit(0)  # no close: unflushed data is only in the page cache
"""


@pytest.mark.parametrize("partial_writeback", [False, True])
def test_power_loss_after_a_checkpoint_keeps_the_checkpoint_and_replay_restores_the_rest(tmp_path, partial_writeback):
    j = Journal()
    _workload(j, 70, seed=3)
    entries_file = tmp_path / "entries.json"
    entries_file.write_bytes(orjson.dumps([[i, t, d.hex()] for i, t, d in j.entries]))
    data_dir, ledger = tmp_path / "data", tmp_path / "ledger"
    env = dict(os.environ, **{LEDGER_ENV: str(ledger)})
    child = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), str(entries_file), "40"],
                           env=env, capture_output=True, check=True, timeout=60)
    results = [None if r is None else tuple(r) for r in orjson.loads(child.stdout)]
    report = apply_ledger(ledger, data_dir, keep_unsynced=random.Random(7) if partial_writeback else None)
    assert report.truncated or report.deleted  # the power loss really removed unsynced bytes
    sm = PartitionStateMachine(str(data_dir), CONFIG)
    assert sm.applied_index == 40
    end_at_40 = max((r[1] + 1 for r in results[:40] if r and r[3] == 0), default=0)
    assert sm.high_watermark == end_at_40
    assert j.apply_all(sm, start=41) == results[40:]
    reference = PartitionStateMachine(str(tmp_path / "reference"), CONFIG)
    j.apply_all(reference)
    assert values_of(sm) == values_of(reference)
    sm.close()
    reference.close()


def test_log_shorter_than_its_checkpoint_is_reported_as_data_loss(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), LogConfig())
    for i in range(1, 6):
        sm.apply(i, 1, produce([b"v%d" % i]))
    sm.checkpoint()
    sm.close()
    segment = tmp_path / "log" / f"{0:020d}.log"
    os.truncate(segment, segment.stat().st_size - 10)  # the last batch is torn
    with pytest.raises(PartitionDataLossError, match=r"ends at offset 5, but the log holds \[0, 4\)"):
        PartitionStateMachine(str(tmp_path), LogConfig())


@pytest.mark.parametrize("content", [b"{not json", b'{"format": "other", "version": 1}',
                                     b'{"format": "raftka-partition-checkpoint", "version": 1, "applied_index": -1,'
                                     b' "applied_term": 0, "log_end_offset": 0, "producers": [], "install": null}',
                                     b'{"format": "raftka-partition-checkpoint", "version": 1, "applied_index": 1,'
                                     b' "applied_term": 0, "log_end_offset": 0, "producers": [[1]], "install": null}'])
def test_unreadable_checkpoint_is_refused(tmp_path, content):
    (tmp_path / "checkpoint.json").write_bytes(content)
    with pytest.raises(PartitionStateError, match="checkpoint"):
        PartitionStateMachine(str(tmp_path), CONFIG)


def test_an_io_error_while_appending_stops_the_state_machine_until_reopened(tmp_path):
    j = Journal()
    for n in range(6):
        j.add(produce([b"v%d" % n], 1, 0, n))
    sm = PartitionStateMachine(str(tmp_path), LogConfig())
    j.apply_all(sm)
    sm.checkpoint()
    j.add(produce([b"v6"], 1, 0, 6))
    j.add(produce([b"v7"], 1, 0, 7))
    with file_size_limit(sm.log.size_bytes + 10):
        with pytest.raises(Exception, match="File too large"):
            sm.apply(*j.entries[6])
    assert sm.applied_index == 6  # the entry was not consumed
    with pytest.raises(PartitionStateError, match="stopped after an I/O failure"):
        sm.apply(*j.entries[7])
    with pytest.raises(PartitionStateError):
        sm.checkpoint()
    sm.close()
    sm = PartitionStateMachine(str(tmp_path), LogConfig())
    assert j.apply_all(sm, start=7) == [(6, 6, False, 0), (7, 7, False, 0)]
    assert [v for _, v in values_of(sm)] == [b"v%d" % n for n in range(8)]
    sm.close()


def test_a_stopped_state_machine_still_runs_retention_and_reopens_in_place(tmp_path):
    """After an I/O failure: retention (with a lowered retention.bytes) frees checkpointed segments,
    and reopen() recovers the same object from its checkpoint, as the host does once the disk works."""
    j = Journal()
    for n in range(8):
        j.add(produce([b"v%d" % n], 1, 0, n))
    small = LogConfig(segment_bytes=100)  # a segment per batch
    sm = PartitionStateMachine(str(tmp_path), small)
    j.apply_all(sm, stop=6)
    sm.checkpoint()
    with file_size_limit(60):
        with pytest.raises(Exception) as failure:
            sm.apply(*j.entries[6])
    assert storage_failure_reason(failure.value) == "file too large for the file system"
    sm.reconfigure(LogConfig(segment_bytes=100, retention_bytes=0))
    assert sm.apply_retention() > 0
    assert sm.log_start_offset == 6  # every whole segment below the checkpoint (offset 6) is gone
    sm.reopen()
    assert sm.applied_index == 6
    assert j.apply_all(sm, start=7) == [(6, 6, False, 0), (7, 7, False, 0)]
    assert [v for _, v in values_of(sm)] == [b"v6", b"v7"]
    sm.close()


def test_two_state_machines_cannot_share_a_directory(tmp_path):
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    with pytest.raises(Exception, match="already open"):
        PartitionStateMachine(str(tmp_path), CONFIG)
    sm.close()
