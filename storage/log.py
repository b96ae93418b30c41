"""PartitionLog: the append-only, offset-addressed log of one partition, made of segments.

It assigns dense offsets, appends encoded or pre-encoded batches, rolls segments at
segment.bytes, serves reads as raw batch bytes, and owns every operation that changes the set
of segments: truncate (Raft conflict resolution), reset (Raft snapshot install), retention and
explicit log-start advancement. Durability is explicit: flush() is a group commit (one fsync of
the active segment covers every append before it) and `flushed_offset` tells how far the log
is durable; segment creation and deletion are made durable at once with a directory fsync.

Threading: one thread (the asyncio event loop) appends, reads and mutates; flush() may run
concurrently in a worker thread (e.g. `await asyncio.to_thread(log.flush)`), so appends and
reads never wait for an fsync. Reads use pread and never block appends.
"""

from __future__ import annotations

import logging
import os
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

from .config import LogConfig
from .directory import LogDirectory, LogMeta
from .errors import (
    CorruptLogError,
    InvalidOffsetError,
    LogClosedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    UnwritableDirectoryError,
)
from .fsutil import fsync_file, record_durable
from .records import (
    Record,
    StoredRecord,
    encode_batch_parts,
    iter_batches,
    iter_records,
    now_ms,
    read_batch_header,
    validate_batch,
)
from .segment import Segment

_log = logging.getLogger(__name__)
_BASE = attrgetter("base_offset")
_INT64_BYTES = 8


class ReadResult(NamedTuple):
    """Raw bytes of whole batches, and where the next read should start.

    data may begin with records below the requested offset (the batch holding it is returned
    whole); decode with iter_records(data, start_offset=offset). next_offset equals the
    requested offset when nothing was returned.
    """

    data: bytes
    next_offset: int
    log_start_offset: int
    log_end_offset: int


class TimestampMatch(NamedTuple):
    """The record `offset_for_timestamp` found: its offset and timestamp."""

    offset: int
    timestamp: int


class SegmentInfo(NamedTuple):
    base_offset: int
    next_offset: int
    size_bytes: int
    max_timestamp: int


@dataclass
class Damage:
    """A byte range of a segment file found torn or corrupt by recovery, and why."""

    path: str
    position: int
    length: int
    reason: str


@dataclass
class RecoveryReport:
    """What opening the log found and repaired. `clean` is True when nothing was wrong.

    truncations: torn or corrupt tails cut from the active segment (data never acknowledged
    as flushed, or damaged). damaged_segments: damage inside closed segments, left in place
    (reads that reach it raise CorruptLogError). rebuilt_indexes: index files rewritten.
    removed_segments: segments wholly below the recorded log start (an interrupted advance).
    finished_reset: an interrupted reset() was completed.
    """

    truncations: list[Damage] = field(default_factory=list)
    rebuilt_indexes: list[str] = field(default_factory=list)
    damaged_segments: list[Damage] = field(default_factory=list)
    removed_segments: list[str] = field(default_factory=list)
    finished_reset: bool = False

    @property
    def truncated_bytes(self) -> int:
        return sum(t.length for t in self.truncations)

    @property
    def clean(self) -> bool:
        return not (self.truncations or self.rebuilt_indexes or self.damaged_segments or self.removed_segments or self.finished_reset)


