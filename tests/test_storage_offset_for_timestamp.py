"""PartitionLog.offset_for_timestamp: the first record at or after a start offset whose timestamp is >= t (its
offset and timestamp), as a brute-force scan says."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftka.storage import LogConfig, PartitionLog, Record

SMALL = LogConfig(segment_bytes=600, index_interval_bytes=100)

# Batches of record timestamps: not sorted (producers set them), so segment and batch maxima matter.
batches = st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=6), min_size=0, max_size=15)


def expected(timestamps: list[int], start: int, end: int, t: int) -> tuple[int, int] | None:
    return next(((o, timestamps[o]) for o in range(start, end) if timestamps[o] >= t), None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches, targets=st.lists(st.integers(-1, 52), min_size=1, max_size=8),
       drop=st.integers(0, 3), cap=st.integers(0, 200), skip=st.integers(0, 60))
def test_offset_for_timestamp_matches_a_scan(batches, targets, drop, cap, skip):
    with tempfile.TemporaryDirectory() as directory:
        with PartitionLog.open(directory, SMALL) as log:
            timestamps: list[int] = []
            for stamps in batches:
                log.append([Record(b"k", b"v" * 40, (), ts) for ts in stamps])
                timestamps += stamps
            segments = log.segments()
            if drop and len(segments) > 1:  # retention moved the start: offsets below it are gone
                log.advance_start_offset(segments[min(drop, len(segments) - 1)].base_offset)
            start, end = log.log_start_offset, log.log_end_offset
            max_offset = max(start, min(cap, end))
            min_offset = start + skip  # a start offset inside a batch, or beyond the end
            for t in targets:
                assert log.offset_for_timestamp(t) == expected(timestamps, start, end, t)
                assert log.offset_for_timestamp(t, max_offset=max_offset) == expected(timestamps, start, max_offset, t)
                assert log.offset_for_timestamp(t, min_offset=min_offset) == expected(timestamps, min_offset, end, t)
