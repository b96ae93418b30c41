"""The partition state machine: applies committed produce and delete-records commands to the partition's log.

Each topic partition is a Raft group; its state is a `raftka.storage.PartitionLog`. Applying a
committed entry appends its batch, so offsets are assigned at apply time, dense from 0, in Raft
order, identically on every replica. Everything in the log has been applied, hence committed:
the high watermark is the log end offset.

Commands (the Raft entry data): ``b"P" + RecordBatch v2`` (`encode_produce`; the batch header
carries producer id / epoch / base sequence) and ``b"D" + int64 offset`` (`encode_delete_records`:
Kafka's DeleteRecords, records below the offset are gone). An empty entry is Raft's no-op. Bad
client input never raises: `apply` returns a `ProduceResult` / `DeleteRecordsResult` with a Kafka
error code. Idempotence rules: see `partition_producers`. Decisions:

* max.message.bytes is NOT checked here: apply must be a pure function of the Raft log, and a
  topic config change reaches replicas at different times. The broker checks it before
  proposing; the log is opened with the storage ceiling so that it never refuses a committed
  batch (nor a snapshot batch).
* Batches keep the producer's CreateTime; `log_append_time` is always -1 (no wall clock here).
  The partition leader epoch of an appended batch is the Raft term of its entry.
* Transactional and control batches are refused (INVALID_RECORD): raftka has no transactions.
* Deleting records moves the *log start offset* as of that entry, on every replica alike (it is
  applied state, kept in the checkpoint); it only moves forward, and never past the log end
  (OFFSET_OUT_OF_RANGE). It may fall inside a batch: reads from it return that whole batch, and
  Kafka clients skip the records below their fetch offset, as with Kafka. The segments wholly
  below it are deleted when the next checkpoint has recorded it (`checkpoint`), so a crash never
  leaves the log starting beyond its checkpoint; the storage log keeps starting at a segment base. Retention deletes segments per replica, by each
  replica's clock (as in Kafka); the log start offset is the later of the two.

Durability and exactly-once apply: `checkpoint()` fsyncs the log, then atomically replaces
``checkpoint.json`` = {applied_index, applied_term, log_end_offset, log_start_offset, producers,
install}. On open
the log is cut back to the checkpoint's log end (batches beyond it are re-applied from the Raft
journal: no batch is appended twice); a log that ends before it is data loss
(`PartitionDataLossError`). Retention deletes only checkpointed segments, so a crash never
leaves the log starting beyond its checkpoint. An I/O error while changing the live log or the
checkpoint stops the state machine (fail-stop, `PartitionStateError` from then on): skipping an
entry would make this replica diverge; `reopen()` (the host calls it once the disk takes writes
again) recovers from the checkpoint without a restart. Retention still runs on a stopped state
machine (it only deletes whole checkpointed segments), so a full disk can be freed.

Snapshot stream (see `partition_snapshot` for the formats): the leader serves its stored batches
from the follower's cursor; the follower stages them in ``snapshot-staging`` and
`finish_install` moves them into the live log: a live log that holds nothing (a replica a move
just added) is replaced by the staging directory, renamed into place, so that installing a large
partition costs no copy; a live log with data gets the staged batches copied after it. The commit
point is a checkpoint with an ``install`` marker written after the staging log and the live log are
fsynced; open() finishes an install interrupted after that point (the rename or the copy). The
staging log is fsynced every `STAGING_FLUSH_BYTES` as chunks arrive, so the last fsync is short.
A checkpoint taken before an install whose job (a worker thread's fsyncs) runs after it writes
nothing: the install's checkpoint is newer. As the Raft log, a renamed-in log replaces the one
the journal appends to (`PartitionJournal.use_log`), and the journal restarts at the install.

Directory layout: ``<dir>/checkpoint.json``, ``<dir>/log/`` (the PartitionLog),
``<dir>/snapshot-staging/`` (only during an install).

**The log as the Raft log** (``raft_log=True``, how the broker runs it): the group's Raft log is
this very log (`partition_journal.PartitionJournal`, `open_journal`): a produce command's batch is
appended when its entry is appended to the Raft log, so every record is written once.  Then:

* the high watermark is where the applied entries end, not the log end: the log also holds
  entries not committed yet (reads stop at the high watermark); opening does not cut the log
  back to the checkpoint, the journal owns what lies beyond it;
* `apply` appends nothing: it records the batch's producer state and moves the high watermark;
* the idempotence and validity checks happen before the entry exists, on the leader
  (`admit`): against the producer state of everything in its log, committed or not (a leader's
  log is committed as it is).  A refused batch is never proposed; a retried one is answered
  with the offsets of its original (once that is applied).  Leases keep two leaders from
  admitting at once (produce runs on the leader under its lease).
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NamedTuple

import orjson

from raftka.storage import (
    CorruptBatchError,
    LogConfig,
    PartitionLog,
    atomic_write,
    iter_batches,
    read_batch_header,
    validate_batch,
)
from raftka.storage.fsutil import fsync_dir, record_durable

from . import canary
from .partition_producers import (
    INT32_MAX,
    CachedBatch,
    OutOfOrderSequenceError,
    ProducerFencedError,
    ProducerTable,
    last_sequence,
)
from .partition_snapshot import (
    SnapshotFormatError,
    Staging,
    decode_chunk,
    decode_cursor,
    encode_chunk,
    encode_cursor,
)

logger = logging.getLogger("raftka.raft.partition")

PRODUCE_TAG = b"P"
DELETE_RECORDS_TAG = b"D"
CHECKPOINT_FILE = "checkpoint.json"
LOG_DIR = "log"
DEFAULT_MAX_PRODUCERS = 1000
DEFAULT_CHUNK_BYTES = 1 << 20
STAGING_FLUSH_BYTES = 16 << 20
REPLACED_LOG_DIR = "log.replaced"  # the empty live log a swap install moves aside
_CHECKPOINT_FORMAT = "raftka-partition-checkpoint"
_CHECKPOINT_VERSION = 1
_STORAGE_MAX_MESSAGE_BYTES = (1 << 31) - 1
_TRANSACTIONAL = 0x10
_CONTROL = 0x20


class ProduceError(enum.IntEnum):
    """Kafka error codes a produce command can end with."""

    NONE = 0
    CORRUPT_MESSAGE = 2
    INVALID_REQUEST = 42
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    INVALID_PRODUCER_EPOCH = 47
    INVALID_RECORD = 87


class DeleteRecordsError(enum.IntEnum):
    """Kafka error codes a delete-records command can end with."""

    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    INVALID_REQUEST = 42


@dataclass(frozen=True, slots=True)
class ProduceResult:
    """Outcome of one produce command. Offsets are -1 when error is not NONE."""

    base_offset: int
    last_offset: int
    log_append_time: int = -1
    duplicate: bool = False  # a retry of an appended batch: the offsets are the original ones
    error: ProduceError = ProduceError.NONE
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is ProduceError.NONE

    @classmethod
    def failed(cls, error: ProduceError, message: str) -> ProduceResult:
        return cls(-1, -1, error=error, error_message=message)


@dataclass(frozen=True, slots=True)
class DeleteRecordsResult:
    """Outcome of one delete-records command: the offset below which records are deleted after it, the same on
    every replica (a replica whose retention removed more starts later: `PartitionStateMachine.log_start_offset`)."""

    deleted_before: int
    error: DeleteRecordsError = DeleteRecordsError.NONE
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is DeleteRecordsError.NONE


class PartitionStateError(Exception):
    """The partition's durable state is unusable (bad checkpoint, failed I/O, internal inconsistency)."""


