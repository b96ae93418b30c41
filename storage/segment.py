"""One segment of a partition log: a `<base_offset:020d>.log` file of whole batches plus its index.

A Segment appends batches (one writev per batch), serves reads as raw batch bytes with one
pread in the common case (index lookup, then a walk over at most one index interval of batch
headers), verifies the CRC of every batch it serves, truncates at a batch boundary, and seals
itself (fsync + index file) when the log rolls to a new segment. Only the last (active)
segment is written; closed segments are read-only and keep their `.index` file. Opening
recovers: the active segment is scanned batch by batch and cut at the first torn or corrupt
batch; a closed segment's index is trusted only if its trailer matches the file, otherwise it
is rebuilt by a scan.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from .errors import CorruptBatchError, CorruptLogError, InvalidOffsetError, StorageError
from .fsutil import fsync_file
from .index import IndexTrailer, OffsetIndex
from .records import HEADER_SIZE, BatchHeader, batch_crc_ok, read_batch_header

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
NO_TIMESTAMP = -1
_SCAN_CHUNK = 1 << 20
_FIRST_READ_LIMIT = 4 << 20  # larger reads grow geometrically, so max_records can stop them early
_ACTIVE_FLAGS = os.O_RDWR | os.O_APPEND


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


class ScanResult(NamedTuple):
    """Outcome of walking a segment file from byte 0: the valid prefix and what stopped the walk."""

    valid_size: int
    next_offset: int
    max_timestamp: int
    index: OffsetIndex
    bytes_since_index: int
    error: str | None


def scan(fd: int, base_offset: int, size: int, index_interval: int) -> ScanResult:
    """Walk the batches in the first size bytes, checking header, offset continuity and CRC.

    Stops at the first torn or invalid batch; builds the sparse index on the way with the same
    rule as Segment.append, so a rebuilt index equals the one written while appending.
    """
    index = OffsetIndex()
    position, next_offset, max_ts, since = 0, base_offset, NO_TIMESTAMP, 0
    buf, buf_start = b"", 0
    error = None
    while position < size:
        rel = position - buf_start
        if rel + HEADER_SIZE > len(buf):
            buf, buf_start, rel = os.pread(fd, min(_SCAN_CHUNK, size - position), position), position, 0
            if len(buf) < HEADER_SIZE:
                error = f"torn batch header ({len(buf)} of {HEADER_SIZE} bytes) at end of file"
                break
        try:
            header = read_batch_header(buf, rel)
        except CorruptBatchError as exc:
            error = str(exc)
            break
        if header.base_offset != next_offset:
            error = f"batch has base offset {header.base_offset}, expected {next_offset}"
            break
        if rel + header.size > len(buf):
            buf, buf_start, rel = os.pread(fd, min(max(_SCAN_CHUNK, header.size), size - position), position), position, 0
            if len(buf) < header.size:
                error = f"torn batch ({len(buf)} of {header.size} bytes) at end of file"
                break
        if not batch_crc_ok(buf, rel, header):
            error = f"CRC mismatch in batch at offset {header.base_offset}"
            break
        if since >= index_interval:
            index.add(header.base_offset - base_offset, position)
            since = 0
        since += header.size
        position += header.size
        next_offset = header.next_offset
        if header.max_timestamp > max_ts:
            max_ts = header.max_timestamp
    return ScanResult(position, next_offset, max_ts, index, since, error)


class _Window:
    """A growing in-memory copy of segment bytes [start, limit), read with as few preads as possible."""

    __slots__ = ("fd", "path", "start", "limit", "buf")

    def __init__(self, fd: int, path: str, start: int, limit: int, first_read: int) -> None:
        self.fd, self.path, self.start, self.limit = fd, path, start, limit
        self.buf = os.pread(fd, max(0, min(first_read, limit - start)), start)

    def _ensure(self, end: int) -> bool:
        have = len(self.buf)
        if end > have:
            want = min(max(end - have, have), self.limit - self.start - have)
            if want > 0:
                self.buf += os.pread(self.fd, want, self.start + have)
        return len(self.buf) >= end

    def header(self, pos: int) -> BatchHeader:
        if not self._ensure(pos + HEADER_SIZE):
            raise CorruptLogError(self.path, self.start + pos, "segment data ends inside a batch header")
        try:
            return read_batch_header(self.buf, pos)
        except CorruptBatchError as exc:
            raise CorruptLogError(self.path, self.start + pos, str(exc)) from exc

    def check_batch(self, pos: int, header: BatchHeader) -> None:
        if not self._ensure(pos + header.size):
            raise CorruptLogError(self.path, self.start + pos, "segment data ends inside a batch")
        if not batch_crc_ok(self.buf, pos, header):
            raise CorruptLogError(self.path, self.start + pos, f"CRC mismatch in batch at offset {header.base_offset}")


class Segment:
    """A segment file, its in-memory sparse index and the facts about its batches."""

    __slots__ = (
        "base_offset", "log_path", "index_path", "index_interval", "size", "next_offset",
        "max_timestamp", "index", "bytes_since_index", "fd", "active", "durable_size",
    )

    def __init__(self, directory: str, base_offset: int, index_interval: int) -> None:
        name = os.path.join(directory, segment_name(base_offset))
        self.base_offset = base_offset
        self.log_path = name + LOG_SUFFIX
        self.index_path = name + INDEX_SUFFIX
        self.index_interval = index_interval
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp = NO_TIMESTAMP
        self.index = OffsetIndex()
        self.bytes_since_index = 0
        self.fd: int | None = None
        self.active = False
        self.durable_size = 0  # bytes known to be fsynced (written to the test-mode ledger in order)

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str, base_offset: int, index_interval: int) -> Segment:
        """A new empty active segment file (the caller makes its creation durable)."""
        segment = cls(directory, base_offset, index_interval)
        segment.fd = os.open(segment.log_path, _ACTIVE_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
        segment.active = True
        return segment

    @classmethod
    def open_active(cls, directory: str, base_offset: int, index_interval: int, *,
                    fsync: bool = True) -> tuple[Segment, ScanResult, int]:
        """Open the last segment for appending: scan it and cut it at the first bad batch.

        Returns (segment, scan result, bytes removed). A stale index file is deleted: the
        active segment's index lives in memory until the segment is sealed. fsync=False: the
        caller just created the (empty) file and made it durable.
        """
        segment = cls(directory, base_offset, index_interval)
        segment.fd = os.open(segment.log_path, _ACTIVE_FLAGS)
        segment.active = True
        file_size = os.fstat(segment.fd).st_size
        result = scan(segment.fd, base_offset, file_size, index_interval)
        removed = file_size - result.valid_size
        if removed:
            os.ftruncate(segment.fd, result.valid_size)
        segment.durable_size = fsync_file(segment.fd, segment.log_path) if fsync else result.valid_size
        segment._adopt(result)
        try:
            os.unlink(segment.index_path)
        except FileNotFoundError:
            pass
        return segment, result, removed

    @classmethod
    def open_closed(
        cls, directory: str, base_offset: int, index_interval: int, expected_next_offset: int
    ) -> tuple[Segment, ScanResult | None]:
        """Open a closed segment from its index file; if that is missing or damaged, rebuild it.

        Returns (segment, scan result if the index was rebuilt). The log file is never changed:
        damage found by the rebuild scan stays in place and reads that reach it raise
        CorruptLogError.
        """
        segment = cls(directory, base_offset, index_interval)
        file_size = os.path.getsize(segment.log_path)
        try:
            with open(segment.index_path, "rb") as index_file:
                index, trailer = OffsetIndex.decode(index_file.read())
            if trailer.log_size != file_size or trailer.next_offset != expected_next_offset:
                raise ValueError("index trailer does not match the segment")
        except (OSError, ValueError):
            segment.fd = os.open(segment.log_path, os.O_RDONLY)
            result = scan(segment.fd, base_offset, file_size, index_interval)
            segment._adopt(result)
            segment.size = file_size
            if result.error is None and result.next_offset == expected_next_offset:
                segment._write_index()
            return segment, result
        segment.index, segment.size = index, file_size
        segment.next_offset, segment.max_timestamp = trailer.next_offset, trailer.max_timestamp
        return segment, None

    def _adopt(self, result: ScanResult) -> None:
        self.size = result.valid_size
        self.next_offset = result.next_offset
        self.max_timestamp = result.max_timestamp
        self.index = result.index
        self.bytes_since_index = result.bytes_since_index

    def _fd(self) -> int:
        if self.fd is None:
            self.fd = os.open(self.log_path, os.O_RDONLY)
        return self.fd

    # ---- writing -------------------------------------------------------------------------

    def append(self, parts: tuple, size: int, base_offset: int, next_offset: int, max_timestamp: int) -> None:
        """Write one batch given as buffers whose concatenation is the batch (size bytes)."""
        position = self.size
        try:
            written = os.writev(self.fd, parts)
            if written != size:
                rest = memoryview(b"".join(parts))[written:]
                while rest:
                    rest = rest[os.write(self.fd, rest):]
        except OSError as exc:
            os.ftruncate(self.fd, position)
            raise StorageError(f"append to {self.log_path} failed, nothing written: {exc}") from exc
        if self.bytes_since_index >= self.index_interval:
            self.index.add(base_offset - self.base_offset, position)
            self.bytes_since_index = 0
        self.bytes_since_index += size
        self.size = position + size
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
        self.next_offset = next_offset

    def seal(self) -> None:
        """Make the segment durable and closed: fsync its data and write its index file."""
        self.durable_size = fsync_file(self.fd, self.log_path)
        self._write_index()
        self.active = False

    def _write_index(self) -> None:
        trailer = IndexTrailer(self.next_offset, self.size, self.max_timestamp, len(self.index))
        data = self.index.encode(trailer)
        fd = os.open(self.index_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            fsync_file(fd, self.index_path)
        finally:
            os.close(fd)

    def truncation_point(self, offset: int) -> tuple[int, ScanResult]:
        """Where truncating at offset cuts this segment, checked before anything is changed.

        Returns (byte position of the batch starting at offset, scan of the bytes before it).
        Raises InvalidOffsetError if offset is inside a batch, CorruptLogError if the bytes
        that would remain are damaged.
        """
        position = self.index.lookup(offset - self.base_offset)
        window = _Window(self._fd(), self.log_path, position, self.size, HEADER_SIZE)
        pos = 0
        header = window.header(pos)
        while header.base_offset != offset:
            if header.last_offset >= offset:
                raise InvalidOffsetError(
                    f"offset {offset} is inside the batch [{header.base_offset}, {header.last_offset}]; "
                    "truncate at a batch boundary"
                )
            pos += header.size
            header = window.header(pos)
        prefix = scan(self.fd, self.base_offset, position + pos, self.index_interval)
        if prefix.error is not None or prefix.valid_size != position + pos:
            raise CorruptLogError(self.log_path, prefix.valid_size, prefix.error or "batch boundary not found")
        return position + pos, prefix

    def truncate(self, position: int, prefix: ScanResult) -> None:
        """Cut the segment at a point found by truncation_point; it becomes the active segment."""
        if not self.active:
            self.close()
            self.fd = os.open(self.log_path, _ACTIVE_FLAGS)
            self.active = True
            try:
                os.unlink(self.index_path)
            except FileNotFoundError:
                pass
        os.ftruncate(self.fd, position)
        self.durable_size = fsync_file(self.fd, self.log_path)
        self._adopt(prefix)

    def delete(self) -> None:
        self.close()
        os.unlink(self.log_path)
        try:
            os.unlink(self.index_path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # ---- reading -------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, limit_offset: int, max_records: int | None) -> tuple[bytes, int]:
        """Whole batches from the one containing offset: (bytes, offset after the last record).

        Stops before max_bytes would be exceeded (but returns at least one batch), before a
        batch reaching limit_offset, once max_records records at or after offset are included,
        or at the end of the segment. Every returned batch has its CRC verified.
        """
        size = self.size
        start = self.index.lookup(offset - self.base_offset)
        first_read = self.index_interval + min(max(max_bytes, 0), _FIRST_READ_LIMIT) + HEADER_SIZE
        window = _Window(self._fd(), self.log_path, start, size, first_read)
        pos = 0
        header = window.header(pos)
        while header.last_offset < offset:
            pos += header.size
            header = window.header(pos)
        if header.base_offset > offset:
            raise CorruptLogError(self.log_path, start + pos, f"offset {offset} is missing (next batch starts at {header.base_offset})")
        first, total, next_offset, records = pos, 0, offset, 0
        try:
            while header.next_offset <= limit_offset and (total == 0 or total + header.size <= max_bytes):
                window.check_batch(pos, header)
                total += header.size
                records += header.next_offset - next_offset
                next_offset = header.next_offset
                pos += header.size
                if total >= max_bytes or start + pos >= size or (max_records is not None and records >= max_records):
                    break
                header = window.header(pos)
                if header.base_offset != next_offset:
                    raise CorruptLogError(self.log_path, start + pos, f"batch has base offset {header.base_offset}, expected {next_offset}")
        except CorruptLogError:
            if not total:
                raise
            # Serve the good batches before the damage; a read starting at the damage reports it.
        return window.buf[first : first + total], next_offset
