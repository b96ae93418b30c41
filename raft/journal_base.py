"""What both Raft journals keep alike in memory, whatever each stores on disk.

`journal.Journal` (a group's own log of one-record batches) and
`partition_journal.PartitionJournal` (the partition's log is the Raft log) store entries
and hard state differently.  `JournalBase` is the part of `core.RaftLog` they share, and it
does no I/O:

* the hard state as last set: term and vote, the compaction point (`snapshot_index`,
  `snapshot_term`, `snapshot_config`: the membership there) and a staged snapshot install,
  and the document both store it as (`_hard_state_document`);
* the term of every index above the compaction point (`_terms`: `term_at`, `last_index`);
* a cache of the newest entries, trimmed to `cache_bytes` of data but never below the newest
  entry, which serves `entries` without reading the disk in the common case.

A subclass appends to its storage, to `_terms` and to the cache in its own loop (one entry at
a time is the hot path, so no call per entry here), calls `_trim_cache` after, and tells the
base when entries go (`_forget_from`, `_forget_through`, `_forget_all`).  It supplies
`_read_disk` (entries below the cache), `_config_entries` (the configuration entries above the
compaction point) and `_write_hard_state` (store the hard state durably, now).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from .messages import Entry


class JournalError(Exception):
    """The journal on disk is inconsistent in a way recovery must not paper over."""


class JournalBase(ABC):
    def __init__(self, state: dict, *, hard_state_dirty: bool, cache_bytes: int):
        """`state`: the stored hard state; `hard_state_dirty`: the store lacks it and the next sync must write it.
        The subclass loads the terms above the compaction point, then starts the cache after them."""
        self.term: int = state["term"]
        self.vote: int | None = state["vote"]
        self.snapshot_index: int = state["snapshot_index"]
        self.snapshot_term: int = state["snapshot_term"]
        self.snapshot_config: bytes = state.get("snapshot_config", "").encode()
        self._staged: dict | None = state.get("staged")
        self._hard_state_dirty = hard_state_dirty
        self._terms: list[int] = []  # term of index snapshot_index + 1 + i
        self._cache: list[Entry] = []  # entries _cache_base .. last_index
        self._cache_base = self.snapshot_index + 1
        self._cache_bytes = 0
        self._cache_limit = cache_bytes

    # -------------------------------------------------------------- RaftLog

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self._terms)

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot_index:
            return self.snapshot_term
        i = index - self.snapshot_index - 1
        if 0 <= i < len(self._terms):
            return self._terms[i]
        return None

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        lo = max(lo, self.snapshot_index + 1)
        hi = min(hi, self.last_index + 1)
        out: list[Entry] = []
        size = 0
        index = lo
        while index < hi:
            if index >= self._cache_base:
                chunk = self._cache[index - self._cache_base:hi - self._cache_base]
            else:
                chunk = self._read_disk(index, min(hi, self._cache_base), max_bytes - size)
            if not chunk:
                break
            for entry in chunk:
                if out and size + len(entry.data) > max_bytes:
                    return out
                out.append(entry)
                size += len(entry.data)
            index += len(chunk)
        return out

    def set_hard_state(self, term: int, vote: int | None) -> None:
        if (term, vote) != (self.term, self.vote):
            self.term, self.vote = term, vote
            self._hard_state_dirty = True

    def config_at(self, index: int) -> tuple[int, bytes]:
        """(index, data) of the newest configuration entry at or below `index`, else the compaction point's."""
        configs = self._config_entries()
        found = max((i for i in configs if i <= index), default=None)
        if found is None:
            return self.snapshot_index, self.snapshot_config
        return found, configs[found]

    def bootstrap_config(self, config: bytes) -> None:
        """The first membership of a new group (synced with the hard state, before any message leaves)."""
        self.snapshot_config = config
        self._hard_state_dirty = True

    def stage_snapshot(self, index: int, term: int, config: bytes) -> None:
        self._staged = {"index": index, "term": term, "config": config.decode()}
        self._write_hard_state()

    def staged_config(self, index: int) -> bytes:
        staged = self._staged
        return staged["config"].encode() if staged is not None and staged["index"] == index else b""

    # ------------------------------------------------------ for subclasses

    @abstractmethod
    def _read_disk(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries lo..hi-1 from storage (at least one; more while they fit in max_bytes)."""

    @abstractmethod
    def _config_entries(self) -> Mapping[int, bytes]:
        """index -> data of each configuration entry above the compaction point."""

    @abstractmethod
    def _write_hard_state(self) -> None:
        """Make the hard state durable now."""

    def _cuts_entries(self, index: int) -> bool:
        """Whether truncating from `index` drops any entry (JournalError if it would cut a compacted one)."""
        if index <= self.snapshot_index:
            raise JournalError(f"cannot truncate at {index}: entries up to {self.snapshot_index} are compacted")
        return index <= self.last_index

    def _forget_from(self, index: int) -> None:
        """Drop the terms and cached entries from `index` (above the compaction point) on."""
        del self._terms[index - self.snapshot_index - 1:]
        if index < self._cache_base:
            self._cache, self._cache_base, self._cache_bytes = [], index, 0
        else:
            dropped = self._cache[index - self._cache_base:]
            del self._cache[index - self._cache_base:]
            self._cache_bytes -= sum(len(e.data) for e in dropped)

    def _forget_through(self, count: int) -> None:
        """The compaction point moved up by `count` entries (to snapshot_index): drop their terms and cache."""
        del self._terms[:count]
        upto = self.snapshot_index
        if self._cache_base <= upto:
            cut = upto - self._cache_base + 1
            self._cache_bytes -= sum(len(e.data) for e in self._cache[:cut])
            del self._cache[:cut]
            self._cache_base = upto + 1

    def _forget_all(self) -> None:
        """Drop every term and cached entry: the log restarts after snapshot_index."""
        self._terms = []
        self._cache, self._cache_base, self._cache_bytes = [], self.snapshot_index + 1, 0

    def _trim_cache(self) -> None:
        cut = 0
        while self._cache_bytes > self._cache_limit and cut < len(self._cache) - 1:
            self._cache_bytes -= len(self._cache[cut].data)
            cut += 1
        if cut:
            del self._cache[:cut]
            self._cache_base += cut

    def _hard_state_document(self, **extra) -> dict:
        """The hard state as stored: the fields above, the subclass's `extra` ones, then a staged install's."""
        document = {
            "term": self.term, "vote": self.vote,
            "snapshot_index": self.snapshot_index, "snapshot_term": self.snapshot_term,
            "snapshot_config": self.snapshot_config.decode(), **extra,
        }
        if self._staged is not None:
            document["staged"] = self._staged
        return document
