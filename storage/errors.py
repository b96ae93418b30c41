"""Exceptions raised by raftka.storage: one small hierarchy under StorageError.

Everything the storage engine refuses or detects (bad input, corrupt bytes, a
foreign or unwritable data directory, an offset outside the log) is reported
with one of these, carrying the facts a caller needs (offsets, file, position).
Input errors also subclass ValueError so generic validation code catches them.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by raftka.storage."""


class InvalidConfigError(StorageError, ValueError):
    """A LogConfig value is out of range or not a number."""


class InvalidRecordError(StorageError, ValueError):
    """Records handed to the encoder are malformed (wrong types, empty batch, out-of-range numbers)."""


class RecordTooLargeError(InvalidRecordError):
    """An encoded batch is larger than the log's max.message.bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"batch of {size} bytes exceeds max.message.bytes={limit}")
        self.size = size
        self.limit = limit


class CorruptBatchError(StorageError, ValueError):
    """Bytes that should hold a RecordBatch v2 do not (bad length, magic, CRC, varint, record layout)."""


class CorruptLogError(StorageError):
    """Corruption found in a segment file while serving a read: names the file and byte position."""

    def __init__(self, path: str, position: int, reason: str) -> None:
        super().__init__(f"corrupt log data in {path} at byte {position}: {reason}")
        self.path = path
        self.position = position
        self.reason = reason


class InvalidOffsetError(StorageError, ValueError):
    """An offset argument is negative, beyond the log end, below the log start or inside a batch."""


class OffsetOutOfRangeError(InvalidOffsetError):
    """A read asked for an offset outside [log_start_offset, log_end_offset]."""

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int) -> None:
        super().__init__(
            f"offset {offset} is out of range: the log holds offsets "
            f"[{log_start_offset}, {log_end_offset}) (earliest {log_start_offset}, latest {log_end_offset})"
        )
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class DataDirError(StorageError):
    """The partition directory cannot be used as a raftka log."""


class ForeignDirectoryError(DataDirError):
    """The directory holds files that raftka did not write (or lacks raftka's marker while non-empty)."""


class UnwritableDirectoryError(DataDirError):
    """The directory (or a file in it) cannot be created or written: read-only, permissions, not a directory."""


class LogClosedError(StorageError):
    """The PartitionLog was closed and cannot be used any more."""
