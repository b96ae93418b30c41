"""Snapshot stream of a partition: the cursor and chunk formats, and the follower's staging area.

A follower whose needed journal entries were compacted away copies the leader's partition log
instead. The follower asks with a *cursor* (the offset it needs next), the leader answers with a
*chunk* (stored batches from that offset), until the chunk that reaches the leader's log end.

Cursor: orjson ``{"offset": N}``.

Chunk: ``u32 header length (big-endian) | orjson header | raw batches`` where the header is::

    {"start": S,        offset of the first batch in the chunk (the cursor, or the leader's log
                        start when "reset" is set)
     "reset": bool,     the follower asked for offsets below the leader's log start (retention):
                        it must drop its log and continue from S
     "done": bool,      this chunk reaches the leader's log end; then also:
     "end": E,          the leader's log end offset
     "index": I,        the leader's applied Raft index that the snapshot represents
     "producers": [..], the leader's idempotent-producer state (ProducerTable.to_json)
     "log_start": L}    the offset below which records were deleted (DeleteRecords; 0 if absent)

and the raw batches are the leader's stored RecordBatch v2 bytes, unchanged (same offsets, same
partition leader epochs), so the follower's log becomes byte-identical to the leader's.

`Staging` keeps the batches of an install in progress in a separate PartitionLog
(``<partition dir>/snapshot-staging``): the live log does not change until the install is
finished by the state machine.
"""

from __future__ import annotations

import os
import shutil
import struct
from typing import NamedTuple

import orjson

from raftka.storage import CorruptBatchError, LogConfig, PartitionLog, iter_batches

STAGING_DIR = "snapshot-staging"
_U32 = struct.Struct(">I")


class SnapshotFormatError(ValueError):
    """Bytes that should be a snapshot cursor or chunk are malformed."""


class Chunk(NamedTuple):
    start: int
    reset: bool
    done: bool
    end: int | None
    index: int | None
    producers: list | None
    log_start: int  # of the last chunk: records below it were deleted
    batches: memoryview  # contiguous batches starting at `start`, CRCs verified
    next_offset: int  # offset after the last batch (== start when there is none)


def encode_cursor(offset: int) -> bytes:
    return orjson.dumps({"offset": offset})


def decode_cursor(data: bytes) -> int:
    try:
        offset = orjson.loads(data)["offset"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise SnapshotFormatError(f"malformed snapshot cursor {bytes(data[:64])!r}: {exc}") from None
    if type(offset) is not int or offset < 0:
        raise SnapshotFormatError(f"snapshot cursor offset must be an int >= 0, got {offset!r}")
    return offset


def encode_chunk(start: int, reset: bool, batches: bytes, done: dict | None = None) -> bytes:
    """A chunk of `batches` (whole stored batches from `start`); `done` = {"end", "index", "producers", "log_start"}
    for the last."""
    header = {"start": start, "reset": reset, "done": done is not None, **(done or {})}
    raw = orjson.dumps(header)
    return b"".join((_U32.pack(len(raw)), raw, batches))


def decode_chunk(data: bytes) -> Chunk:
    """Parse and check a chunk: header fields, batch CRCs, offsets contiguous from start."""
    view = memoryview(data)
    try:
        (length,) = _U32.unpack_from(view)
        header = orjson.loads(view[4 : 4 + length])
        start, reset, done = header["start"], header["reset"], header["done"]
        end, index, producers = header.get("end"), header.get("index"), header.get("producers")
        log_start = header.get("log_start", 0)
    except (struct.error, orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise SnapshotFormatError(f"malformed snapshot chunk header: {exc}") from None
    if type(start) is not int or start < 0 or type(reset) is not bool or type(done) is not bool:
        raise SnapshotFormatError(f"bad snapshot chunk header {header!r}")
    if done and not (type(end) is int and type(index) is int and isinstance(producers, list)):
        raise SnapshotFormatError("the last snapshot chunk must carry end, index and producers")
    if type(log_start) is not int or not 0 <= log_start <= (end if done else log_start):
        raise SnapshotFormatError(f"bad log start {log_start!r} in a snapshot chunk")
    batches = view[4 + length :]
    next_offset = start
    try:
        for info, _ in iter_batches(batches):
            if info.base_offset != next_offset:
                raise SnapshotFormatError(f"snapshot chunk batch at offset {info.base_offset}, expected {next_offset}")
            next_offset = info.next_offset
    except CorruptBatchError as exc:
        raise SnapshotFormatError(f"corrupt batch in snapshot chunk: {exc}") from None
    if not done and next_offset == start:
        raise SnapshotFormatError("a snapshot chunk that is not the last must carry batches")
    return Chunk(start, reset, done, end, index, producers, log_start, batches, next_offset)


class Staging:
    """Batches of a snapshot being received, in a PartitionLog beside the live one."""

    def __init__(self, partition_dir: str, config: LogConfig, *, lock: bool = True):
        self.path = os.path.join(partition_dir, STAGING_DIR)
        self._config = config
        self._lock = lock
        self.log: PartitionLog | None = None
        self.reset = False  # the install replaces the live log instead of extending it
        self.final: Chunk | None = None  # the last chunk, once received
        self.flushed_bytes = 0  # of the staged log, fsynced

    @property
    def active(self) -> bool:
        return self.log is not None

    @property
    def start(self) -> int:
        return self.log.log_start_offset

    @property
    def next_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def complete(self) -> bool:
        """Was the last chunk received, and does the staged log reach the leader's log end?"""
        return self.log is not None and self.final is not None and self.next_offset == self.final.end

    def begin(self, start: int, reset: bool) -> None:
        """Start staging an empty log at offset start (dropping anything staged before)."""
        if self.log is None:
            self.log = PartitionLog.open(self.path, self._config, lock=self._lock)
        self.log.reset(start)
        self.reset = reset
        self.final = None
        self.flushed_bytes = 0

    def add(self, chunk: Chunk) -> None:
        """Append a chunk that starts at next_offset; batches keep their offsets."""
        if chunk.start != self.next_offset:
            raise ValueError(f"chunk starts at {chunk.start}, staging continues at {self.next_offset}")
        for header, batch in iter_batches(chunk.batches):
            base = self.log.append_raw(batch, verify_records=False)
            if base != header.base_offset:
                raise AssertionError(f"staged batch {header.base_offset} landed at offset {base}")
        if chunk.done:
            self.final = chunk

    def reconfigure(self, config: LogConfig) -> None:
        self._config = config
        if self.log is not None:
            self.log.reconfigure(config)

    def flush(self) -> None:
        self.log.flush()
        self.flushed_bytes = self.log.size_bytes

    def open_existing(self) -> PartitionLog | None:
        """The staging log left by an interrupted install (at open time), or None if there is none."""
        if not os.path.isdir(self.path):
            return None
        self.log = PartitionLog.open(self.path, self._config, lock=self._lock)
        return self.log

    def discard(self) -> None:
        """Forget the install in progress and delete its files."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.reset = False
        self.final = None

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
