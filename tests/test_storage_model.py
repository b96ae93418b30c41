"""Hypothesis state machine: PartitionLog against an in-memory model of offsets and records,
through appends, reads, flushes, truncations, resets, start advances, retention, reopens and
simulated power loss (unflushed bytes dropped, or partly written back, via the fsync ledger)."""

from __future__ import annotations

import os
import random
import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftka.storage import (
    LEDGER_ENV,
    InvalidOffsetError,
    LogConfig,
    OffsetOutOfRangeError,
    PartitionLog,
    Record,
    encode_batch,
)
from raftka.storage.powerloss import apply_ledger

CONFIG = LogConfig(segment_bytes=600, index_interval_bytes=150, retention_ms=40, retention_bytes=1500, max_message_bytes=4000)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="raftka-model-")
        self.path = os.path.join(self.tmp, "log")
        self.ledger = os.path.join(self.tmp, "ledger")
        self.saved_env = os.environ.get(LEDGER_ENV)
        os.environ[LEDGER_ENV] = self.ledger
        self.log = PartitionLog.open(self.path, CONFIG)
        self.start = 0
        self.values: dict[int, bytes] = {}  # offset -> value, for [start, end)
        self.timestamps: dict[int, int] = {}
        self.batch_starts: list[int] = []  # base offsets of the batches still in the log
        self.end = 0

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.tmp)
        if self.saved_env is None:
            os.environ.pop(LEDGER_ENV, None)
        else:
            os.environ[LEDGER_ENV] = self.saved_env

    def _records(self, count: int, pad: int, ts: int) -> list[Record]:
        return [Record(None, b"%d:" % o + b"x" * pad, (), ts) for o in range(self.end, self.end + count)]

    def _remember(self, records: list[Record]) -> None:
        self.batch_starts.append(self.end)
        for record in records:
            self.values[self.end] = record.value
            self.timestamps[self.end] = record.timestamp
            self.end += 1

    def _cut(self, offset: int) -> None:
        """Model truncation: forget offsets >= offset."""
        for o in range(offset, self.end):
            self.values.pop(o, None)
            self.timestamps.pop(o, None)
        self.batch_starts = [b for b in self.batch_starts if b < offset]
        self.end = offset

    # ---- rules ---------------------------------------------------------------------------

    @rule(batches=st.lists(st.tuples(st.integers(1, 8), st.integers(0, 120), st.integers(0, 100)), min_size=1, max_size=4))
    def append(self, batches):
        for count, pad, ts in batches:
            records = self._records(count, pad, ts)
            assert self.log.append(records) == self.end
            self._remember(records)

    @rule(count=st.integers(1, 8), pad=st.integers(0, 120), ts=st.integers(0, 100), bogus_base=st.integers(0, 10**6))
    def append_raw(self, count, pad, ts, bogus_base):
        records = self._records(count, pad, ts)
        assert self.log.append_raw(encode_batch(records, bogus_base)) == self.end
        self._remember(records)

    @rule(data=st.data())
    def read(self, data):
        offset = data.draw(st.integers(self.start - 2, self.end + 2))
        max_records = data.draw(st.integers(1, 30))
        if not self.start <= offset <= self.end:
            with pytest.raises(OffsetOutOfRangeError):
                self.log.read(offset)
            return
        got = self.log.read_records(offset, max_records=max_records, max_bytes=1 << 20)
        expected = range(offset, min(self.end, offset + max_records))
        assert [(r.offset, r.value, r.timestamp) for r in got] == [(o, self.values[o], self.timestamps[o]) for o in expected]

    @rule()
    def flush(self):
        assert self.log.flush() == self.end == self.log.flushed_offset

    @precondition(lambda self: self.batch_starts)
    @rule(data=st.data())
    def truncate(self, data):
        candidates = [b for b in self.batch_starts if b >= self.start] + [self.end]
        offset = data.draw(st.sampled_from(candidates))
        inside = [o for o in range(max(self.start, offset - 3), offset) if o not in self.batch_starts]
        if inside:
            with pytest.raises(InvalidOffsetError):
                self.log.truncate(inside[-1])
        flushed = self.log.flushed_offset
        self.log.truncate(offset)
        if offset < self.end:
            assert self.log.flushed_offset == offset  # a truncation is durable at once
        else:
            assert self.log.flushed_offset == flushed  # truncating at the end changes nothing
        self._cut(offset)

    @rule(data=st.data())
    def advance_start(self, data):
        offset = data.draw(st.integers(self.start, self.end))
        self.log.advance_start_offset(offset)
        self.start = offset
        assert self.log.flushed_offset >= offset

    @rule(now=st.integers(0, 200))
    def retention(self, now):
        segments = self.log.segments()
        closed = segments[:-1]
        count = 0
        while count < len(closed) and now - closed[count].max_timestamp > CONFIG.retention_ms:
            count += 1
        remaining = sum(s.size_bytes for s in segments[count:])
        while count < len(closed) and remaining - closed[count].size_bytes >= CONFIG.retention_bytes:
            remaining -= closed[count].size_bytes
            count += 1
        for segment in closed[:count]:  # what a segment says about itself must match the model
            offsets = range(segment.base_offset, segment.next_offset)
            assert segment.max_timestamp == max(self.timestamps[o] for o in offsets if o in self.timestamps)
        assert self.log.apply_retention(now) == count
        assert self.log.segments() == segments[count:]
        self.start = max(self.start, segments[count].base_offset)

    @precondition(lambda self: len(self.batch_starts) > 5)
    @rule(offset=st.integers(0, 10**6))
    def reset(self, offset):
        self.log.reset(offset)
        self.values.clear()
        self.timestamps.clear()
        self.batch_starts = []
        self.start = self.end = offset

    @rule()
    def reopen(self):
        self.log.close()
        self.log = PartitionLog.open(self.path, CONFIG)
        assert self.log.recovery.clean

    @rule(partial_writeback=st.booleans(), seed=st.integers(0, 2**32))
    def crash(self, partial_writeback, seed):
        durable = self.log.flushed_offset
        apply_ledger(self.ledger, self.path, keep_unsynced=random.Random(seed) if partial_writeback else None)
        self.log.close()  # the stale process state goes away; its final flush only fsyncs what is left
        self.log = PartitionLog.open(self.path, CONFIG)
        survived = self.log.log_end_offset
        if partial_writeback:
            assert durable <= survived <= self.end
        else:
            assert survived == durable
        assert survived in self.batch_starts or survived in (self.end, self.start)
        self._cut(survived)

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def offsets_match(self):
        assert (self.log.log_start_offset, self.log.log_end_offset) == (self.start, self.end)
        assert self.start <= self.log.flushed_offset <= self.end
        segments = self.log.segments()
        assert segments[0].base_offset <= self.start
        assert all(a.next_offset == b.base_offset for a, b in zip(segments, segments[1:]))
        assert segments[-1].next_offset == self.end


LogMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
test_partition_log_matches_model = LogMachine.TestCase
