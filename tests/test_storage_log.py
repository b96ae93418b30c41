"""PartitionLog operations on real files: append, read, roll, index, reopen, truncate, reset,
log-start advancement, retention, flush, bad input and foreign or unwritable directories."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import threading

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftka.storage import (
    LEDGER_ENV,
    CorruptBatchError,
    DataDirError,
    ForeignDirectoryError,
    InvalidConfigError,
    InvalidOffsetError,
    InvalidRecordError,
    LogClosedError,
    LogConfig,
    OffsetOutOfRangeError,
    PartitionLog,
    Record,
    RecordTooLargeError,
    StorageError,
    UnwritableDirectoryError,
    encode_batch,
    iter_batches,
    iter_records,
    read_batch_header,
)
from raftka.storage.index import OffsetIndex
from raftka.storage.powerloss import apply_ledger, read_ledger

SMALL = LogConfig(segment_bytes=1000, index_interval_bytes=200)


def batch(first: int, count: int, size: int = 20, ts: int = 1000) -> list[Record]:
    """Records whose value names the offset they are expected to get."""
    return [Record(b"k%d" % o, (b"%d:" % o).ljust(size, b"."), [("h", b"%d" % o)], ts) for o in range(first, first + count)]


def fill(log: PartitionLog, batches: int, per_batch: int = 3, **kw) -> None:
    for _ in range(batches):
        assert log.append(batch(log.log_end_offset, per_batch, **kw)) == log.log_end_offset - per_batch


def assert_contents(log: PartitionLog, start: int, end: int) -> None:
    records = log.read_records(start, max_records=end - start + 1, max_bytes=1 << 30)
    assert [r.offset for r in records] == list(range(start, end))
    assert all(r.value.startswith(b"%d:" % r.offset) and r.key == b"k%d" % r.offset for r in records)


def segment_files(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith((".log", ".index")))


@pytest.fixture
def log_dir(tmp_path):
    return tmp_path / "topic-0"


def test_append_assigns_dense_offsets_and_reads_them_back(log_dir):
    with PartitionLog.open(log_dir) as log:
        assert (log.log_start_offset, log.log_end_offset) == (0, 0)
        assert log.append(batch(0, 3)) == 0
        assert log.append(batch(3, 1)) == 3
        assert log.log_end_offset == 4
        records = log.read_records(0)
        assert [(r.offset, r.key, r.headers) for r in records] == [(o, b"k%d" % o, [("h", b"%d" % o)]) for o in range(4)]
        assert records[0].timestamp == 1000
    assert segment_files(log_dir) == ["00000000000000000000.log"]


def test_read_returns_whole_batches_as_raw_bytes(log_dir):
    with PartitionLog.open(log_dir) as log:
        fill(log, 4)  # batches [0-2] [3-5] [6-8] [9-11]
        result = log.read(4)
        assert [h.base_offset for h, _ in iter_batches(result.data)] == [3, 6, 9]
        assert (result.next_offset, result.log_start_offset, result.log_end_offset) == (12, 0, 12)
        assert [r.offset for r in iter_records(result.data, start_offset=4)] == list(range(4, 12))
        assert read_batch_header(result.data).record_count == 3


def test_read_limits(log_dir):
    with PartitionLog.open(log_dir) as log:
        fill(log, 4)
        one_batch = len(log.read(0, max_records=1).data)
        assert log.read(0, max_bytes=1).next_offset == 3  # at least one batch, even if larger than max_bytes
        assert log.read(0, max_bytes=2 * one_batch).next_offset == 6
        assert log.read(0, max_bytes=2 * one_batch - 1).next_offset == 3
        assert log.read(1, max_records=2).next_offset == 3
        assert log.read(1, max_records=3).next_offset == 6
        assert log.read(0, max_offset=7).next_offset == 6  # batch 6-8 crosses the limit: not served
        assert log.read(6, max_offset=7) == (b"", 6, 0, 12)
        assert log.read(12) == (b"", 12, 0, 12)
        assert [r.offset for r in log.read_records(1, max_records=4)] == [1, 2, 3, 4]


@pytest.mark.parametrize("offset", [-1, 13, 10**12])
def test_reading_outside_the_log_names_the_range(log_dir, offset):
    with PartitionLog.open(log_dir) as log:
        fill(log, 4)
        with pytest.raises(OffsetOutOfRangeError) as info:
            log.read(offset)
        assert (info.value.offset, info.value.log_start_offset, info.value.log_end_offset) == (offset, 0, 12)
        assert "earliest 0" in str(info.value)


def test_segments_roll_at_segment_bytes_and_reads_cross_them(log_dir):
    with PartitionLog.open(log_dir, SMALL) as log:
        fill(log, 30)
        infos = log.segments()
        assert len(infos) >= 5
        assert all(s.size_bytes <= SMALL.segment_bytes for s in infos)
        assert all(a.next_offset == b.base_offset for a, b in zip(infos, infos[1:]))
        assert_contents(log, 0, 90)
        for offset in range(90):
            assert next(iter_records(log.read(offset, max_bytes=1).data, start_offset=offset)).offset == offset
    names = segment_files(log_dir)
    assert names[0] == "00000000000000000000.index"
    assert f"{infos[-1].base_offset:020d}.log" in names
    assert len([n for n in names if n.endswith(".index")]) == len(infos) - 1  # the active segment's index is in memory


def test_a_batch_larger_than_segment_bytes_gets_a_segment_of_its_own(log_dir):
    with PartitionLog.open(log_dir, LogConfig(segment_bytes=100)) as log:
        log.append(batch(0, 5))
        log.append(batch(5, 5))
        assert [s.base_offset for s in log.segments()] == [0, 5]
        assert_contents(log, 0, 10)


def test_index_is_sparse_with_an_entry_per_interval(log_dir):
    config = LogConfig(segment_bytes=1 << 20, index_interval_bytes=1000)
    with PartitionLog.open(log_dir, config) as log:
        fill(log, 100, per_batch=1, size=100)  # batches of ~170 bytes
        batch_size = log.size_bytes // 100
        log._roll()
    with open(log_dir / "00000000000000000000.index", "rb") as f:
        index, trailer = OffsetIndex.decode(f.read())
    assert trailer.next_offset == 100
    gaps = [b - a for a, b in zip(index.positions, index.positions[1:])]
    assert len(index) > 10 and all(1000 <= gap <= 1000 + batch_size for gap in gaps)
    assert index.lookup(50) <= 50 * batch_size < index.lookup(50) + 1000 + batch_size


def test_reopen_keeps_everything_and_continues_offsets(log_dir):
    with PartitionLog.open(log_dir, SMALL) as log:
        fill(log, 20)
        segments = log.segments()
    with PartitionLog.open(log_dir, SMALL) as log:
        assert log.recovery.clean
        assert log.segments() == segments
        assert log.flushed_offset == log.log_end_offset == 60
        fill(log, 2)
        assert_contents(log, 0, 66)


def test_truncate_inside_the_active_segment(log_dir):
    with PartitionLog.open(log_dir) as log:
        fill(log, 4)
        log.truncate(6)
        assert (log.log_end_offset, log.flushed_offset) == (6, 6)
        assert log.append(batch(6, 2)) == 6
        assert_contents(log, 0, 8)
    with PartitionLog.open(log_dir) as log:
        assert log.recovery.clean
        assert_contents(log, 0, 8)


def test_truncate_into_a_closed_segment_deletes_later_segments(log_dir):
    with PartitionLog.open(log_dir, SMALL) as log:
        fill(log, 30)
        bases = [s.base_offset for s in log.segments()]
        target = bases[2] + 3
        log.truncate(target)
        assert [s.base_offset for s in log.segments()] == bases[:3]
        assert log.log_end_offset == target
        assert segment_files(log_dir)[-1] == f"{bases[2]:020d}.log"
        fill(log, 10)
        assert_contents(log, 0, log.log_end_offset)
    with PartitionLog.open(log_dir, SMALL) as log:
        assert log.recovery.clean
        assert_contents(log, 0, target + 30)


def test_truncate_refuses_offsets_it_cannot_honour(log_dir):
    with PartitionLog.open(log_dir) as log:
        fill(log, 4)
        for offset in (-1, 13, 4):  # before the start, beyond the end, inside batch 3-5
            with pytest.raises(InvalidOffsetError):
                log.truncate(offset)
        assert log.log_end_offset == 12
        log.truncate(12)
        log.truncate(0)
        assert (log.log_start_offset, log.log_end_offset, log.read(0).data) == (0, 0, b"")


def test_offsets_must_be_ints(log_dir):
    with PartitionLog.open(log_dir) as log:
        fill(log, 1)
        for call in (log.read, log.truncate, log.advance_start_offset, log.reset):
            for bad in ("1", 1.0, None):
                with pytest.raises(InvalidOffsetError, match="ints"):
                    call(bad)
        assert_contents(log, 0, 3)


def test_reset_restarts_empty_at_any_offset(log_dir):
    with PartitionLog.open(log_dir, SMALL) as log:
        fill(log, 20)
        log.reset(1000)
        assert (log.log_start_offset, log.log_end_offset, log.flushed_offset) == (1000, 1000, 1000)
        assert segment_files(log_dir) == ["00000000000000001000.log"]
        with pytest.raises(OffsetOutOfRangeError):
            log.read(999)
        assert log.append(batch(1000, 2)) == 1000
        log.reset(0)
        assert log.append(batch(0, 1)) == 0
        with pytest.raises(InvalidOffsetError):
            log.reset(-5)
    with PartitionLog.open(log_dir, SMALL) as log:
        assert_contents(log, 0, 1)


def test_open_finishes_an_interrupted_reset(log_dir):
    with PartitionLog.open(log_dir, SMALL) as log:
        fill(log, 20)
    marker = log_dir / "raftka-log.json"
    doc = orjson.loads(marker.read_bytes())
    marker.write_bytes(orjson.dumps({**doc, "reset_to": 500}))  # as if reset() crashed after recording its intent
    with PartitionLog.open(log_dir, SMALL) as log:
        assert log.recovery.finished_reset
        assert (log.log_start_offset, log.log_end_offset) == (500, 500)
        assert segment_files(log_dir) == ["00000000000000000500.log"]
    assert orjson.loads(marker.read_bytes())["reset_to"] is None


def test_advance_start_offset_deletes_whole_segments_and_persists(log_dir):
    with PartitionLog.open(log_dir, SMALL) as log:
        fill(log, 30)
        bases = [s.base_offset for s in log.segments()]
        new_start = bases[3] + 1
        log.advance_start_offset(new_start)
        assert log.log_start_offset == new_start
        assert [s.base_offset for s in log.segments()] == bases[3:]
        with pytest.raises(OffsetOutOfRangeError) as info:
            log.read(new_start - 1)
        assert info.value.log_start_offset == new_start
        assert [r.offset for r in log.read_records(new_start, max_records=2)] == [new_start, new_start + 1]
        for offset in (new_start - 1, 91):
            with pytest.raises(InvalidOffsetError):
                log.advance_start_offset(offset)
    with PartitionLog.open(log_dir, SMALL) as log:
        assert log.log_start_offset == new_start
        log.advance_start_offset(90)  # everything: only the active segment stays
        assert (log.log_start_offset, log.log_end_offset, len(log.segments())) == (90, 90, 1)
        assert log.append(batch(90, 1)) == 90


def test_retention_by_time_deletes_old_closed_segments_only(log_dir):
    config = LogConfig(segment_bytes=1000, retention_ms=10_000)
    with PartitionLog.open(log_dir, config) as log:
        for ts in range(0, 100_000, 2_000):
            log.append(batch(log.log_end_offset, 3, ts=ts))
        segments = log.segments()
        now = 60_000
        expected = [s for s in segments[:-1] if now - s.max_timestamp > 10_000]
        assert 0 < len(expected) < len(segments) - 1
        assert log.apply_retention(now) == len(expected)
        assert log.log_start_offset == segments[len(expected)].base_offset
        with pytest.raises(OffsetOutOfRangeError):
            log.read(0)
        assert log.apply_retention(10**9) == len(segments) - 1 - len(expected)  # all closed ones, never the active
        assert log.segments() == segments[-1:]
        assert_contents(log, log.log_start_offset, log.log_end_offset)


def test_retention_by_bytes_and_its_offset_guard(log_dir):
    config = LogConfig(segment_bytes=1000, retention_bytes=3000, retention_ms=-1)
    with PartitionLog.open(log_dir, config) as log:
        fill(log, 40)
        segments = log.segments()
        guard = segments[2].base_offset
        assert log.apply_retention(max_offset=guard) == 2  # segments holding offsets >= guard are kept
        deleted = log.apply_retention()
        assert deleted > 0
        assert log.size_bytes >= 3000 > log.size_bytes - log.segments()[0].size_bytes
        assert log.log_start_offset == log.segments()[0].base_offset == segments[2 + deleted].base_offset


def test_records_too_large_are_refused_and_nothing_is_written(log_dir):
    with PartitionLog.open(log_dir, LogConfig(max_message_bytes=500)) as log:
        fill(log, 1)
        with pytest.raises(RecordTooLargeError) as info:
            log.append([Record(None, b"x" * 500)])
        assert info.value.limit == 500 and info.value.size > 500
        with pytest.raises(RecordTooLargeError):
            log.append_raw(encode_batch(batch(0, 30)))
        with pytest.raises(InvalidRecordError):
            log.append([])
        assert log.log_end_offset == 3
        assert_contents(log, 0, 3)


def test_append_raw_assigns_offsets_without_reencoding(log_dir):
    raw = encode_batch(batch(7, 3), 7, producer_id=42, producer_epoch=1, base_sequence=9, partition_leader_epoch=3)
    with PartitionLog.open(log_dir) as log:
        fill(log, 1)
        assert log.append_raw(raw) == 3
        assert log.append_raw(raw, partition_leader_epoch=8, verify_records=False) == 6
        (h1, b1), (h2, b2) = list(iter_batches(log.read(3).data))
        assert (h1.base_offset, h1.producer_id, h1.base_sequence, h1.partition_leader_epoch) == (3, 42, 9, 3)
        assert (h2.base_offset, h2.partition_leader_epoch) == (6, 8)
        assert bytes(b1[16:]) == raw[16:]
        assert [r.value for r in log.read_records(3)] == [r.value for r in batch(7, 3)] * 2


def test_append_raw_refuses_bad_batches(log_dir):
    raw = bytearray(encode_batch(batch(0, 2)))
    with PartitionLog.open(log_dir) as log:
        for bad in (raw[:-1], raw + b"\0", raw[:30] + b"\xff" + raw[31:], b"garbage"):
            with pytest.raises(CorruptBatchError):
                log.append_raw(bytes(bad))
        assert log.log_end_offset == 0 and log.size_bytes == 0


def test_flush_makes_appends_durable_as_a_group(log_dir, tmp_path, monkeypatch):
    ledger = tmp_path / "ledger"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    with PartitionLog.open(log_dir) as log:
        fill(log, 5)
        assert log.flushed_offset == 0
        assert log.flush() == 15 == log.flushed_offset
        assert read_ledger(ledger)[str(log_dir / "00000000000000000000.log")] == log.size_bytes
        lines = ledger.read_text().count("\n")
        assert log.flush() == 15
        assert ledger.read_text().count("\n") == lines  # nothing new to flush: no fsync


def test_flush_in_a_worker_thread_while_appending(log_dir, tmp_path, monkeypatch):
    """Group commit with a concurrent flusher: every offset a flush() reported survives power loss."""
    ledger = tmp_path / "ledger"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    log = PartitionLog.open(log_dir, SMALL)
    stop = threading.Event()
    flushed = []

    def flusher():
        while not stop.is_set():
            flushed.append(log.flush())

    worker = threading.Thread(target=flusher)
    worker.start()
    try:
        fill(log, 200)
    finally:
        stop.set()
        worker.join()
    assert flushed == sorted(flushed) and 0 < flushed[-1] <= 600
    apply_ledger(ledger, log_dir)  # power loss before the final flush
    log.close()
    with PartitionLog.open(log_dir, SMALL) as log:
        assert log.log_end_offset >= flushed[-1]
        assert_contents(log, 0, log.log_end_offset)


def test_asyncio_group_commit(log_dir):
    async def produce(log: PartitionLog) -> list[int]:
        acked = []
        for _ in range(20):
            offsets = [log.append(batch(log.log_end_offset, 2)) for _ in range(5)]
            await asyncio.to_thread(log.flush)
            acked.extend(o for o in offsets if o < log.flushed_offset)
        return acked

    with PartitionLog.open(log_dir) as log:
        assert asyncio.run(produce(log)) == list(range(0, 200, 2))


def test_closed_log_refuses_use(log_dir):
    log = PartitionLog.open(log_dir)
    log.close()
    log.close()
    for call in (lambda: log.append(batch(0, 1)), lambda: log.read(0), log.flush, lambda: log.truncate(0)):
        with pytest.raises(LogClosedError):
            call()


def test_a_log_directory_can_be_opened_once(log_dir):
    with PartitionLog.open(log_dir):
        with pytest.raises(DataDirError, match="already open"):
            PartitionLog.open(log_dir)
    PartitionLog.open(log_dir).close()


def test_foreign_directories_are_refused_and_left_untouched(tmp_path):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(ForeignDirectoryError, match="no raftka-log.json marker.*notes.txt"):
        PartitionLog.open(foreign)
    assert os.listdir(foreign) == ["notes.txt"]

    log_dir = tmp_path / "log"
    PartitionLog.open(log_dir).close()
    (log_dir / "00000000000000000000.log.bak").write_text("x")
    with pytest.raises(ForeignDirectoryError, match="log.bak"):
        PartitionLog.open(log_dir)

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ForeignDirectoryError, match="not a directory"):
        PartitionLog.open(a_file)

    bad_marker = tmp_path / "bad"
    bad_marker.mkdir()
    (bad_marker / "raftka-log.json").write_text("{not json")
    with pytest.raises(DataDirError, match="unreadable marker"):
        PartitionLog.open(bad_marker)
    assert (bad_marker / "raftka-log.json").read_text() == "{not json"


_OPEN_AS_NOBODY = """
import os, sys
from raftka.storage import PartitionLog, UnwritableDirectoryError
if os.getuid() == 0:
    os.setgid(65534); os.setuid(65534)
