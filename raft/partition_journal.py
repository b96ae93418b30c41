"""The Raft log of a partition group *is* the partition's log: every record is written once.

A partition group's Raft entries are of two kinds:

* **data entries**: produce commands (``b"P"`` + a RecordBatch v2, see `partition`).  The batch
  is appended to the partition's `PartitionLog` when the entry is appended to the Raft log, at
  the next Kafka offsets, with the entry's term as its partitionLeaderEpoch.  A leader's log
  order is the offset order, so Kafka offsets stay dense and equal on every replica, and
  nothing but client batches lives in the log: fetches serve it unchanged, with no offset
  translation (Redpanda keeps its configuration batches in the log and translates offsets).
* **meta entries**: everything else (a new leader's no-op, membership configurations, other
  partition commands).  They are small and rare (a few per election), and are kept with the
  group's hard state in the broker's `HardStateStore`.

Why (measured, see the README's "Measured" section): before, every record was written twice
per replica (a one-record journal batch wrapping the command, then the partition log at apply),
about 2.0-2.3 bytes written per byte acknowledged, two file descriptors per group, and the CPU
of encoding, checksumming and validating each batch twice.  One write-ahead log per broker for
every group's entries (TiKV's raft-engine) would need one fsync per round instead of one per
busy group, but still writes each record twice (the log, then the partition's segments); the
broker is CPU-bound in Python long before 64 partitions' fsyncs (which run in parallel worker
threads) are the limit, so one copy wins.  The hard states, which thousands of groups change
together in an election, are the part that does share one file and one fsync per round.

In memory, for each entry above the compaction point: its term and the Kafka offset where it
ends (a meta entry ends where the entry before it ends).  The compaction point (`snapshot_index`)
and the offset where it ends (`snapshot_offset`) are in the hard state; compaction forgets the
mapping below it, while the data stays in the log until retention deletes whole segments, which
it never does above the durable compaction point (`raft_floor_offset`).

Recovery rebuilds the entries above the compaction point by merging the log's batches (from
`snapshot_offset`) with the stored meta entries by index: at each index the meta entry stored
there, else the next batch.  The log keeps a prefix of what was appended, the store whole syncs,
and a data entry is never written to the log while a meta entry (or the removal of one) is not
durable yet (`append` syncs the store first: once after an election or a truncation), so the
merge never gives a batch the index of a lost meta entry.  Meta entries beyond the merged end
are dropped and the log is cut there.  Durability for the host: `stage_hard_state` puts the
hard state and meta entries into the store (synced once per pump for every group), `begin_sync`
flushes the log; `synced_index` counts an entry once both hold it.

After a snapshot install the state machine has replaced the log (see `partition`): the journal
restarts at the install's index, at the log's end (`reset`), also when it is reopened after a
crash between the install and the hard state that records it (the staged snapshot).

The terms, the cache of the newest entries and the hard state as set are kept as `journal_base`
keeps them for the other journal too.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Callable, Mapping

from raftka.storage import CorruptBatchError, LogClosedError, PartitionLog, iter_batches

from . import canary
from .hardstate import HardStateStore
from .journal_base import JournalBase, JournalError
from .messages import ENTRY_CONFIG, ENTRY_NORMAL, Entry

PRODUCE_TAG = b"P"
INT32_MAX = (1 << 31) - 1
_BATCH_HEADER = 61
_READ_CHUNK = 8 << 20


def is_data(entry: Entry) -> bool:
    """Is the entry a produce command whose batch goes into the partition log?"""
    return entry.kind == ENTRY_NORMAL and entry.data[:1] == PRODUCE_TAG and len(entry.data) > _BATCH_HEADER


class PartitionJournal(JournalBase):
    """`core.RaftLog` over a partition's `PartitionLog` plus its record in the broker's hard state store."""

    def __init__(self, log: PartitionLog, hard_states: HardStateStore, name: str, *, cache_bytes: int = 8 << 20,
                 applied: tuple[int, int, int] = (0, 0, 0)):
        """`applied`: the state machine's (applied index, term, the offset where it ends), to restart at an
        install the state machine committed but the hard state does not record yet."""
        self._log = log
        self._store = hard_states
        self._key = name
        state = hard_states.get(name)
        new = state is None  # a new group: written by its first sync
        state = state or {"term": 0, "vote": None, "snapshot_index": 0, "snapshot_term": 0, "snapshot_config": "",
                          "snapshot_offset": 0, "meta": []}
        super().__init__(state, hard_state_dirty=new, cache_bytes=cache_bytes)
        self.snapshot_offset: int = state.get("snapshot_offset", 0)
        self._meta: dict[int, Entry] = {i: Entry(t, base64.b64decode(d), k) for i, t, k, d in state.get("meta", [])}
        self._ends: list[int] = []  # offset where the entry at snapshot_index + 1 + i ends
        self._undurable: dict[int, int] = {}  # meta entries not known durable -> store sequence of their put (0: none)
        self._meta_unsynced = False  # meta entries added or removed since the store's last sync (see append)
        self._put_seq = 0
        self._durable_floor = self.snapshot_offset  # snapshot_offset as of the last durable put
        self._floor_seq = 0
        applied_index, applied_term, applied_end = applied
        staged = self._staged
        if staged is not None and staged["index"] == applied_index > self.snapshot_index:
            # The state machine committed a snapshot install whose hard state was not written: restart there.
            self._restart_at(applied_index, applied_term, staged["config"].encode(), applied_end)
        self._load()
        if hard_states.synced_seq < hard_states.put_seq:  # (reopened after a failed sync) not known durable
            self._undurable = {i: hard_states.put_seq for i in self._meta}
        self._cache_base = self.last_index + 1

    # -------------------------------------------------------------- RaftLog

    @property
    def synced_index(self) -> int:
        if canary.enabled("no-fsync"):
            return self.last_index
        index = self.snapshot_index + bisect.bisect_right(self._ends, self._log.flushed_offset)
        if self._undurable:
            synced = self._store.synced_seq
            for i in [i for i, seq in self._undurable.items() if 0 < seq <= synced]:
                del self._undurable[i]
            if self._undurable:
                index = min(index, min(self._undurable) - 1)
        return index

    def append(self, entries: list[Entry]) -> None:
        for entry in entries:
            index = self.last_index + 1
            end = self._ends[-1] if self._ends else self.snapshot_offset
            stored = False
            if is_data(entry):
                if self._meta_unsynced:
                    self._sync_meta()  # a meta entry (or its removal) is durable before any data after it
                try:
                    self._log.append_raw(memoryview(entry.data)[1:], partition_leader_epoch=min(entry.term, INT32_MAX),
                                         verify_records=False)
                    stored = True
                except CorruptBatchError:
                    pass  # not a valid batch (the leader refuses those): kept as a meta entry, applied as an error
                end = self._log.log_end_offset
            if not stored:
                self._meta[index] = entry
                self._undurable[index] = 0
                self._meta_unsynced = self._hard_state_dirty = True
            self._terms.append(entry.term)
            self._ends.append(end)
            self._cache.append(entry)
            self._cache_bytes += len(entry.data)
        self._trim_cache()

    def truncate_from(self, index: int) -> None:
        if not self._cuts_entries(index):
            return
        keep = index - self.snapshot_index - 1
        start = self._ends[keep - 1] if keep else self.snapshot_offset
        if start < self._log.log_end_offset:
            self._log.truncate(start)  # durable before it returns
        removed = [i for i in self._meta if i >= index]
        for i in removed:
            del self._meta[i]
            self._undurable.pop(i, None)
        if removed:
            self._meta_unsynced = self._hard_state_dirty = True
        self._forget_from(index)
        del self._ends[keep:]

    def reset(self, snapshot_index: int, snapshot_term: int, config: bytes) -> None:
        """The state machine installed a snapshot up to snapshot_index and rewrote the log: restart at its end."""
        self._restart_at(snapshot_index, snapshot_term, config, self._log.log_end_offset)
        self._write_hard_state()

    def use_log(self, log: PartitionLog) -> None:
        """The state machine replaced its log object (a snapshot install renamed the staged log into place);
        `reset` comes next."""
        self._log = log

    # --------------------------------------------------------- host duties

    def stage_hard_state(self) -> bool:
        """Put the hard state and meta entries into the store if they changed (durable with its next sync)."""
        if not self._hard_state_dirty:
            return False
        self._put()
        return True

    def begin_sync(self) -> Callable[[], None] | None:
        """The fsync of the log for everything appended so far (None: nothing to flush)."""
        if self._log.flushed_offset >= self._log.log_end_offset:
            return None

        log = self._log

        def job() -> None:
            if canary.enabled("no-fsync"):
                return
            try:
                log.flush()
            except LogClosedError:
                if log is self._log:
                    raise
                # a snapshot install renamed another log into place meanwhile: what this one held is replaced
        return job

    def compact(self, upto: int) -> None:
        """Forget the mapping up to `upto` (the state machine holds it); durable with the store's next sync."""
        upto = min(upto, self.synced_index)
        if upto <= self.snapshot_index:
            return
        i = upto - self.snapshot_index - 1
        self.snapshot_config = self.config_at(upto)[1]
        self.snapshot_term, self.snapshot_offset = self._terms[i], self._ends[i]
        self.snapshot_index = upto
        self._forget_through(i + 1)
        del self._ends[:i + 1]
        for index in [index for index in self._meta if index <= upto]:
            del self._meta[index]
            self._undurable.pop(index, None)
        self._hard_state_dirty = True
        self._put()

    def compact_through(self, offset: int, max_index: int) -> None:
        """Compact up to the last entry (at most `max_index`) that ends at or below `offset`, durably: the state
        machine is about to delete the log below `offset` (retention, deleted records)."""
        limit = min(max_index, self.synced_index) - self.snapshot_index
        count = bisect.bisect_right(self._ends, offset, 0, max(0, limit))
        if count:
            self.compact(self.snapshot_index + count)
            self._store.sync()

    @property
    def raft_floor_offset(self) -> int:
        """Retention may delete the log below this offset only: the durable compaction point's."""
        if self._store.synced_seq >= self._floor_seq:
            self._durable_floor = self._pending_floor
        return self._durable_floor

    def size_bytes(self) -> int:
        return self._log.size_bytes

    def is_meta(self, index: int) -> bool:
        """Is the entry at `index` (above the compaction point) kept with the hard state, not in the log?"""
        return index in self._meta

    def data_range(self, index: int) -> tuple[int, int]:
        """(first, last) offset of the batch of the data entry at `index` (above the compaction point)."""
        i = index - self.snapshot_index - 1
        return (self._ends[i - 1] if i > 0 else self.snapshot_offset), self._ends[i] - 1

    def close(self) -> None:
        """Put a changed hard state into the store (the host syncs and closes it; the log is the state machine's)."""
        self.stage_hard_state()

    def remove_hard_state(self) -> None:
        self._store.remove(self._key)

    # -------------------------------------------------------------- private

    _pending_floor = 0

    def _put(self) -> None:
        self._put_seq = self._store.put(self._key, self._document())
        self._hard_state_dirty = False
        for i, seq in self._undurable.items():
            if seq == 0:
                self._undurable[i] = self._put_seq
        self._pending_floor, self._floor_seq = self.snapshot_offset, self._put_seq

    def _sync_meta(self) -> None:
        self._put()
        self._store.sync()
        self._meta_unsynced = False

    def _write_hard_state(self) -> None:
        self._put()
        self._store.sync()

    def _document(self) -> dict:
        return self._hard_state_document(
            snapshot_offset=self.snapshot_offset,
            meta=[[i, e.term, e.kind, base64.b64encode(e.data).decode()] for i, e in sorted(self._meta.items())])

    def _config_entries(self) -> Mapping[int, bytes]:
        return {i: e.data for i, e in self._meta.items() if e.kind == ENTRY_CONFIG}

    def _restart_at(self, index: int, term: int, config: bytes, offset: int) -> None:
        self.snapshot_index, self.snapshot_term, self.snapshot_config, self.snapshot_offset = index, term, config, offset
        self._staged = None
        self._meta = {}
        self._undurable = {}
        self._forget_all()
        self._ends = []
        if offset < self._log.log_end_offset:
            self._log.truncate(offset)
        self._hard_state_dirty = True

    def _load(self) -> None:
        """Merge the log's batches after snapshot_offset with the meta entries, by index (module docstring)."""
        log = self._log
        if log.log_start_offset > self.snapshot_offset:
            raise JournalError(f"{log.directory}: the log starts at offset {log.log_start_offset}, beyond the "
                               f"compaction point's {self.snapshot_offset}: entries in between are missing")
        if log.log_end_offset < self.snapshot_offset:
            raise JournalError(f"{log.directory}: the log ends at offset {log.log_end_offset}, below the "
                               f"compaction point's {self.snapshot_offset}: committed entries are missing")
        batches = _headers(log, self.snapshot_offset)
        batch = next(batches, None)
        index, end = self.snapshot_index, self.snapshot_offset
        while True:
            meta = self._meta.get(index + 1)
            if meta is not None:
                self._terms.append(meta.term)
            elif batch is not None and batch.base_offset == end:
                self._terms.append(batch.partition_leader_epoch)
                end = batch.next_offset
                batch = next(batches, None)
            else:
                break
            self._ends.append(end)
            index += 1
        beyond = [i for i in self._meta if i > index]
        for i in beyond:
            del self._meta[i]
        if beyond:
            self._hard_state_dirty = True
        if end < log.log_end_offset:
            log.truncate(end)  # batches no index could be given to: appended, never acknowledged
        self._pending_floor = self._durable_floor = self.snapshot_offset

    def _read_disk(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries lo..hi-1 (at least one), data entries read from the log."""
        out: list[Entry] = []
        start = self._ends[lo - self.snapshot_index - 2] if lo - self.snapshot_index - 2 >= 0 else self.snapshot_offset
        stop = self._ends[hi - self.snapshot_index - 2]
        batches = iter(())
        size = 0
        for index in range(lo, hi):
            meta = self._meta.get(index)
            if meta is not None:
                out.append(meta)
                continue
            batch = next(batches, None)
            if batch is None:
                if out and size >= max_bytes:
                    break
                data = self._log.read(start, max(max_bytes - size, 1), max_offset=stop).data
                batches = (bytes(b) for _, b in iter_batches(data))
                batch = next(batches)
            entry = Entry(self._terms[index - self.snapshot_index - 1], PRODUCE_TAG + batch)
            out.append(entry)
            size += len(entry.data)
            start = self._ends[index - self.snapshot_index - 1]
        return out


def _headers(log: PartitionLog, offset: int):
    """Batch headers of the log from `offset` (a batch boundary) to its end."""
    end = log.log_end_offset
    while offset < end:
        data = log.read(offset, _READ_CHUNK).data
        if not data:
            return
        for header, _ in iter_batches(data):
            if header.base_offset >= offset:
                yield header
            offset = header.next_offset