class PartitionDataLossError(PartitionStateError):
    """The partition log lacks batches that its checkpoint says were applied."""


class Admission(NamedTuple):
    """`admit`'s verdict on a produce command the leader was asked to propose: `result` None means propose
    it; else answer `result` without proposing, once entry `wait_index` (of term `wait_term`) is applied
    when it is not 0 (a retry of a batch still on its way)."""

    result: ProduceResult | None
    wait_index: int = 0
    wait_term: int = 0


class _Checkpoint(NamedTuple):
    applied_index: int
    applied_term: int
    log_end_offset: int
    log_start_offset: int
    producers: list
    install: dict | None  # {"start": offset, "reset": bool} while an install is being committed


def encode_produce(batch: bytes | bytearray | memoryview) -> bytes:
    """The Raft command that appends `batch` (a RecordBatch v2 made by storage.encode_batch)."""
    return b"".join((PRODUCE_TAG, batch))


_OFFSET = struct.Struct(">q")


def encode_delete_records(before_offset: int) -> bytes:
    """The Raft command that deletes the records below `before_offset` (moves the log start offset there)."""
    return DELETE_RECORDS_TAG + _OFFSET.pack(before_offset)


class PartitionStateMachine:
    """The state of one partition replica: its log, applied Raft index and producer state.

    Implements `raft.host.StateMachine` and `raft.core.Snapshotter`. `max_producers` must be
    the same on every replica of the group (it decides evictions, which decide dedup results).
    """

    def __init__(self, directory: str, log_config: LogConfig, *, max_producers: int = DEFAULT_MAX_PRODUCERS,
                 snapshot_chunk_bytes: int = DEFAULT_CHUNK_BYTES, lock: bool = True, raft_log: bool = False):
        """lock=False: the caller guarantees that nothing else opens `directory` (the broker: its Raft host
        locks the whole data directory), and each log saves the descriptor of a lock of its own.
        raft_log=True: the log is the group's Raft log (module docstring; `open_journal`)."""
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._checkpoint_path = os.path.join(self.directory, CHECKPOINT_FILE)
        self._max_producers = max_producers
        self._chunk_bytes = snapshot_chunk_bytes
        self._failure: str | None = None
        self._config = replace(log_config, max_message_bytes=_STORAGE_MAX_MESSAGE_BYTES)
        self._lock = lock
        self.raft_log = raft_log
        self._journal = None  # the PartitionJournal over our log (raft_log)
        self._pending: ProducerTable | None = None  # leader: producer state of its whole log (see admit)
        self._pending_term = -1
        self._pending_index: dict[int, int] = {}  # leader: base offset -> Raft index of entries not applied yet
        self._checkpoint_io = threading.Lock()  # a checkpoint's job (worker thread) vs. a snapshot install
        self._installs = 0  # snapshot installs so far (see begin_checkpoint)
        self._open()

    def _open(self) -> None:
        config = self._config
        checkpoint = self._read_checkpoint()
        self.applied_index = checkpoint.applied_index
        self.applied_term = checkpoint.applied_term
        self._checkpointed_end = checkpoint.log_end_offset
        self._deleted_before = checkpoint.log_start_offset  # records below were deleted (DeleteRecords)
        self._checkpointed_deleted = checkpoint.log_start_offset  # ... as the checkpoint on disk says
        self._checkpointed_index = checkpoint.applied_index
        self._applied_end = checkpoint.log_end_offset  # where the applied entries end: the high watermark
        self._producers = self._load_producers(checkpoint.producers)
        self._pending, self._pending_term, self._pending_index = None, -1, {}
        self.log = PartitionLog.open(os.path.join(self.directory, LOG_DIR), config, lock=self._lock)
        self._staging = Staging(self.directory, config, lock=self._lock)
        try:
            if checkpoint.install is not None:
                self._finish_interrupted_install(checkpoint)
            else:
                self._staging.discard()  # an install that never reached its commit point
                self._cut_back_to(checkpoint.log_end_offset)
            self._applied_end = checkpoint.log_end_offset
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ state

    @property
    def high_watermark(self) -> int:
        """Offset after the last applied (hence committed) record; the log end unless the log is the Raft log."""
        return self._applied_end

    @property
    def log_start_offset(self) -> int:
        """First readable offset: past deleted records and past segments retention removed."""
        return max(self._deleted_before, self.log.log_start_offset)

    @property
    def replica_bytes(self) -> int:
        """Bytes of this replica's log, counting a snapshot being received (what a reassignment copied so far)."""
        staging = self._staging
        if not staging.active:
            return self.log.size_bytes
        staged = staging.log.size_bytes
        return staged if staging.reset else self.log.size_bytes + staged

    @property
    def producer_count(self) -> int:
        return len(self._producers)

    # ------------------------------------------------------------------ apply

    def apply(self, index: int, term: int, data: bytes) -> ProduceResult | DeleteRecordsResult | None:
        """Apply the committed entry at Raft `index`; None for a no-op or an entry applied before."""
        self._check_usable()
        if index <= self.applied_index:
            return None  # already in the log (replay overlap): exactly-once
        if index != self.applied_index + 1:
            raise PartitionStateError(
                f"{self.directory}: entry {index} applied after {self.applied_index}: entries are missing")
        tag = data[:1]
        if not data:
            result = None
        elif tag == DELETE_RECORDS_TAG:
            result = self._delete_records(data)
        elif tag != PRODUCE_TAG:
            logger.warning("%s: raft entry %d has unknown command tag %r; ignored", self.directory, index, tag)
            result = ProduceResult.failed(ProduceError.INVALID_REQUEST, f"unknown partition command tag {tag!r}")
        elif self.raft_log:
            result = self._record(index, data)
        else:
            result = self._produce(index, term, memoryview(data)[1:])
        self.applied_index, self.applied_term = index, term
        return result

    # ------------------------------------------------------ the log as the Raft log

    def open_journal(self, hard_states, name: str, cache_bytes: int):
        """The Raft log of this partition's group: this log (raft_log=True)."""
        from .partition_journal import PartitionJournal
        if not self.raft_log:
            raise PartitionStateError(f"{self.directory}: opened without raft_log, it has a journal of its own")
        self._journal = PartitionJournal(self.log, hard_states, name, cache_bytes=cache_bytes,
                                         applied=(self.applied_index, self.applied_term, self._applied_end))
        self._pending, self._pending_term, self._pending_index = None, -1, {}
        return self._journal

    def _record(self, index: int, data: bytes) -> ProduceResult:
        """Apply a committed produce command whose batch is already in the log: producer state and high
        watermark."""
        if self._journal is not None and self._journal.is_meta(index):  # not a valid batch: it was not stored
            try:
                validate_batch(memoryview(data)[1:], records=False)
            except CorruptBatchError as exc:
                return ProduceResult.failed(ProduceError.CORRUPT_MESSAGE, str(exc))
            return ProduceResult.failed(ProduceError.CORRUPT_MESSAGE, "batch not stored")
        header = read_batch_header(data, 1)
        base = self._applied_end
        last = base + header.record_count - 1
        if header.producer_id >= 0:
            self._producers.record(header.producer_id, header.producer_epoch, CachedBatch(
                header.base_sequence, last_sequence(header.base_sequence, header.record_count), base, last))
        self._pending_index.pop(base, None)
        self._applied_end = last + 1
        return ProduceResult(base, last)

    def admit(self, data: bytes, term: int) -> Admission:
        """Leader, before proposing a produce command in `term`: propose it, or answer it without (module
        docstring). Checks the batch's framing and CRC and the producer state of the whole log."""
        if data[:1] != PRODUCE_TAG:
            return Admission(None)  # another command (delete records): its apply decides
        try:
            header = validate_batch(memoryview(data)[1:], records=False)  # records were validated at the broker edge
        except CorruptBatchError as exc:
            return Admission(ProduceResult.failed(ProduceError.CORRUPT_MESSAGE, str(exc)))
        verdict = self._check_flags(header)
        if verdict is not None:
            return Admission(verdict)
        pid, epoch, first_seq = header.producer_id, header.producer_epoch, header.base_sequence
        if pid < 0:
            return Admission(None)
        if epoch < 0 or first_seq < 0:
            return Admission(self._bad_producer_fields(pid, epoch, first_seq))
        self._check_usable()
        if self._pending is None or self._pending_term != term:
            self._rebuild_pending(term)
        last_seq = last_sequence(first_seq, header.record_count)
        try:
            original = None if canary.enabled("no-dedup") else self._pending.check(pid, epoch, first_seq, last_seq)
        except ProducerFencedError as exc:
            return Admission(ProduceResult.failed(ProduceError.INVALID_PRODUCER_EPOCH, str(exc)))
        except OutOfOrderSequenceError as exc:
            return Admission(ProduceResult.failed(ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER, str(exc)))
        if original is None:
            return Admission(None)
        result = ProduceResult(original.base_offset, original.last_offset, duplicate=True)
        wait = self._pending_index.get(original.base_offset, 0)
        return Admission(result, wait, self._journal.term_at(wait) or 0 if wait else 0)

    def proposed(self, index: int, data: bytes) -> None:
        """Leader: the admitted command is entry `index` of the Raft log (its batch is in the log now)."""
        if data[:1] != PRODUCE_TAG or self._journal.is_meta(index):
            return
        header = read_batch_header(data, 1)
        if header.producer_id < 0 or self._pending is None:
            return
        base, last = self._journal.data_range(index)
        self._pending.record(header.producer_id, header.producer_epoch, CachedBatch(
            header.base_sequence, last_sequence(header.base_sequence, header.record_count), base, last))
        self._pending_index[base] = index

    def _rebuild_pending(self, term: int) -> None:
        """The producer state of the whole log: the applied state plus the entries beyond it."""
        self._pending = ProducerTable.from_json(self._producers.to_json(), self._max_producers)
        self._pending_term, self._pending_index = term, {}
        journal = self._journal
        for index, entry in enumerate(journal.entries(self.applied_index + 1, journal.last_index + 1, 1 << 62),
                                      start=self.applied_index + 1):
            if journal.is_meta(index) or entry.data[:1] != PRODUCE_TAG:
                continue
            header = read_batch_header(entry.data, 1)
            if header.producer_id >= 0:
                base, last = journal.data_range(index)
                self._pending.record(header.producer_id, header.producer_epoch, CachedBatch(
                    header.base_sequence, last_sequence(header.base_sequence, header.record_count), base, last))
                self._pending_index[base] = index

    @staticmethod
    def _check_flags(header) -> ProduceResult | None:
        if header.attributes & _CONTROL:
            return ProduceResult.failed(ProduceError.INVALID_RECORD, "clients may not write control batches")
        if header.attributes & _TRANSACTIONAL:
            return ProduceResult.failed(ProduceError.INVALID_RECORD, "transactional batches are not supported")
        return None

    @staticmethod
    def _bad_producer_fields(pid: int, epoch: int, first_seq: int) -> ProduceResult:
        return ProduceResult.failed(ProduceError.INVALID_RECORD,
                                    f"batch of producer {pid} needs epoch >= 0 and base sequence >= 0, "
                                    f"got epoch {epoch} and sequence {first_seq}")

    def _delete_records(self, data: bytes) -> DeleteRecordsResult:
        if len(data) != 1 + _OFFSET.size:
            return DeleteRecordsResult(self._deleted_before, DeleteRecordsError.INVALID_REQUEST,
                                       f"a delete-records command is 9 bytes, got {len(data)}")
        (offset,) = _OFFSET.unpack_from(data, 1)
        end = self._applied_end
        if not 0 <= offset <= end:
            return DeleteRecordsResult(self._deleted_before, DeleteRecordsError.OFFSET_OUT_OF_RANGE,
                                       f"cannot delete records before offset {offset}: the log ends at {end}")
        self._deleted_before = max(self._deleted_before, offset)
        return DeleteRecordsResult(self._deleted_before)

    def _produce(self, index: int, term: int, batch: memoryview) -> ProduceResult:
        try:
            header = validate_batch(batch, records=False)  # records were validated at the broker edge
        except CorruptBatchError as exc:
            return ProduceResult.failed(ProduceError.CORRUPT_MESSAGE, str(exc))
        verdict = self._check_flags(header)
        if verdict is not None:
            return verdict
        pid, epoch, first_seq = header.producer_id, header.producer_epoch, header.base_sequence
        if pid >= 0:
            if epoch < 0 or first_seq < 0:
                return self._bad_producer_fields(pid, epoch, first_seq)
            last_seq = last_sequence(first_seq, header.record_count)
            try:
                original = None if canary.enabled("no-dedup") else self._producers.check(pid, epoch, first_seq,
                                                                                           last_seq)
            except ProducerFencedError as exc:
                return ProduceResult.failed(ProduceError.INVALID_PRODUCER_EPOCH, str(exc))
            except OutOfOrderSequenceError as exc:
                return ProduceResult.failed(ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER, str(exc))
            if original is not None:
                return ProduceResult(original.base_offset, original.last_offset, duplicate=True)
        with self._fail_stop(f"appending raft entry {index}"):
            base = self.log.append_raw(batch, partition_leader_epoch=min(term, INT32_MAX), verify_records=False)
        last = base + header.record_count - 1
        if pid >= 0:
            self._producers.record(pid, epoch, CachedBatch(first_seq, last_seq, base, last))
        self._applied_end = last + 1
        return ProduceResult(base, last)

    # ------------------------------------------------------------- durability

    def checkpoint(self) -> int:
        """fsync the log, then record the applied state atomically, then delete the segments wholly below deleted
        records (the checkpoint now says they are gone); returns the durable applied index."""
        index, job = self.begin_checkpoint()
        job()
        self.checkpoint_done()
        return index

    def begin_checkpoint(self) -> tuple[int, Callable[[], None]]:
        """(applied index, the work making it durable): the state is taken now, the job (fsync of the log and
        of the checkpoint file) may run in a worker thread while entries are applied meanwhile; call
        `checkpoint_done` once it has run."""
        self._check_usable()
        index, end, deleted = self.applied_index, self._applied_end, self._deleted_before
        document = self._checkpoint_document(end, None)
        installs = self._installs

        def job() -> None:
            with self._fail_stop("checkpoint"), self._checkpoint_io:
                if installs != self._installs:
                    return  # a snapshot install replaced the state meanwhile: its own checkpoint is newer
                if self.log.flushed_offset < end:
                    self.log.flush()
                atomic_write(self._checkpoint_path, document)
                self._checkpointed_end = max(self._checkpointed_end, end)
                self._checkpointed_deleted = max(self._checkpointed_deleted, deleted)
                self._checkpointed_index = max(self._checkpointed_index, index)
        return index, job

    def checkpoint_done(self) -> None:
        """After a checkpoint: delete the segments wholly below records it says are deleted (on the owning
        thread; as the Raft log, not above the journal's durable compaction point)."""
        with self._fail_stop("deleting records below the log start"):
            self._delete_segments_below(self._segment_ceiling(self._checkpointed_deleted))

    def _delete_segments_below(self, offset: int) -> None:
        """Delete the segments that hold only offsets below `offset`. The log's own start stays a segment base, a
        batch boundary, where a snapshot stream can begin; reads go by `log_start_offset`."""
        base = self._segment_base_below(offset)
        if base > self.log.log_start_offset:
            self.log.advance_start_offset(base)

    def _segment_base_below(self, offset: int) -> int:
        """Where the log would start with the segments wholly below `offset` deleted."""
        if offset <= self.log.log_start_offset:
            return self.log.log_start_offset
        return max(s.base_offset for s in self.log.segments() if s.base_offset <= offset)

    def _segment_ceiling(self, offset: int) -> int:
        """As the Raft log, segments are deleted only below the journal's durable compaction point, which is
        first moved as far as the checkpoint allows (entries it forgets are sent to followers as snapshots)."""
        if self._journal is None:
            return offset
        if offset > self._journal.raft_floor_offset:
            self._journal.compact_through(min(offset, self._checkpointed_end), self._checkpointed_index)
        return min(offset, self._journal.raft_floor_offset)

    @property
    def checkpoint_wanted(self) -> bool:
        """Deleted records wait for a checkpoint to have their segments deleted; so do segments that a checkpoint
        left (the journal's durable compaction point was still below them, or a crash came first)."""
        deleted = self._checkpointed_deleted
        return self._deleted_before > deleted or self._segment_base_below(deleted) > self.log.log_start_offset

    def apply_retention(self, now: int | None = None) -> int:
        """Delete old segments per retention.ms / retention.bytes (only checkpointed ones); returns the count.

        Also after a failure: whole segments below the durable checkpoint are never needed again. As the Raft
        log, never above the durable compaction point of the journal (entries followers may still need).
        """
        target = self.log.retention_start(now, max_offset=self._checkpointed_end)
        return self.log.apply_retention(now, max_offset=min(self._checkpointed_end, self._segment_ceiling(target)))

    def reconfigure(self, log_config: LogConfig) -> None:
        """Take new topic configs (retention, segment size) from now on."""
        self._config = replace(log_config, max_message_bytes=_STORAGE_MAX_MESSAGE_BYTES)
        self.log.reconfigure(self._config)
        self._staging.reconfigure(self._config)

    def reopen(self) -> None:
        """Recover from a failure without a restart: drop the in-memory state, open from the checkpoint."""
        try:
            self.close()
        except Exception as exc:  # the files are released anyway (PartitionLog.close)
            logger.info("%s: closing before reopening: %r", self.directory, exc)
        try:
            self._open()
        except Exception as exc:
            self._failure = f"reopening failed: {exc!r}"
            raise
        self._failure = None

    def close(self) -> None:
        """Release the files. Does not checkpoint (the host checkpoints before closing)."""
        self._staging.close()
        self.log.close()

    # -------------------------------------------------------- snapshot stream

    def begin_install(self) -> bytes:
        """Follower: a new install starts; returns the cursor of the first chunk (our log end)."""
        self._check_usable()
        self._staging.discard()
        return encode_cursor(self._applied_end)

    def read_chunk(self, cursor: bytes) -> tuple[bytes, bool, int]:
        """Leader: (chunk, done, index) of stored batches from the cursor; index is our applied index when done."""
        self._check_usable()
        offset = decode_cursor(cursor)
        start, end = self.log.log_start_offset, self._applied_end
        reset = offset < start
        if reset:
            offset = start
        batches, next_offset = self._read_batches(offset, end)
        if batches is None:  # the cursor is inside one of our batches: the follower's log does not line up
            logger.warning("%s: snapshot cursor %d is not a batch boundary here; restarting from %d",
                        self.directory, offset, start)
            offset, reset = start, True
            batches, next_offset = self._read_batches(offset, end)
            if batches is None:
                raise PartitionStateError(f"{self.directory}: log start offset {start} is not a batch boundary")
        if next_offset < end:
            return encode_chunk(offset, reset, batches), False, 0
        done = {"end": end, "index": self.applied_index, "producers": self._producers.to_json(),
                "log_start": self._deleted_before}
        return encode_chunk(offset, reset, batches, done), True, self.applied_index

    def _read_batches(self, offset: int, end: int) -> tuple[bytes | None, int]:
        """Up to about one chunk of whole batches starting exactly at offset (None if offset is inside a batch)."""
        if offset >= end:
            return b"", offset
        result = self.log.read(offset, self._chunk_bytes)
        first, _ = next(iter_batches(result.data))
        if first.base_offset != offset:
            return None, offset
        return result.data, result.next_offset

    def install_chunk(self, data: bytes) -> bytes:
        """Follower: stage a chunk (the live log does not change); returns the cursor of the next one.

        Stale, duplicate, out-of-order or malformed chunks are ignored (the current cursor is returned).
        """
        self._check_usable()
        try:
            chunk = decode_chunk(data)
        except SnapshotFormatError as exc:
            logger.warning("%s: ignoring snapshot chunk: %s", self.directory, exc)
            return self._cursor()
        staging = self._staging
        if chunk.reset and not (staging.active and staging.reset and staging.start == chunk.start):
            staging.begin(chunk.start, reset=True)
        elif not chunk.reset and not staging.active and chunk.start == self._applied_end:
            staging.begin(chunk.start, reset=False)
        if staging.active and staging.next_offset == chunk.start:
            staging.add(chunk)
            if staging.log.size_bytes - staging.flushed_bytes >= STAGING_FLUSH_BYTES:
                staging.flush()  # spread the fsyncs: finish_install's own stays short
        return self._cursor()

    def _cursor(self) -> bytes:
        staging = self._staging
        return encode_cursor(staging.next_offset if staging.active else self._applied_end)

    def finish_install(self, index: int, term: int) -> bool:
        """Follower: make the staged snapshot (Raft index/term) the live state; False (discarding it) if unusable."""
        self._check_usable()
        staging = self._staging
        problem = self._install_problem(index)
        producers = None
        if problem is None:
            try:
                producers = ProducerTable.from_json(staging.final.producers, self._max_producers)
            except ValueError as exc:
                problem = f"bad producer state: {exc}"
        if problem is not None:
            logger.info("%s: snapshot install at index %d refused: %s", self.directory, index, problem)
            staging.discard()
            return False
        with self._fail_stop(f"installing the snapshot at index {index}"), self._checkpoint_io:
            self._installs += 1  # a checkpoint taken before, still in flight, must not overwrite this one's
            staging.log.flush()
            self.log.flush()
            self.applied_index, self.applied_term, self._producers = index, term, producers
            self._deleted_before = max(self._deleted_before, staging.final.log_start)
            swap = self.log.log_start_offset == self.log.log_end_offset  # nothing live to keep: rename, not copy
            marker = {"start": staging.start, "reset": staging.reset, "swap": swap}
            self._write_checkpoint(log_end=staging.next_offset, install=marker)  # commit point
            if swap:
                self._swap_in_staged()
            else:
                self._copy_staged(staging.log, staging.start, staging.reset)
            self._write_checkpoint()
        staging.discard()
        return True

    def _swap_in_staged(self) -> None:
        """Make the staging directory the live log (the live one holds nothing), durably. As the Raft log, the
        journal follows the new log (the host then restarts it at the install: `PartitionJournal.reset`)."""
        log_dir, replaced = os.path.join(self.directory, LOG_DIR), os.path.join(self.directory, REPLACED_LOG_DIR)
        self.log.close()
        self._staging.close()
        shutil.rmtree(replaced, ignore_errors=True)
        if os.path.isdir(log_dir):
            os.rename(log_dir, replaced)
        os.rename(self._staging.path, log_dir)
        fsync_dir(self.directory)
        for name in os.listdir(log_dir):  # durable under their new names (the test-mode fsync ledger)
            path = os.path.join(log_dir, name)
            if os.path.isfile(path):
                record_durable(path, os.path.getsize(path))
        shutil.rmtree(replaced, ignore_errors=True)
        self.log = PartitionLog.open(log_dir, self._config, lock=self._lock)
        if self._journal is not None:
            self._journal.use_log(self.log)
        self._applied_end = self.log.log_end_offset
        self._pending, self._pending_term, self._pending_index = None, -1, {}

    def _install_problem(self, index: int) -> str | None:
        staging = self._staging
        if not staging.active:
            return "nothing staged"
        if not staging.complete:
            return f"staging holds [{staging.start}, {staging.next_offset}) and is incomplete"
        if staging.final.index != index:
            return f"the staged snapshot is of index {staging.final.index}"
        if index <= self.applied_index:
            return f"already applied up to {self.applied_index}"
        if not staging.reset and staging.start != self._applied_end:
            return f"staging starts at {staging.start} but the applied log ends at {self._applied_end}"
        return None

    def _copy_staged(self, staged: PartitionLog, start: int, reset: bool) -> None:
        """Move the staged batches into the live log (keeping their offsets) and fsync it."""
        if reset:
            self.log.reset(start)
        else:
            self.log.truncate(start)  # after a crash: drop a partial copy
        offset, end = start, staged.log_end_offset
        while offset < end:
            result = staged.read(offset, self._chunk_bytes)
            for header, batch in iter_batches(result.data):
                base = self.log.append_raw(batch, verify_records=False)
                if base != header.base_offset:
                    raise PartitionStateError(
                        f"{self.directory}: staged batch {header.base_offset} landed at offset {base}")
            offset = result.next_offset
        self.log.flush()
        self._applied_end = end
        self._pending, self._pending_term, self._pending_index = None, -1, {}

    def _finish_interrupted_install(self, checkpoint: _Checkpoint) -> None:
        start, reset, end = checkpoint.install["start"], checkpoint.install["reset"], checkpoint.log_end_offset
        if checkpoint.install.get("swap"):
            logger.warning("%s: finishing the snapshot install of index %d interrupted by a crash (rename)",
                           self.directory, self.applied_index)
            if os.path.isdir(self._staging.path):  # the rename had not happened yet
                self._swap_in_staged()
            shutil.rmtree(os.path.join(self.directory, REPLACED_LOG_DIR), ignore_errors=True)
            if (self.log.log_start_offset, self.log.log_end_offset) != (start, end):
                raise PartitionDataLossError(
                    f"{self.directory}: an interrupted snapshot install of [{start}, {end}) cannot be finished: the "
                    f"log holds [{self.log.log_start_offset}, {self.log.log_end_offset})")
            self._write_checkpoint()
            return
        staged = self._staging.open_existing()
        if staged is None or staged.log_start_offset != start or staged.log_end_offset != end:
            found = ("no staging log" if staged is None
                     else f"staging holds [{staged.log_start_offset}, {staged.log_end_offset})")
            raise PartitionDataLossError(
                f"{self.directory}: an interrupted snapshot install of [{start}, {end}) cannot be finished: {found}")
        logger.warning("%s: finishing the snapshot install of index %d interrupted by a crash",
                    self.directory, self.applied_index)
        self._copy_staged(staged, start, reset)
        self._write_checkpoint()
        self._staging.discard()

    # -------------------------------------------------------------- private

    def _cut_back_to(self, end: int) -> None:
        """Drop batches applied after the checkpoint (the journal replays them); as the Raft log, keep them."""
        start, log_end = self.log.log_start_offset, self.log.log_end_offset
        if log_end < end or start > end:
            raise PartitionDataLossError(
                f"{self.directory}: the checkpoint (raft index {self.applied_index}) says the log ends at offset "
                f"{end}, but the log holds [{start}, {log_end}): committed batches are missing")
        if log_end > end and not self.raft_log:
            logger.info("%s: cutting the log back from %d to the checkpoint's %d; the journal replays the rest",
                     self.directory, log_end, end)
            self.log.truncate(end)

    def _read_checkpoint(self) -> _Checkpoint:
        try:
            with open(self._checkpoint_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return _Checkpoint(0, 0, 0, 0, [], None)
        try:
            doc = orjson.loads(raw)
            if doc["format"] != _CHECKPOINT_FORMAT or doc["version"] != _CHECKPOINT_VERSION:
                raise ValueError(f"format {doc['format']!r} version {doc['version']!r}")
            checkpoint = _Checkpoint(doc["applied_index"], doc["applied_term"], doc["log_end_offset"],
                                     doc.get("log_start_offset", 0), doc["producers"], doc["install"])
            for name in ("applied_index", "applied_term", "log_end_offset", "log_start_offset"):
                value = getattr(checkpoint, name)
                if type(value) is not int or value < 0:
                    raise ValueError(f"{name} must be an int >= 0, got {value!r}")
            install = checkpoint.install
            if install is not None and not (type(install.get("start")) is int and type(install.get("reset")) is bool):
                raise ValueError(f"bad install marker {install!r}")
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PartitionStateError(f"unreadable partition checkpoint {self._checkpoint_path}: {exc}") from None
        return checkpoint

    def _load_producers(self, doc: list) -> ProducerTable:
        try:
            return ProducerTable.from_json(doc, self._max_producers)
        except ValueError as exc:
            raise PartitionStateError(f"unreadable producer state in {self._checkpoint_path}: {exc}") from None

    def _write_checkpoint(self, *, log_end: int | None = None, install: dict | None = None) -> None:
        log_end = self._applied_end if log_end is None else log_end
        atomic_write(self._checkpoint_path, self._checkpoint_document(log_end, install))
        self._checkpointed_end = log_end
        self._checkpointed_deleted = self._deleted_before
        self._checkpointed_index = self.applied_index

    def _checkpoint_document(self, log_end: int, install: dict | None) -> bytes:
        return orjson.dumps({
            "format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION,
            "applied_index": self.applied_index, "applied_term": self.applied_term, "log_end_offset": log_end,
            "log_start_offset": self._deleted_before, "producers": self._producers.to_json(), "install": install,
        })

    @contextmanager
    def _fail_stop(self, action: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self._failure = f"{action} failed: {exc!r}"
            logger.error("%s: %s; the state machine stops until reopened", self.directory, self._failure)
            raise

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise PartitionStateError(f"{self.directory}: stopped after an I/O failure ({self._failure}); "
                                      "reopen it to recover from its checkpoint")
