"""Hypothesis state machine: what both Raft journals keep in memory (`journal_base`) against a list model.

The same rules run on a `Journal` and on a `PartitionJournal`, each with a cache of a few hundred
bytes so that reads straddle the cache and the disk: appends of data, no-op and configuration
entries, syncs, truncations, compactions, snapshot resets, hard-state changes and reopening.
After every step the journal answers `last_index`, `term_at` around and across the whole log,
`entries` (the longest prefix within max_bytes, never empty) and `config_at` as the model does,
and its entry cache holds exactly the newest entries, within its byte limit unless it holds just one.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from raftka.raft.hardstate import HardStateStore
from raftka.raft.journal import Journal
from raftka.raft.journal_base import JournalError
from raftka.raft.messages import ENTRY_CONFIG, Entry
from raftka.raft.partition_journal import PartitionJournal
from raftka.storage import LogConfig, PartitionLog

from partition_helpers import produce, same_entry

CACHE_BYTES = st.integers(0, 600)
KINDS = st.lists(st.sampled_from(["data", "noop", "config"]), min_size=1, max_size=6)


class JournalModel(RuleBasedStateMachine):
    """The model: the compaction point (index, term, membership), the entries above it, the hard state.
    A subclass opens, closes and syncs its kind of journal (`open`, `close`, `sync`)."""

    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="raftka-journal-base-")
        self.journal = None
        self.cache_bytes = 0
        self.snapshot = (0, 0, b"")
        self.log: list[Entry] = []  # entries snapshot index + 1 ..
        self.term = 1
        self.hard_state = (0, None)
        self.counter = 0

    def teardown(self):
        if self.journal is not None:
            self.close()
        shutil.rmtree(self.tmp)

    @property
    def last(self) -> int:
        return self.snapshot[0] + len(self.log)

    def _entry(self, kind: str) -> Entry:
        self.counter += 1
        if kind == "config":
            return Entry(self.term, b'{"voters":[%d],"learners":[]}' % self.counter, ENTRY_CONFIG)
        if kind == "noop":
            return Entry(self.term, b"")
        return Entry(self.term, produce([b"%d|" % self.counter + b"v" * (self.counter * 53 % 150)]))

    @initialize(cache_bytes=CACHE_BYTES)
    def start(self, cache_bytes):
        self.cache_bytes = cache_bytes
        self.journal = self.open()

    @rule(kinds=KINDS, new_term=st.booleans())
    def append(self, kinds, new_term):
        self.term += new_term
        entries = [self._entry(kind) for kind in kinds]
        self.journal.append(entries)
        self.log += entries
        assert self.journal._cache[-1] is entries[-1]  # the newest entry is always cached, whatever the limit

    @rule()
    def sync_all(self):
        self.sync()
        assert self.journal.synced_index == self.last

    @rule(data=st.data())
    @precondition(lambda self: self.log)
    def truncate(self, data):
        index = data.draw(st.integers(self.snapshot[0] + 1, self.last + 1), label="from")
        self.journal.truncate_from(index)
        del self.log[index - self.snapshot[0] - 1:]
        self.term += 1  # a new leader's entries replace the cut ones

    @rule(data=st.data())
    def truncating_a_compacted_entry_is_refused(self, data):
        index = data.draw(st.integers(0, self.snapshot[0]), label="from")
        try:
            self.journal.truncate_from(index)
        except JournalError:
            return
        raise AssertionError(f"truncate_from({index}) at compaction point {self.snapshot[0]} was accepted")

    @rule(data=st.data())
    @precondition(lambda self: self.log)
    def compact(self, data):
        upto = data.draw(st.integers(self.snapshot[0] + 1, self.last), label="upto")
        self.sync()
        self.journal.compact(upto)
        drop = upto - self.snapshot[0]
        self.snapshot = (upto, self.log[drop - 1].term, self._config_at(upto)[1])
        del self.log[:drop]

    @rule(gap=st.integers(0, 3))
    def reset(self, gap):
        self.term += 1
        self.counter += 1
        config = b'{"voters":[%d],"learners":[]}' % self.counter
        self.snapshot = (self.last + gap, self.term, config)
        self.log = []
        self.journal.reset(*self.snapshot)

    @rule(vote=st.sampled_from([None, 1, 2]))
    def vote_in_a_new_term(self, vote):
        self.term += 1
        self.hard_state = (self.term, vote)
        self.journal.set_hard_state(*self.hard_state)

    @rule()
    def reopen(self):
        self.sync()
        self.close()
        self.journal = self.open()
        assert (self.journal.term, self.journal.vote) == self.hard_state

    @rule(data=st.data())
    def read(self, data):
        lo = data.draw(st.integers(max(0, self.snapshot[0] - 1), self.last + 1), label="lo")
        hi = data.draw(st.integers(lo, self.last + 2), label="hi")
        first = max(lo, self.snapshot[0] + 1)
        wanted = self.log[first - self.snapshot[0] - 1:max(0, min(hi, self.last + 1) - self.snapshot[0] - 1)]
        filled = [n for n in itertools.accumulate(len(e.data) for e in wanted) if n > 0]  # a prefix fills it exactly
        max_bytes = data.draw(st.integers(1, 800) | st.sampled_from(filled or [1]), label="max_bytes")
        got = self.journal.entries(lo, hi, max_bytes)
        size, fits = 0, 0
        for entry in wanted:
            if fits and size + len(entry.data) > max_bytes:
                break
            size += len(entry.data)
            fits += 1
        assert len(got) == fits, (lo, hi, max_bytes, len(got), fits)
        assert all(same_entry(a, b) for a, b in zip(got, wanted))
        at = data.draw(st.integers(max(0, self.snapshot[0] - 1), self.last + 1), label="config_at")
        assert self.journal.config_at(at) == self._config_at(at)

    # ---- invariants -----------------------------------------------------------------------

    @invariant()
    def terms_match(self):
        j = self.journal
        index, term, config = self.snapshot
        assert (j.last_index, j.snapshot_index, j.snapshot_term, j.snapshot_config) == (self.last, index, term, config)
        got = [j.term_at(i) for i in range(max(0, index - 2), self.last + 3)]
        wanted = [None] * (index - max(0, index - 2)) + [term] + [e.term for e in self.log] + [None, None]
        assert got == wanted

    @invariant()
    def the_cache_holds_the_newest_entries_within_its_limit(self):
        j = self.journal
        cache = j._cache
        assert j._cache_base + len(cache) == self.last + 1
        assert j._cache_base >= self.snapshot[0] + 1
        assert j._cache_bytes == sum(len(e.data) for e in cache)
        assert j._cache_bytes <= self.cache_bytes or len(cache) == 1
        assert all(same_entry(a, b) for a, b in zip(cache, self.log[len(self.log) - len(cache):]))

    @invariant()
    def the_whole_log_reads_back(self):
        got = self.journal.entries(0, self.last + 1, 1 << 30)
        assert len(got) == len(self.log)
        assert all(same_entry(a, b) for a, b in zip(got, self.log))
        assert self.journal.config_at(self.last) == self._config_at(self.last)

    def _config_at(self, index: int) -> tuple[int, bytes]:
        for i in range(min(index, self.last), self.snapshot[0], -1):
            entry = self.log[i - self.snapshot[0] - 1]
            if entry.kind == ENTRY_CONFIG:
                return i, entry.data
        return self.snapshot[0], self.snapshot[2]


class OwnJournal(JournalModel):
    """`Journal`: a group's own log of one-record batches and its own hard state store."""

    def open(self):
        return Journal(os.path.join(self.tmp, "j"), segment_bytes=2048, cache_bytes=self.cache_bytes)

    def close(self) -> None:
        self.journal.close()

    def sync(self) -> None:
        self.journal.sync()


class PartitionLogJournal(JournalModel):
    """`PartitionJournal`: data entries in the partition log, the rest with the hard state."""

    def open(self):
        self.log_files = PartitionLog.open(os.path.join(self.tmp, "log"), LogConfig(segment_bytes=2048), lock=False)
        self.store = HardStateStore(os.path.join(self.tmp, "raft"))
        return PartitionJournal(self.log_files, self.store, "g", cache_bytes=self.cache_bytes)

    def close(self) -> None:
        self.journal.close()
        self.store.sync()
        self.log_files.close()
        self.store.close()

    def sync(self) -> None:
        self.journal.stage_hard_state()
        self.store.sync()
        job = self.journal.begin_sync()
        if job is not None:
            job()


SETTINGS = settings(max_examples=60, stateful_step_count=30, deadline=None)
OwnJournal.TestCase.settings = SETTINGS
PartitionLogJournal.TestCase.settings = SETTINGS
test_the_journal_matches_the_model = OwnJournal.TestCase
test_the_partition_journal_matches_the_model = PartitionLogJournal.TestCase
