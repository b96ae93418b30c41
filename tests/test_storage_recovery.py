"""Crash and corruption recovery with real files and real processes: torn and flipped bytes in the
active segment, corrupt closed segments, lost indexes, power loss through the fsync ledger, and a
writer process killed with SIGKILL in the middle of appending."""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftka.storage import LEDGER_ENV, CorruptLogError, LogConfig, PartitionLog, Record, iter_batches
from raftka.storage.powerloss import apply_ledger

SMALL = LogConfig(segment_bytes=2000, index_interval_bytes=300)
ACTIVE = "00000000000000000000.log"


def append_numbered(log: PartitionLog, batches: int, rng: random.Random) -> None:
    for _ in range(batches):
        first = log.log_end_offset
        log.append([Record(b"k", b"%d" % o * rng.randint(1, 6), [("n", b"%d" % o)], o) for o in range(first, first + rng.randint(1, 4))])


def check_numbered(log: PartitionLog) -> None:
    """Every readable record is intact and sits at the offset its content names."""
    records = log.read_records(log.log_start_offset, max_records=10**6, max_bytes=1 << 30)
    assert [r.offset for r in records] == list(range(log.log_start_offset, log.log_end_offset))
    for r in records:
        assert r.headers == [("n", b"%d" % r.offset)] and r.timestamp == r.offset
        assert r.value == b"%d" % r.offset * (len(r.value) // len(b"%d" % r.offset))


def batch_bounds(log: PartitionLog) -> list[tuple[int, int, int]]:
    """(start position, end position, next offset) of every batch in a single-segment log."""
    bounds, position = [], 0
    for header, raw in iter_batches(log.read(0, max_bytes=1 << 30).data):
        bounds.append((position, position + len(raw), header.next_offset))
        position += len(raw)
    return bounds


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A closed single-segment log of ~40 batches and its batch boundaries."""
    path = tmp_path_factory.mktemp("template") / "log"
    with PartitionLog.open(path) as log:
        append_numbered(log, 40, random.Random(1))
        bounds = batch_bounds(log)
    return path, bounds


def damaged_copy(template_path) -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="raftka-damage-"), "log")
    shutil.copytree(template_path, path)
    return path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_torn_tail_recovers_the_valid_prefix(template, data):
    template_path, bounds = template
    size = bounds[-1][1]
    cut = data.draw(st.integers(0, size))
    path = damaged_copy(template_path)
    try:
        os.truncate(os.path.join(path, ACTIVE), cut)
        with PartitionLog.open(path) as log:
            whole = [b for b in bounds if b[1] <= cut]
            valid_size = whole[-1][1] if whole else 0
            assert log.log_end_offset == (whole[-1][2] if whole else 0)
            assert log.size_bytes == valid_size
            if cut == valid_size:
                assert log.recovery.clean
            else:
                [truncation] = log.recovery.truncations
                assert (truncation.position, truncation.length) == (valid_size, cut - valid_size)
                assert truncation.path.endswith(ACTIVE) and "torn" in truncation.reason
                assert log.recovery.truncated_bytes == cut - valid_size
            check_numbered(log)
            log.append([Record(b"k", b"%d" % log.log_end_offset, [("n", b"%d" % log.log_end_offset)], log.log_end_offset)])
        with PartitionLog.open(path) as log:
            assert log.recovery.clean
            check_numbered(log)
    finally:
        shutil.rmtree(os.path.dirname(path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_flipped_bytes_cut_the_log_before_the_damaged_batch(template, data):
    template_path, bounds = template
    position = data.draw(st.integers(0, bounds[-1][1] - 1))
    mask = data.draw(st.integers(1, 255))
    path = damaged_copy(template_path)
    try:
        segment = os.path.join(path, ACTIVE)
        with open(segment, "r+b") as f:
            f.seek(position)
            byte = f.read(1)[0]
            f.seek(position)
            f.write(bytes([byte ^ mask]))
        damaged = next(i for i, b in enumerate(bounds) if b[0] <= position < b[1])
        start = bounds[damaged][0]
        with PartitionLog.open(path) as log:
            if 12 <= position - start < 16:
                # partitionLeaderEpoch is outside the CRC (as in Kafka): undetectable, and harmless here
                assert log.recovery.clean and log.log_end_offset == bounds[-1][2]
            else:
                [truncation] = log.recovery.truncations
                assert (truncation.position, truncation.length) == (start, bounds[-1][1] - start)
                assert log.log_end_offset == (bounds[damaged - 1][2] if damaged else 0)
            check_numbered(log)
    finally:
        shutil.rmtree(os.path.dirname(path))


def flip(path: str, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ 0x40]))


def test_corruption_in_a_closed_segment_is_reported_on_read(tmp_path):
    path = tmp_path / "log"
    with PartitionLog.open(path, SMALL) as log:
        append_numbered(log, 60, random.Random(2))
        victim = log.segments()[1]
        (h1, b1), (h2, _) = list(iter_batches(log.read(victim.base_offset, max_bytes=1 << 20).data))[:2]
    segment_path = str(path / f"{victim.base_offset:020d}.log")
    flip(segment_path, len(b1) + 70)  # inside the records of the segment's second batch
    with PartitionLog.open(path, SMALL) as log:
        assert log.recovery.clean  # closed segments are trusted on open (their index is intact)...
        with pytest.raises(CorruptLogError) as info:
            log.read(h2.base_offset)  # ...but a batch that fails its CRC is never served
        assert (info.value.path, info.value.position) == (segment_path, len(b1))
        assert "CRC" in str(info.value) and segment_path in str(info.value)
        good = log.read(h1.base_offset)  # the batch before the damage is served, and stops there
        assert good.next_offset == h2.base_offset
        assert [r.offset for r in log.read_records(victim.next_offset, max_records=3)] == [victim.next_offset + i for i in range(3)]
        with pytest.raises(CorruptLogError):
            log.read_records(0, max_records=10**6, max_bytes=1 << 30)


def test_truncating_into_a_damaged_segment_changes_nothing(tmp_path):
    path = tmp_path / "log"
    with PartitionLog.open(path, SMALL) as log:
        append_numbered(log, 60, random.Random(8))
        victim = log.segments()[1]
        batches = list(iter_batches(log.read(victim.base_offset, max_bytes=1 << 20).data))
    flip(str(path / f"{victim.base_offset:020d}.log"), 30)  # first batch of the segment: its CRC fails
    with PartitionLog.open(path, SMALL) as log:
        segments = log.segments()
        with pytest.raises(CorruptLogError):
            log.truncate(batches[2][0].base_offset)  # the bytes that would remain are damaged
        assert log.segments() == segments and log.log_end_offset == segments[-1].next_offset


def test_missing_or_damaged_indexes_are_rebuilt(tmp_path):
    path = tmp_path / "log"
    with PartitionLog.open(path, SMALL) as log:
        append_numbered(log, 60, random.Random(3))
        segments = log.segments()
    assert len(segments) >= 4
    indexes = [str(path / f"{s.base_offset:020d}.index") for s in segments[:3]]
    originals = [pathlib.Path(p).read_bytes() for p in indexes]
    os.unlink(indexes[0])
    flip(indexes[1], 5)
    os.truncate(indexes[2], 10)
    with PartitionLog.open(path, SMALL) as log:
        assert sorted(log.recovery.rebuilt_indexes) == indexes
        assert not log.recovery.damaged_segments
        assert log.segments() == segments
        check_numbered(log)
    assert [pathlib.Path(p).read_bytes() for p in indexes] == originals
    with PartitionLog.open(path, SMALL) as log:
        assert log.recovery.clean


def test_a_damaged_closed_segment_is_reported_at_open_when_its_index_is_rebuilt(tmp_path):
    path = tmp_path / "log"
    with PartitionLog.open(path, SMALL) as log:
        append_numbered(log, 60, random.Random(4))
        victim = log.segments()[1]
    segment_path = str(path / f"{victim.base_offset:020d}.log")
    os.unlink(str(path / f"{victim.base_offset:020d}.index"))
    flip(segment_path, victim.size_bytes - 5)
    with PartitionLog.open(path, SMALL) as log:
        [damage] = log.recovery.damaged_segments
        assert damage.path == segment_path and "CRC" in damage.reason
        assert os.path.getsize(segment_path) == victim.size_bytes  # closed segments are never cut
        with pytest.raises(CorruptLogError):
            log.read_records(victim.base_offset, max_records=10**6, max_bytes=1 << 30)


def test_power_loss_keeps_exactly_the_flushed_prefix(tmp_path, monkeypatch):
    ledger, path = tmp_path / "ledger", tmp_path / "log"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    rng = random.Random(5)
    log = PartitionLog.open(path, SMALL)
    append_numbered(log, 30, rng)
    log.flush()
    append_numbered(log, 40, rng)  # rolls segments (which fsyncs the closed ones) and leaves an unflushed tail
    durable = log.flushed_offset
    assert durable < log.log_end_offset
    report = apply_ledger(ledger, path)
    assert report.truncated
    log.close()
    with PartitionLog.open(path, SMALL) as log:
        assert log.log_end_offset == durable
        check_numbered(log)


def test_power_loss_with_partial_writeback_leaves_torn_batches_that_recovery_cuts(tmp_path, monkeypatch):
    torn = 0
    for seed in range(12):
        ledger, path = tmp_path / f"ledger{seed}", tmp_path / f"log{seed}"
        monkeypatch.setenv(LEDGER_ENV, str(ledger))
        rng = random.Random(seed)
        log = PartitionLog.open(path, SMALL)
        append_numbered(log, 20, rng)
        log.flush()
        append_numbered(log, rng.randint(1, 10), rng)
        durable, end = log.flushed_offset, log.log_end_offset
        apply_ledger(ledger, path, keep_unsynced=rng)
        log.close()
        with PartitionLog.open(path, SMALL) as log:
            assert durable <= log.log_end_offset <= end
            check_numbered(log)
            torn += bool(log.recovery.truncations)
    assert torn >= 3


def test_an_interrupted_start_advance_is_finished_on_open(tmp_path):
    path = tmp_path / "log"
    with PartitionLog.open(path, SMALL) as log:
        append_numbered(log, 60, random.Random(6))
        segments = log.segments()
    marker = path / "raftka-log.json"
    new_start = segments[2].base_offset + 1
    marker.write_bytes(orjson.dumps({**orjson.loads(marker.read_bytes()), "log_start_offset": new_start}))
    with PartitionLog.open(path, SMALL) as log:
        assert log.log_start_offset == new_start
        assert len(log.recovery.removed_segments) == 2
        assert [s.base_offset for s in log.segments()] == [s.base_offset for s in segments[2:]]
    marker.write_bytes(orjson.dumps({**orjson.loads(marker.read_bytes()), "log_start_offset": 10**9}))
    with pytest.raises(CorruptLogError, match="below its recorded start"):
        PartitionLog.open(path, SMALL)


WRITER_CONFIG = LogConfig(segment_bytes=20000, index_interval_bytes=1000)
_WRITER = """
import random, sys
from raftka.storage import LogConfig, PartitionLog, Record
log = PartitionLog.open(sys.argv[1], LogConfig(segment_bytes=20000, index_interval_bytes=1000))
rng = random.Random(int(sys.argv[2]))
while True:
    for _ in range(rng.randint(1, 5)):
        first = log.log_end_offset
        log.append([Record(b"k", b"%d" % o * rng.randint(1, 40), [("n", b"%d" % o)], o)
                    for o in range(first, first + rng.randint(1, 30))])
    print(log.flush(), flush=True)
"""


@pytest.mark.parametrize("power_loss", [False, True])
def test_sigkill_mid_append_loses_nothing_fsynced(tmp_path, power_loss):
    rng = random.Random(7 + power_loss)
    for round_ in range(3):
        path, ledger = tmp_path / f"log{round_}", tmp_path / f"ledger{round_}"
        env = {**os.environ, LEDGER_ENV: str(ledger)}
        child = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(round_)], stdout=subprocess.PIPE, env=env)
        try:
            reported = 0
            deadline = time.monotonic() + rng.uniform(0.3, 1.0)
            while time.monotonic() < deadline or reported == 0:
                reported = int(child.stdout.readline())
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            child.stdout.close()
        if power_loss:
            apply_ledger(ledger, path, keep_unsynced=rng if round_ else None)
        with PartitionLog.open(path, WRITER_CONFIG) as log:
            assert log.log_end_offset >= reported > 0
            check_numbered(log)
