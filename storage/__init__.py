"""raftka.storage: the segmented, checksummed, Kafka-format log of one partition.

Public API (nothing here knows about Raft or HTTP):

  PartitionLog.open(directory, config: LogConfig | None = None) -> PartitionLog
    .append(records, *, producer_id=-1, producer_epoch=-1, base_sequence=-1,
            partition_leader_epoch=-1, timestamp_ms=None) -> base offset
    .append_raw(batch, *, partition_leader_epoch=None, verify_records=True) -> base offset
    .read(offset, max_bytes=1 MiB, *, max_records=None, max_offset=None) -> ReadResult (raw batches)
    .read_records(offset, max_records=500, max_bytes=1 MiB, *, max_offset=None) -> [StoredRecord]
    .offset_for_timestamp(timestamp, *, min_offset=None, max_offset=None) -> TimestampMatch | None
    .flush() -> flushed offset (group commit; may run in a worker thread)
    .truncate(offset)  .advance_start_offset(offset)  .reset(start_offset)
    .apply_retention(now=None, *, max_offset=None) -> segments deleted
    .close()   (also a context manager)
    .log_start_offset .log_end_offset .flushed_offset .size_bytes .segments() .recovery .config
  LogConfig(segment_bytes, index_interval_bytes, max_message_bytes, retention_ms, retention_bytes)
    LogConfig.from_topic_config({"segment.bytes": ..., ...})
  Record(key, value, headers=(), timestamp=None)       records to append
  StoredRecord(offset, timestamp, key, value, headers)  records read back
  encode_batch(records, base_offset=0, ...) -> bytes   RecordBatch v2 codec (see records.py)
  read_batch_header(data, position=0) -> BatchHeader, validate_batch(data, *, records=True),
  iter_batches(data), iter_records(data, *, start_offset=0)
  atomic_write(path, data)                              durable file replace (Raft hard state)
  StorageError and subclasses                           see errors.py
  raftka.storage.powerloss.apply_ledger(ledger, root)   test-mode power-loss simulation
"""

from .config import LogConfig
from .errors import (
    CorruptBatchError,
    CorruptLogError,
    DataDirError,
    ForeignDirectoryError,
    InvalidConfigError,
    InvalidOffsetError,
    InvalidRecordError,
    LogClosedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
    UnwritableDirectoryError,
)
from .fsutil import LEDGER_ENV, atomic_write
from .log import Damage, PartitionLog, ReadResult, RecoveryReport, SegmentInfo, TimestampMatch
from .records import (
    BatchHeader,
    Record,
    StoredRecord,
    encode_batch,
    iter_batches,
    iter_records,
    read_batch_header,
    validate_batch,
)

__all__ = [
    "LEDGER_ENV",
    "BatchHeader",
    "CorruptBatchError",
    "CorruptLogError",
    "Damage",
    "DataDirError",
    "ForeignDirectoryError",
    "InvalidConfigError",
    "InvalidOffsetError",
    "InvalidRecordError",
    "LogClosedError",
    "LogConfig",
    "OffsetOutOfRangeError",
    "PartitionLog",
    "ReadResult",
    "Record",
    "RecordTooLargeError",
    "RecoveryReport",
    "SegmentInfo",
    "StorageError",
    "StoredRecord",
    "TimestampMatch",
    "UnwritableDirectoryError",
    "atomic_write",
    "encode_batch",
    "iter_batches",
    "iter_records",
    "read_batch_header",
    "validate_batch",
]
