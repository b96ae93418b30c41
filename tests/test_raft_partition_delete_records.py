"""Deleting records (Kafka's DeleteRecords) in the partition state machine: the log start offset as applied state.

The command moves the log start offset forward (never back, never past the
log end), identically on every application; it survives a crash (replayed
from the journal) and a restart (kept in the checkpoint); the segments wholly
below it go at the next checkpoint, never before; a snapshot stream carries
it to a follower.  Segments a checkpoint could not delete yet still want one.
"""

from __future__ import annotations

import pytest
from partition_helpers import Journal, produce, stream, summary, values_of

from raftka.raft.partition import DELETE_RECORDS_TAG, DeleteRecordsError, PartitionStateMachine, encode_delete_records
from raftka.storage import LogConfig, OffsetOutOfRangeError

CONFIG = LogConfig(segment_bytes=1024, index_interval_bytes=256)


def fill(journal: Journal, batches: int) -> list[tuple[int, bytes]]:
    """`batches` batches of 3 records of ~100 bytes (the 1 KiB segments roll every few batches); the values."""
    values = []
    for n in range(batches):
        batch = [b"%d.%d|" % (n, k) + b"v" * 100 for k in range(3)]
        journal.add(produce(batch))
        values += batch
    return list(enumerate(values))


def test_the_log_start_moves_forward_only_and_never_past_the_end(tmp_path):
    j = Journal()
    fill(j, 10)  # offsets 0..29
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    j.apply_all(sm)
    results = [summary(sm.apply(*j.add(encode_delete_records(offset)))) for offset in (7, 4, 31, 30, -1)]
    assert results == [("deleted", 7, 0), ("deleted", 7, 0), ("deleted", 7, DeleteRecordsError.OFFSET_OUT_OF_RANGE),
                       ("deleted", 30, 0), ("deleted", 30, DeleteRecordsError.OFFSET_OUT_OF_RANGE)]
    assert sm.log_start_offset == sm.high_watermark == 30
    assert sm.apply(*j.add(produce([b"next"]))).base_offset == 30  # offsets are never reused
    assert values_of(sm) == [(30, b"next")]
    malformed = sm.apply(*j.add(DELETE_RECORDS_TAG + b"\x00"))
    assert malformed.error is DeleteRecordsError.INVALID_REQUEST and sm.log_start_offset == 30
    sm.close()


def test_a_start_inside_a_batch_serves_that_batch_from_the_start(tmp_path):
    j = Journal()
    fill(j, 4)
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    j.apply_all(sm)
    sm.apply(*j.add(encode_delete_records(4)))  # the second record of the batch at 3
    assert sm.log_start_offset == 4
    assert values_of(sm)[0][0] == 4
    sm.checkpoint()
    assert sm.log.read(4).data  # still readable from the new start, as a whole batch
    sm.close()


def test_segments_below_go_at_the_checkpoint_and_a_crash_replays_the_deletion(tmp_path):
    j = Journal()
    values = fill(j, 30)
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    j.apply_all(sm)
    sm.checkpoint()
    segments = sm.log.segments()
    assert len(segments) > 4
    cut = segments[3].base_offset + 1  # inside the fourth segment
    delete = j.add(encode_delete_records(cut))
    assert sm.apply(*delete).deleted_before == cut
    assert sm.log.segments() == segments  # nothing deleted before a checkpoint records the new start
    sm.close()  # crash: the deletion was applied, not checkpointed
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    assert (sm.applied_index, sm.log_start_offset) == (delete[0] - 1, 0)
    assert summary(sm.apply(*delete)) == ("deleted", cut, 0)  # the journal replays it
    sm.checkpoint()
    assert [s.base_offset for s in sm.log.segments()] == [s.base_offset for s in segments[3:]]
    assert sm.log.log_start_offset == segments[3].base_offset  # whole segments only
    with pytest.raises(OffsetOutOfRangeError):
        sm.log.read(segments[3].base_offset - 1)
    sm.close()
    sm = PartitionStateMachine(str(tmp_path), CONFIG)  # a restart keeps it (the checkpoint has it)
    assert sm.log_start_offset == cut
    assert values_of(sm) == values[cut:]
    sm.close()


def test_segments_a_checkpoint_left_below_the_log_start_go_at_the_next_one(tmp_path):
    j = Journal()
    fill(j, 30)
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    j.apply_all(sm)
    segments = sm.log.segments()
    sm.apply(*j.add(encode_delete_records(segments[3].base_offset + 1)))
    assert sm.checkpoint_wanted
    _, job = sm.begin_checkpoint()
    job()  # the checkpoint records the new start; the process dies before it deletes the segments
    sm.close()
    sm = PartitionStateMachine(str(tmp_path), CONFIG)
    assert sm.log.segments()[0].base_offset == 0
    assert sm.checkpoint_wanted  # nothing new was applied, the segments below the start still want a checkpoint
    sm.checkpoint()
    assert sm.log.log_start_offset == segments[3].base_offset and not sm.checkpoint_wanted
    sm.close()


def test_a_snapshot_stream_carries_the_log_start_to_a_follower(tmp_path):
    j = Journal()
    fill(j, 30)
    leader = PartitionStateMachine(str(tmp_path / "leader"), CONFIG, snapshot_chunk_bytes=700)
    j.apply_all(leader)
    leader.apply(*j.add(encode_delete_records(40)))
    leader.checkpoint()
    behind = PartitionStateMachine(str(tmp_path / "behind"), CONFIG, snapshot_chunk_bytes=700)
    j.apply_all(behind, stop=5)
    empty = PartitionStateMachine(str(tmp_path / "empty"), CONFIG, snapshot_chunk_bytes=700)
    for follower in (behind, empty):
        ok, _ = stream(leader, follower)
        assert ok and follower.log_start_offset == 40 and values_of(follower) == values_of(leader)
        follower.close()
    empty = PartitionStateMachine(str(tmp_path / "empty"), CONFIG)
    assert empty.log_start_offset == 40  # the install was checkpointed with it
    empty.close()
    leader.close()
