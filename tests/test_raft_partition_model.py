"""Hypothesis state machine: the partition state machine against a simple model.

The model is what clients and Raft know: the list of committed entries (the journal), the
values at each offset, and for each idempotent producer the batches it got acknowledged. Rules
produce (new batches, retries, gaps, epoch bumps, zombies, corrupt batches), no-ops, deleting
records (DeleteRecords: the log start offset), checkpoints, retention, crashes with replay from the journal, and snapshot transfers (complete or
interrupted) to a second replica, which may then take over as the subject. Invariants: each
replica's log holds exactly the model's values for its offsets from its log start offset, which
is never below the model's, and every application of an entry, first or replayed, on any
replica, gives the same result.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftka.raft.partition import DeleteRecordsError, PartitionStateMachine, ProduceError, encode_delete_records
from raftka.raft.partition_producers import CACHED_BATCHES, INT32_MAX
from raftka.raft.partition_snapshot import decode_chunk
from raftka.storage import LogConfig

from partition_helpers import produce, stream, summary, values_of

CONFIG = LogConfig(segment_bytes=1024, index_interval_bytes=256, retention_ms=1000)
PIDS = (1, 2, 3)


class Producer:
    """The client's view of one idempotent producer."""

    def __init__(self, epoch: int, first_seq: int):
        self.epoch = epoch
        self.next_seq = first_seq
        self.acked: list[tuple[int, int, tuple[int, int]]] = []  # (first_seq, count, offsets) in this epoch
        self.old_epochs: list[int] = []


class Replica:
    """One replica's state machine and the index of its last checkpoint."""

    def __init__(self, directory: str):
        self.directory = directory
        self.sm = self._open()
        self.checkpointed = 0

    def _open(self) -> PartitionStateMachine:
        return PartitionStateMachine(self.directory, CONFIG, snapshot_chunk_bytes=300)

    def reopen(self) -> None:
        """Close without a checkpoint (a crash for the state machine) and open again."""
        self.sm.close()
        self.sm = self._open()


class PartitionModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="raftka-partition-model-")
        self.dirs = 0
        self.subject = self._new_replica()
        self.other = self._new_replica()  # a lagging replica: snapshot target, may take over
        self.journal: list[tuple[int, int, bytes]] = []
        self.results: list[tuple | None] = []  # result of each entry, as first applied
        self.values: list[bytes] = []  # value at each offset
        self.end_after = [0]  # log end offset after applying index i
        self.deleted_after = [0]  # offset below which records were deleted, after applying index i
        self.term = 1
        self.producers: dict[int, Producer] = {}
        self.counter = 0

    def teardown(self):
        for replica in (self.subject, self.other):
            replica.sm.close()
        shutil.rmtree(self.tmp)

    def _new_replica(self) -> Replica:
        self.dirs += 1
        return Replica(os.path.join(self.tmp, f"r{self.dirs}"))

    # ---- committing entries ----------------------------------------------------------------

    def _values(self, count: int) -> list[bytes]:
        self.counter += 1
        return [b"%d.%d|" % (self.counter, k) + b"=" * (self.counter * 37 % 120) for k in range(count)]

    def _commit(self, data: bytes):
        """Append an entry to the journal and apply it to the subject; returns its result."""
        index = len(self.journal) + 1
        self.journal.append((index, self.term, data))
        result = self.subject.sm.apply(index, self.term, data)
        self.results.append(summary(result))
        self.deleted_after.append(self.deleted_after[-1])
        return result

    def _expect_append(self, data: bytes, values: list[bytes]) -> tuple[int, int]:
        base = len(self.values)
        result = self._commit(data)
        assert result.ok and not result.duplicate, result
        assert (result.base_offset, result.last_offset) == (base, base + len(values) - 1)
        self.values += values
        self.end_after.append(len(self.values))
        return base, base + len(values) - 1

    def _expect_rejection(self, data: bytes, error: ProduceError) -> None:
        result = self._commit(data)
        assert result.error is error, result
        self.end_after.append(len(self.values))

    # ---- rules: produce --------------------------------------------------------------------

    @rule(counts=st.lists(st.integers(1, 4), min_size=1, max_size=8))
    def produce_plain(self, counts):
        for count in counts:
            values = self._values(count)
            self._expect_append(produce(values), values)

    @rule(pid=st.sampled_from(PIDS), count=st.integers(1, 4),
          first_seq=st.one_of(st.just(0), st.integers(0, INT32_MAX), st.integers(INT32_MAX - 4, INT32_MAX)))
    def produce_next(self, pid, count, first_seq):
        producer = self.producers.get(pid)
        if producer is None:  # a producer the partition has never seen may start anywhere
            producer = self.producers[pid] = Producer(epoch=0, first_seq=first_seq)
        values = self._values(count)
        seq = producer.next_seq
        offsets = self._expect_append(produce(values, pid, producer.epoch, seq), values)
        producer.acked.append((seq, count, offsets))
        producer.next_seq = (seq + count) % (INT32_MAX + 1)

    @precondition(lambda self: any(p.acked for p in self.producers.values()))
    @rule(data=st.data())
    def retry(self, data):
        pid = data.draw(st.sampled_from(sorted(p for p, v in self.producers.items() if v.acked)))
        producer = self.producers[pid]
        back = data.draw(st.integers(1, min(len(producer.acked), CACHED_BATCHES + 2)))
        seq, count, offsets = producer.acked[-back]
        command = produce(self._values(count), pid, producer.epoch, seq)
        if back <= CACHED_BATCHES:
            result = self._commit(command)
            assert result.duplicate and (result.base_offset, result.last_offset) == offsets, result
            self.end_after.append(len(self.values))
        else:
            self._expect_rejection(command, ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER)

    @precondition(lambda self: self.producers)
    @rule(data=st.data(), gap=st.integers(1, 1000))
    def produce_with_gap(self, data, gap):
        pid = data.draw(st.sampled_from(sorted(self.producers)))
        producer = self.producers[pid]
        seq = (producer.next_seq + gap) % (INT32_MAX + 1)
        command = produce(self._values(1), pid, producer.epoch, seq)
        self._expect_rejection(command, ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER)

    @precondition(lambda self: self.producers)
    @rule(data=st.data(), start_at_zero=st.booleans())
    def bump_epoch(self, data, start_at_zero):
        pid = data.draw(st.sampled_from(sorted(self.producers)))
        producer = self.producers[pid]
        values = self._values(2)
        if not start_at_zero:
            command = produce(values, pid, producer.epoch + 1, 3)
            self._expect_rejection(command, ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER)
            return
        offsets = self._expect_append(produce(values, pid, producer.epoch + 1, 0), values)
        producer.old_epochs.append(producer.epoch)
        producer.epoch += 1
        producer.acked = [(0, 2, offsets)]
        producer.next_seq = 2

    @precondition(lambda self: any(p.old_epochs for p in self.producers.values()))
    @rule(data=st.data())
    def zombie_producer(self, data):
        pid = data.draw(st.sampled_from(sorted(p for p, v in self.producers.items() if v.old_epochs)))
        epoch = data.draw(st.sampled_from(self.producers[pid].old_epochs))
        self._expect_rejection(produce(self._values(1), pid, epoch, 0), ProduceError.INVALID_PRODUCER_EPOCH)

    @rule(position=st.integers(0, 200))
    def corrupt_batch(self, position):
        data = bytearray(produce(self._values(2)))
        position = 18 + position % (len(data) - 18)  # inside the CRC or the CRC-covered bytes
        data[position] ^= 0x10
        self._expect_rejection(bytes(data), ProduceError.CORRUPT_MESSAGE)

    @rule(back=st.integers(-2, 12))
    def delete_records(self, back):
        """Delete the records before `back` offsets from the end (-1, -2: past the end)."""
        offset = len(self.values) - back
        result = self._commit(encode_delete_records(offset))
        self.end_after.append(len(self.values))
        if not 0 <= offset <= len(self.values):
            assert result.error is DeleteRecordsError.OFFSET_OUT_OF_RANGE
        else:
            assert result.ok
            self.deleted_after[-1] = max(self.deleted_after[-1], offset)
        assert result.deleted_before == self.deleted_after[-1] <= self.subject.sm.log_start_offset

    @rule()
    def noop(self):
        assert self._commit(b"") is None
        self.end_after.append(len(self.values))

    @rule()
    def new_term(self):
        self.term += 1

    # ---- rules: durability -----------------------------------------------------------------

    @rule(which=st.sampled_from(["subject", "other"]))
    def checkpoint(self, which):
        replica = getattr(self, which)
        replica.checkpointed = replica.sm.checkpoint()
        assert replica.checkpointed == replica.sm.applied_index

    @rule(which=st.sampled_from(["subject", "other"]))
    def crash_and_replay(self, which):
        replica = getattr(self, which)
        applied = replica.sm.applied_index
        replica.reopen()
        assert replica.sm.applied_index == replica.checkpointed
        assert replica.sm.high_watermark == self.end_after[replica.checkpointed]
        self._replay(replica, applied)

    @rule(which=st.sampled_from(["subject", "other"]), checkpoint_first=st.booleans())
    def retention(self, which, checkpoint_first):
        if checkpoint_first:
            self.checkpoint(which)
        if getattr(self, which).sm.apply_retention(now=10**12):
            event("retention deleted segments")

    def _replay(self, replica: Replica, upto: int) -> None:
        for index, term, data in self.journal[replica.sm.applied_index:upto]:
            assert summary(replica.sm.apply(index, term, data)) == self.results[index - 1], index

    # ---- rules: the other replica ----------------------------------------------------------

    @rule(count=st.integers(1, 10))
    def other_applies(self, count):
        self._replay(self.other, self.other.sm.applied_index + count)

    @rule(interrupt_after=st.one_of(st.none(), st.integers(1, 3)), reopen=st.booleans())
    def snapshot_to_other(self, interrupt_after, reopen):
        other = self.other
        if interrupt_after is not None:
            finished, _ = stream(self.subject.sm, other.sm, stop_after=interrupt_after)
            if finished:  # the log fit in fewer chunks
                other.checkpointed = other.sm.applied_index
            if reopen:
                other.reopen()
                assert other.sm.applied_index == other.checkpointed
        self._transfer()

    @rule(after_retention=st.booleans())
    def fresh_replica_by_snapshot(self, after_retention):
        if after_retention:
            self.retention("subject", checkpoint_first=True)
        self.other.sm.close()
        self.other = self._new_replica()
        self._transfer()
        assert self.other.sm.log_start_offset == self.subject.sm.log_start_offset

    def _transfer(self) -> None:
        other = self.other
        behind = other.sm.applied_index < self.subject.sm.applied_index
        ok, chunks = stream(self.subject.sm, other.sm)
        assert ok is behind
        kind = "reset" if decode_chunk(chunks[0]).reset else "extend"
        event(f"snapshot install: {kind}, {'one chunk' if len(chunks) == 1 else 'several chunks'}")
        assert other.sm.applied_index == self.subject.sm.applied_index
        if ok:
            other.checkpointed = other.sm.applied_index  # an install is checkpointed

    @rule()
    def other_takes_over(self):
        self._replay(self.other, len(self.journal))
        self.subject, self.other = self.other, self.subject

    # ---- invariants ------------------------------------------------------------------------

    @invariant()
    def subject_matches_model(self):
        sm = self.subject.sm
        assert (sm.applied_index, sm.high_watermark) == (len(self.journal), len(self.values))
        self._check_log(sm)

    @invariant()
    def other_matches_model(self):
        sm = self.other.sm
        assert sm.high_watermark == self.end_after[sm.applied_index]
        self._check_log(sm)

    def _check_log(self, sm: PartitionStateMachine) -> None:
        start = sm.log_start_offset
        assert start >= self.deleted_after[sm.applied_index]
        assert values_of(sm) == list(enumerate(self.values[: sm.high_watermark]))[start:]


PartitionModel.TestCase.settings = settings(max_examples=40, stateful_step_count=35, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_partition_state_machine_matches_model = PartitionModel.TestCase