try:
    PartitionLog.open(sys.argv[1]).close()
except UnwritableDirectoryError as exc:
    print("refused:", exc)
"""


@pytest.fixture
def traversable_tmp():
    """A temporary directory that an unprivileged user can reach (pytest's tmp_path is 0700)."""
    path = tempfile.mkdtemp(prefix="raftka-ro-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path)


@pytest.mark.parametrize("existing_log", [False, True])
def test_read_only_directories_are_refused(traversable_tmp, existing_log):
    target = traversable_tmp / "ro" / "p0"
    if existing_log:
        with PartitionLog.open(target) as log:
            fill(log, 2)
        os.chmod(target.parent, 0o755)
        os.chmod(target, 0o555)
    else:
        (traversable_tmp / "ro").mkdir(mode=0o555)
    before = sorted(os.listdir(target)) if existing_log else None
    out = subprocess.run([sys.executable, "-c", _OPEN_AS_NOBODY, str(target)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused: ") and ("not writable" in out.stdout or "cannot create" in out.stdout), out.stdout
    if existing_log:
        assert sorted(os.listdir(target)) == before
        os.chmod(target, 0o755)


def test_config_validation_and_topic_config_names():
    assert LogConfig.from_topic_config({"segment.bytes": "2048", "retention.ms": -1, "cleanup.policy": "delete"}) == LogConfig(
        segment_bytes=2048, retention_ms=-1
    )
    for bad in ({"segment.bytes": "big"}, {"segment.bytes": 0}, {"retention.bytes": -2}, {"max.message.bytes": 1 << 40}):
        with pytest.raises(InvalidConfigError):
            LogConfig.from_topic_config(bad)
    with pytest.raises(InvalidConfigError):
        LogConfig(index_interval_bytes=1.5)


def test_errors_share_one_hierarchy():
    for error in (CorruptBatchError, InvalidOffsetError, OffsetOutOfRangeError, RecordTooLargeError, ForeignDirectoryError, UnwritableDirectoryError, LogClosedError):
        assert issubclass(error, StorageError)


@pytest.fixture(scope="module")
def varied_log(tmp_path_factory):
    """A log of ~300 batches of 1-5 records of varying size over many small segments."""
    rng = random.Random(11)
    log = PartitionLog.open(tmp_path_factory.mktemp("varied") / "log", LogConfig(segment_bytes=3000, index_interval_bytes=400))
    for _ in range(300):
        log.append(batch(log.log_end_offset, rng.randint(1, 5), size=rng.randint(1, 200)))
    headers = [h for s in log.segments() for h, _ in iter_batches(log.read(s.base_offset, max_bytes=1 << 20).data)]
    yield log, headers
    log.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_read_returns_exactly_the_batches_its_limits_allow(varied_log, data):
    log, all_batches = varied_log
    end = log.log_end_offset
    offset = data.draw(st.integers(0, end))
    max_bytes = data.draw(st.integers(0, 3000))
    max_records = data.draw(st.none() | st.integers(1, 40))
    max_offset = data.draw(st.none() | st.integers(0, end + 5))
    limit = end if max_offset is None else min(end, max_offset)
    result = log.read(offset, max_bytes, max_records=max_records, max_offset=max_offset)
    got = [h for h, _ in iter_batches(result.data)]
    segment = next(s for s in reversed(log.segments()) if s.base_offset <= offset)
    following = [h for h in all_batches if h.last_offset >= offset and h.base_offset < segment.next_offset]
    assert got == following[: len(got)]  # whole, contiguous batches from the one holding offset
    assert result.next_offset == (got[-1].next_offset if got else offset)
    assert all(h.next_offset <= limit for h in got)
    total, records = sum(h.size for h in got), sum(h.next_offset - max(offset, h.base_offset) for h in got)
    assert len(got) <= 1 or total <= max_bytes
    if len(got) < len(following):  # it stopped early: one of the limits must say so
        nxt = following[len(got)]
        assert (
            nxt.next_offset > limit
            or (got and total + nxt.size > max_bytes)
            or (max_records is not None and records >= max_records)
        )