class PartitionLog:
    """The log of one partition in one directory. Create with PartitionLog.open(directory, config)."""

    def __init__(self, directory: LogDirectory, config: LogConfig, segments: list[Segment], log_start_offset: int, recovery: RecoveryReport) -> None:
        self._dir = directory
        self._config = config
        self._segments = segments
        self._active = segments[-1]
        self._log_start_offset = log_start_offset
        self._flushed_offset = self._active.next_offset
        self._recovery = recovery
        self._lock = threading.Lock()  # guards the segment list against a concurrent flush()
        self._generation = 0  # bumped by truncate/reset so that an in-flight flush cannot overstate
        self._closed = False

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str], config: LogConfig | None = None) -> PartitionLog:
        """Open (or create) the log in directory, recovering from any crash; see `recovery`."""
        config = config or LogConfig()
        log_dir = LogDirectory.open(directory)
        try:
            return cls._recover(log_dir, config)
        except PermissionError as exc:
            log_dir.close()
            raise UnwritableDirectoryError(f"cannot open segment files in {log_dir.path}: {exc}") from exc
        except BaseException:
            log_dir.close()
            raise

    @classmethod
    def _recover(cls, log_dir: LogDirectory, config: LogConfig) -> PartitionLog:
        report = RecoveryReport()
        interval = config.index_interval_bytes
        bases = log_dir.segment_bases()
        meta = log_dir.meta
        if meta.reset_to is not None:
            for base in bases:
                Segment(log_dir.path, base, interval).delete()
            bases = []
            meta = LogMeta(meta.reset_to)
            report.finished_reset = True
        if not bases:
            segment = Segment.create(log_dir.path, meta.log_start_offset, interval)
            segment.close()
            log_dir.fsync()
            record_durable(segment.log_path, 0)
            bases = [meta.log_start_offset]
        if meta != log_dir.meta:
            log_dir.write_meta(meta)
        while len(bases) > 1 and bases[1] <= meta.log_start_offset:
            stale = Segment(log_dir.path, bases.pop(0), interval)
            stale.delete()
            report.removed_segments.append(stale.log_path)
        if report.removed_segments:
            log_dir.fsync()
        segments: list[Segment] = []
        try:
            for base, next_base in zip(bases, bases[1:]):
                segment, rebuilt = Segment.open_closed(log_dir.path, base, interval, next_base)
                segments.append(segment)
                if rebuilt is not None:
                    report.rebuilt_indexes.append(segment.index_path)
                    if rebuilt.error is not None or rebuilt.next_offset != next_base:
                        reason = rebuilt.error or f"segment ends at offset {rebuilt.next_offset}, next segment starts at {next_base}"
                        report.damaged_segments.append(Damage(segment.log_path, rebuilt.valid_size, segment.size - rebuilt.valid_size, reason))
            active, scanned, removed = Segment.open_active(log_dir.path, bases[-1], interval)
            segments.append(active)
        except BaseException:
            for segment in segments:
                segment.close()
            raise
        if removed:
            report.truncations.append(Damage(active.log_path, scanned.valid_size, removed, scanned.error or "trailing bytes"))
        log_start = max(meta.log_start_offset, bases[0])
        if log_start > active.next_offset:
            for segment in segments:
                segment.close()
            raise CorruptLogError(active.log_path, active.size, f"log ends at offset {active.next_offset}, below its recorded start {log_start}")
        if not report.clean:
            _log.warning("recovered log %s: %s", log_dir.path, report)
        return cls(log_dir, config, segments, log_start, report)

    # ---- state ---------------------------------------------------------------------------

    @property
    def directory(self) -> str:
        return self._dir.path

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def recovery(self) -> RecoveryReport:
        """What open() found and repaired."""
        return self._recovery

    @property
    def log_start_offset(self) -> int:
        """First offset that can be read."""
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        """Offset the next appended record will get."""
        return self._active.next_offset

    @property
    def flushed_offset(self) -> int:
        """Every record below this offset is durable (fsynced)."""
        return self._flushed_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def reconfigure(self, config: LogConfig) -> None:
        """Use config (retention, segment size, ...) from now on; existing segments stay as they are."""
        with self._lock:
            self._config = config

    def segments(self) -> list[SegmentInfo]:
        """The segments, oldest first (the last is the active one)."""
        return [SegmentInfo(s.base_offset, s.next_offset, s.size, s.max_timestamp) for s in self._segments]

    # ---- appending -----------------------------------------------------------------------

    def append(
        self,
        records: Sequence[Record],
        *,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        partition_leader_epoch: int = -1,
        timestamp_ms: int | None = None,
    ) -> int:
        """Encode records as one batch and append it; returns the offset of the first record.

        Records whose timestamp is None get timestamp_ms (default: now). The batch is durable
        only after a later flush().
        """
        self._check_open()
        base = self._active.next_offset
        header, body = encode_batch_parts(
            records,
            base,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
            partition_leader_epoch=partition_leader_epoch,
            timestamp_ms=timestamp_ms,
        )
        size = len(header) + len(body)
        if size > self._config.max_message_bytes:
            raise RecordTooLargeError(size, self._config.max_message_bytes)
        info = read_batch_header(header)
        self._append((header, body), size, base, base + len(records), info.max_timestamp)
        return base

    def append_raw(self, batch: bytes | bytearray | memoryview, *, partition_leader_epoch: int | None = None, verify_records: bool = True) -> int:
        """Append a pre-encoded batch, giving it the next offsets; returns its new base offset.

        The batch's own baseOffset is ignored (replaced by the log's next offset, as the CRC
        allows); its partitionLeaderEpoch is kept unless one is given. The header and CRC are
        always checked; verify_records=False skips parsing every record, for batches made by
        encode_batch on a trusted path (e.g. replicated through Raft).
        """
        self._check_open()
        info = validate_batch(batch, records=verify_records)
        if info.size > self._config.max_message_bytes:
            raise RecordTooLargeError(info.size, self._config.max_message_bytes)
        base = self._active.next_offset
        view = memoryview(batch)
        epoch = view[12:16] if partition_leader_epoch is None else partition_leader_epoch.to_bytes(4, "big", signed=True)
        parts = (base.to_bytes(_INT64_BYTES, "big"), view[8:12], epoch, view[16:])
        self._append(parts, info.size, base, base + info.record_count, info.max_timestamp)
        return base

    def _append(self, parts: tuple, size: int, base: int, next_offset: int, max_timestamp: int) -> None:
        segment = self._active
        if segment.size and segment.size + size > self._config.segment_bytes:
            segment = self._roll()
        segment.append(parts, size, base, next_offset, max_timestamp)

    def _roll(self) -> Segment:
        with self._lock:
            old = self._active
            old.seal()
            new = Segment.create(self._dir.path, old.next_offset, self._config.index_interval_bytes)
            self._dir.fsync()
            record_durable(new.log_path, 0)
            self._segments.append(new)
            self._active = new
            self._flushed_offset = max(self._flushed_offset, old.next_offset)
            if old.next_offset <= self._log_start_offset:  # wholly below an advanced start: unreadable
                self._delete_oldest(len(self._segments) - 1)
        return new

    # ---- durability ----------------------------------------------------------------------

    def flush(self) -> int:
        """fsync everything appended so far (group commit); returns the new flushed_offset.

        Safe to call from a worker thread while the owning thread keeps appending.
        """
        with self._lock:
            self._check_open()
            segment = self._active
            end = segment.next_offset
            if end <= self._flushed_offset:
                return self._flushed_offset
            generation = self._generation
            fd = os.dup(segment.fd)
        try:
            size = fsync_file(fd, None)
        finally:
            os.close(fd)
        with self._lock:
            if generation == self._generation:
                self._flushed_offset = max(self._flushed_offset, end)
                if size > segment.durable_size:  # a concurrent seal() or flush() may have recorded more
                    segment.durable_size = size
                    record_durable(segment.log_path, size)
            return self._flushed_offset

    # ---- reading -------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int = 1 << 20, *, max_records: int | None = None, max_offset: int | None = None) -> ReadResult:
        """Raw bytes of the whole batches starting with the one that holds offset.

        Reads from one segment with (usually) one pread. Returns at least one batch if any is
        readable, then stops before exceeding max_bytes, after max_records records at or past
        offset, or before a batch reaching max_offset (exclusive; e.g. the high watermark).
        Raises OffsetOutOfRangeError unless log_start_offset <= offset <= log_end_offset,
        CorruptLogError if a batch to be served fails its CRC.
        """
        self._check_open()
        self._check_offset(offset)
        start, end = self._log_start_offset, self._active.next_offset
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(offset, start, end)
        limit = end if max_offset is None else min(end, max_offset)
        if offset >= limit or (max_records is not None and max_records <= 0):
            return ReadResult(b"", offset, start, end)
        segments = self._segments
        segment = segments[bisect_right(segments, offset, key=_BASE) - 1]
        data, next_offset = segment.read(offset, max_bytes, limit, max_records)
        return ReadResult(data, next_offset, start, end)

    def read_records(self, offset: int, max_records: int = 500, max_bytes: int = 1 << 20, *, max_offset: int | None = None) -> list[StoredRecord]:
        """Decoded records from offset on: at most max_records, about max_bytes of batches.

        Unlike read() it continues into the following segments until a limit is reached.
        """
        records: list[StoredRecord] = []
        position, budget = offset, max_bytes
        while len(records) < max_records and budget > 0:
            result = self.read(position, budget, max_records=max_records - len(records), max_offset=max_offset)
            if not result.data:
                break
            for record in iter_records(result.data, start_offset=position):
                if len(records) == max_records:
                    break
                records.append(record)
            position, budget = result.next_offset, budget - len(result.data)
        return records

    def offset_for_timestamp(self, timestamp: int, *, min_offset: int | None = None,
                             max_offset: int | None = None) -> TimestampMatch | None:
        """The first record at or after min_offset whose timestamp is >= timestamp, as (offset, its timestamp):
        Kafka's ListOffsets by time.

        Returns None when no record below the end (max_offset, else log_end_offset) is that recent.
        Segments are skipped by their max timestamp and batches by their header's; only the batch
        that holds the answer is decoded.
        """
        end = self.log_end_offset if max_offset is None else min(max_offset, self.log_end_offset)
        position = self.log_start_offset if min_offset is None else max(min_offset, self.log_start_offset)
        candidates = [s for s in self.segments() if s.max_timestamp >= timestamp and s.next_offset > position]
        if not candidates:
            return None
        position = max(position, candidates[0].base_offset)
        while position < end:
            result = self.read(position, 1 << 20)  # not max_offset=end: it may fall inside a batch
            if not result.data:
                break
            for header, batch in iter_batches(result.data):
                if header.base_offset >= end:
                    return None
                if header.max_timestamp >= timestamp and header.last_offset >= position:
                    for record in iter_records(batch, start_offset=position):
                        if record.offset >= end:
                            return None
                        if record.timestamp >= timestamp:
                            return TimestampMatch(record.offset, record.timestamp)
            position = result.next_offset
        return None

    # ---- removing data -------------------------------------------------------------------

    def truncate(self, offset: int) -> None:
        """Remove every record at or after offset (durably, before returning).

        offset must be a batch boundary in [log_start_offset, log_end_offset].
        """
        self._check_open()
        self._check_offset(offset)
        start, end = self._log_start_offset, self._active.next_offset
        if not start <= offset <= end:
            raise InvalidOffsetError(f"cannot truncate to offset {offset}: the log holds [{start}, {end})")
        if offset == end:
            return
        with self._lock:
            keep = bisect_right(self._segments, offset, key=_BASE) - 1
            segment = self._segments[keep]
            position, prefix = segment.truncation_point(offset)
            self._generation += 1
            for later in reversed(self._segments[keep + 1 :]):  # newest first: a crash leaves a prefix
                later.delete()
            del self._segments[keep + 1 :]
            self._dir.fsync()
            segment.truncate(position, prefix)
            self._active = segment
            self._flushed_offset = offset

    def advance_start_offset(self, offset: int) -> None:
        """Make offset the first readable offset; whole segments below it are deleted.

        The new start is recorded durably (data below it is flushed first, so the log can never
        reopen with its end below its start).
        """
        self._check_open()
        self._check_offset(offset)
        start, end = self._log_start_offset, self._active.next_offset
        if not start <= offset <= end:
            raise InvalidOffsetError(f"cannot move the log start to {offset}: the log holds [{start}, {end})")
        if offset == start:
            return
        if offset > self._flushed_offset:
            self.flush()
        with self._lock:
            self._dir.write_meta(LogMeta(offset))
            self._log_start_offset = offset
            self._delete_oldest(sum(1 for i in range(len(self._segments) - 1) if self._segments[i + 1].base_offset <= offset))

    def apply_retention(self, now: int | None = None, *, max_offset: int | None = None) -> int:
        """Delete the oldest closed segments that break retention.ms or retention.bytes.

        Like Kafka: first the leading segments whose max timestamp is older than retention.ms,
        then leading segments while the log minus that segment is still >= retention.bytes.
        The active segment is never deleted, nor a segment holding offsets >= max_offset (pass
        the high watermark or Raft's applied offset). Returns the number of segments deleted.
        """
        self._check_open()
        now = now_ms() if now is None else now
        config = self._config
        with self._lock:
            closed = self._segments[:-1]
            if max_offset is not None:
                closed = [s for s, nxt in zip(closed, self._segments[1:]) if nxt.base_offset <= max_offset]
            count = 0
            if config.retention_ms >= 0:
                while count < len(closed) and now - closed[count].max_timestamp > config.retention_ms:
                    count += 1
            if config.retention_bytes >= 0:
                remaining = self.size_bytes - sum(s.size for s in closed[:count])
                while count < len(closed) and remaining - closed[count].size >= config.retention_bytes:
                    remaining -= closed[count].size
                    count += 1
            self._delete_oldest(count)
            return count

    def _delete_oldest(self, count: int) -> None:
        if not count:
            return
        for segment in self._segments[:count]:
            segment.delete()
        del self._segments[:count]
        self._dir.fsync()
        self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)

    def reset(self, start_offset: int) -> None:
        """Drop every record and restart empty at start_offset (e.g. a Raft snapshot install).

        Crash-safe: the intent is recorded first, and an interrupted reset is finished by open().
        """
        self._check_open()
        self._check_offset(start_offset)
        if start_offset < 0:
            raise InvalidOffsetError(f"cannot reset to offset {start_offset}: must be >= 0")
        with self._lock:
            self._generation += 1
            self._dir.write_meta(LogMeta(self._log_start_offset, reset_to=start_offset))
            for segment in reversed(self._segments):
                segment.delete()
            segment = Segment.create(self._dir.path, start_offset, self._config.index_interval_bytes)
            self._dir.fsync()
            record_durable(segment.log_path, 0)
            self._dir.write_meta(LogMeta(start_offset))
            self._segments = [segment]
            self._active = segment
            self._log_start_offset = start_offset
            self._flushed_offset = start_offset

    # ---- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and release the files and the directory lock. Idempotent.

        The files are released even when the flush fails (its error is raised after).
        """
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
                for segment in self._segments:
                    segment.close()
                self._dir.close()

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def _check_offset(offset: object) -> None:
        if type(offset) is not int:
            raise InvalidOffsetError(f"offsets are ints, got {offset!r}")

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"log {self._dir.path} is closed")

    def __repr__(self) -> str:
        return f"PartitionLog({self._dir.path!r}, start={self._log_start_offset}, end={self.log_end_offset}, flushed={self._flushed_offset})"

