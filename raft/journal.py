"""The durable Raft log of one group: entries after the last compaction, and hard state.

Entries live in a `raftka.storage.PartitionLog` of their own (directory
`journal/`): Raft index i is stored at offset i-1 as a one-record batch whose
partitionLeaderEpoch is the entry's term, so recovery, checksums, torn-tail
truncation and segment deletion are the storage engine's, not a second copy.
Hard state (term, vote, compaction point and the group membership in effect
there) lives in a `HardStateStore` (`hardstate`): the host's store, shared by
every group of the broker and fsynced once per round, or a journal's own in its
directory.  A journal from before the store still has its ``hardstate.json``:
it is read once and carried over.
Configuration entries are marked by producer id 1 in their batch header, so
opening the journal finds them from batch headers alone; they are few, and
kept in memory for `config_at`.  Before a snapshot install commits in the
state machine, `stage_snapshot` records the snapshot's membership in the hard
state, so a crash between the two still restarts with the right membership.

Writes are buffered: `sync()` is the group commit — one fsync for everything
appended since the last one, after the hard state if it changed.  The host
calls it before sending any message of the group (with a shared store:
`stage_hard_state` puts the hard state there, and the host syncs the store once for
the round before flushing the journals), so a follower acknowledges only
durable entries and a node votes only after its vote is durable.  Compaction
and snapshot resets write the hard state first, so a crash in between leaves
at worst extra entries below the compaction point, never a hole.

What it keeps in memory (terms, the entry cache, the hard state as set) is
`journal_base`'s, shared with the partition journal.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import orjson

from raftka.storage import LogConfig, PartitionLog, Record, iter_batches, iter_records

from . import canary
from .hardstate import HardStateStore
from .journal_base import JournalBase, JournalError
from .messages import ENTRY_CONFIG, ENTRY_NORMAL, Entry

LEGACY_HARD_STATE_FILE = "hardstate.json"  # before the HardStateStore
JOURNAL_DIR = "journal"
MAX_ENTRY_BYTES = 64 << 20
CONFIG_ENTRY_MARK = 1  # producer id of a configuration entry's batch (normal entries: -1)


class Journal(JournalBase):
    def __init__(self, directory: str, *, segment_bytes: int = 64 << 20, cache_bytes: int = 8 << 20,
                 hard_states: HardStateStore | None = None, name: str | None = None, lock: bool = True):
        """`hard_states`: the host's shared store (the host syncs it), with the group's `name` as its key;
        without one the journal keeps its own store in `directory` and syncs it itself. lock=False: the
        caller guarantees nothing else opens the directory (the host locks its data directory)."""
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._own_store = hard_states is None
        self._hard_states = HardStateStore(directory) if hard_states is None else hard_states
        self._key = name or ""
        self._log = PartitionLog.open(
            os.path.join(directory, JOURNAL_DIR),
            LogConfig(segment_bytes=segment_bytes, max_message_bytes=MAX_ENTRY_BYTES + 1024, retention_ms=-1),
            lock=lock,
        )
        try:
            state, dirty = self._read_hard_state()
        except BaseException:
            self.close_files()
            raise
        super().__init__(state, hard_state_dirty=dirty, cache_bytes=cache_bytes)
        start = self._log.log_start_offset
        if start > self.snapshot_index:
            self.close_files()
            raise JournalError(f"{directory}: journal starts at index {start + 1} but the hard state's compaction "
                               f"point is {self.snapshot_index}: entries in between are missing")
        self._configs: dict[int, bytes] = {}  # index -> data of each configuration entry above snapshot_index
        self._load_terms()
        self._cache_base = self.last_index + 1

    @staticmethod
    def stored_term(hard_states: HardStateStore, name: str, directory: str) -> int:
        """The term a group's hard state holds (0 if it has none), without opening its journal."""
        state = hard_states.get(name)
        if state is None:
            try:
                with open(os.path.join(directory, LEGACY_HARD_STATE_FILE), "rb") as f:
                    state = orjson.loads(f.read())
            except (FileNotFoundError, NotADirectoryError):
                return 0
            except orjson.JSONDecodeError as exc:
                raise JournalError(f"{directory}/{LEGACY_HARD_STATE_FILE} is corrupt: {exc}") from None
        return int(state["term"])

    # -------------------------------------------------------------- RaftLog

    @property
    def synced_index(self) -> int:
        if canary.enabled("no-fsync"):
            return self.last_index
        return min(self._log.flushed_offset, self.last_index)

    def append(self, entries: list[Entry]) -> None:
        for entry in entries:
            if len(entry.data) > MAX_ENTRY_BYTES:
                raise ValueError(f"raft entry of {len(entry.data)} bytes exceeds {MAX_ENTRY_BYTES}")
            config = entry.kind == ENTRY_CONFIG
            self._log.append([Record(None, entry.data, (), 0)], partition_leader_epoch=entry.term, timestamp_ms=0,
                             producer_id=CONFIG_ENTRY_MARK if config else -1)
            self._terms.append(entry.term)
            if config:
                self._configs[self.last_index] = entry.data
            self._cache.append(entry)
            self._cache_bytes += len(entry.data)
        self._trim_cache()

    def truncate_from(self, index: int) -> None:
        if not self._cuts_entries(index):
            return
        self._log.truncate(index - 1)
        self._forget_from(index)
        for config_index in [i for i in self._configs if i >= index]:
            del self._configs[config_index]

    def reset(self, snapshot_index: int, snapshot_term: int, config: bytes) -> None:
        """Discard every entry: the state machine now holds everything up to snapshot_index."""
        self._move_compaction_point(snapshot_index, snapshot_term, config, unstage=True)
        self._log.reset(snapshot_index)
        self._forget_all()
        self._configs = {}

    # --------------------------------------------------------- host duties

    @property
    def dirty(self) -> bool:
        return self._hard_state_dirty or self._log.flushed_offset < self._log.log_end_offset

    def sync(self) -> None:
        """Group commit: make the hard state and every appended entry durable."""
        self.stage_hard_state()
        if self._hard_states.pending:
            self._hard_states.sync()
        job = self.begin_sync()
        if job is not None:
            job()

    def stage_hard_state(self) -> bool:
        """Put a changed hard state into the store (durable with the store's next sync); True if there was one.

        With the host's shared store the host syncs it once for every group, before their journals."""
        if not self._hard_state_dirty:
            return False
        self._hard_states.put(self._key, self._hard_state_document())
        self._hard_state_dirty = False
        return True

    def begin_sync(self) -> Callable[[], None] | None:
        """The fsync work for everything appended so far, to run in a worker thread (None: nothing to do).

        Appends may continue meanwhile (they are not covered: `synced_index`
        says what is).  A journal with its own store stages its hard state and
        syncs the store in the job, before the entries; with a shared store the
        caller stages and syncs it (`stage_hard_state`) before running the job.
        """
        store = None
        if self._own_store and self.stage_hard_state():
            store = self._hard_states
        if store is None and self._log.flushed_offset >= self._log.log_end_offset:
            return None

        def job() -> None:
            if store is not None:  # first: a term is never older than the entries flushed with it
                store.sync()
            if not canary.enabled("no-fsync"):
                self._log.flush()
        return job

    def compact(self, upto: int) -> None:
        """Forget entries up to `upto` (the state machine holds them durably)."""
        upto = min(upto, self.synced_index)
        if upto <= self.snapshot_index:
            return
        term = self.term_at(upto)
        drop = upto - self.snapshot_index
        self._move_compaction_point(upto, term, self.config_at(upto)[1])
        self._forget_through(drop)
        for config_index in [i for i in self._configs if i <= upto]:
            del self._configs[config_index]
        self._log.advance_start_offset(upto)

    def size_bytes(self) -> int:
        return self._log.size_bytes

    def close(self) -> None:
        """Sync and release the files (released even when the sync fails, which is then raised)."""
        try:
            self.sync()
        finally:
            self.close_files()

    def close_files(self) -> None:
        """Release the files without syncing."""
        try:
            self._log.close()
        finally:
            if self._own_store:
                self._hard_states.close()

    def remove_hard_state(self) -> None:
        """The replica is deleted: drop its hard state from the store (durable with the store's next sync)."""
        self._hard_states.remove(self._key)

    # -------------------------------------------------------------- private

    def _read_hard_state(self) -> tuple[dict, bool]:
        """(hard state, whether the store lacks it and the next sync must write it)."""
        state = self._hard_states.get(self._key)
        if state is not None:
            return state, False
        legacy = os.path.join(self.directory, LEGACY_HARD_STATE_FILE)
        try:
            with open(legacy, "rb") as f:
                return orjson.loads(f.read()), True
        except FileNotFoundError:
            pass
        except orjson.JSONDecodeError as exc:
            raise JournalError(f"{legacy} is corrupt: {exc}") from None
        if self._log.log_end_offset > 0:
            raise JournalError(f"{self.directory}: journal entries exist but the group has no hard state")
        # A new journal: its hard state is written by the first sync, before any entry is flushed.
        return {"term": 0, "vote": None, "snapshot_index": 0, "snapshot_term": 0, "snapshot_config": ""}, True

    def _config_entries(self) -> dict[int, bytes]:
        return self._configs

    def _write_hard_state(self) -> None:
        """Make the hard state durable now (one fsync of the store, for whatever else it holds too)."""
        self._hard_states.put(self._key, self._hard_state_document())
        self._hard_state_dirty = False
        self._hard_states.sync()

    def _move_compaction_point(self, index: int, term: int, config: bytes, unstage: bool = False) -> None:
        """Record a new compaction point durably; if that fails (disk full) nothing changes."""
        old = self.snapshot_index, self.snapshot_term, self.snapshot_config, self._staged
        self.snapshot_index, self.snapshot_term, self.snapshot_config = index, term, config
        if unstage:
            self._staged = None
        try:
            self._write_hard_state()
        except BaseException:
            self.snapshot_index, self.snapshot_term, self.snapshot_config, self._staged = old
            raise

    def _load_terms(self) -> None:
        offset = self.snapshot_index  # offset of index snapshot_index + 1
        end = self._log.log_end_offset
        while offset < end:
            data = self._log.read(offset, 8 << 20).data
            if not data:
                break
            for header, _ in iter_batches(data):
                if header.base_offset >= offset:
                    self._terms.append(header.partition_leader_epoch)
                    if header.producer_id == CONFIG_ENTRY_MARK:
                        self._configs[header.base_offset + 1] = b""
                offset = header.next_offset
        if self.snapshot_index + len(self._terms) != end:
            raise JournalError(f"{self.directory}: journal index is not dense up to {end}")
        for index in self._configs:
            self._configs[index] = self._read_disk(index, index + 1, 1)[0].data

    def _read_disk(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        out: list[Entry] = []
        data = self._log.read(lo - 1, max(max_bytes, 1), max_offset=hi - 1).data
        for record in iter_records(data, start_offset=lo - 1):
            index = record.offset + 1
            out.append(Entry(self.term_at(index), record.value or b"",
                             ENTRY_CONFIG if index in self._configs else ENTRY_NORMAL))
        return out
