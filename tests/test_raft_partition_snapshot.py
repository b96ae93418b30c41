"""Snapshot stream between two partition state machines in two directories.

Leader with many batches (and one with a retention-deleted prefix); follower empty, behind, or
with an interrupted install. After the stream the follower's stored batches are byte-identical
to the leader's and its producer state deduplicates like the leader's. The last test runs the
stream through the real Raft core (raft.core.RaftNode + raft.journal.Journal).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import NamedTuple

import pytest

from raftka.raft.core import RaftConfig, RaftNode, Role
from raftka.raft.journal import Journal as RaftJournal
from raftka.raft.messages import decode_message, encode_message
from raftka.raft.partition import PartitionStateError, PartitionStateMachine
from raftka.raft.partition_snapshot import STAGING_DIR, SnapshotFormatError, decode_chunk, encode_cursor
from raftka.storage import LEDGER_ENV, LogConfig, OffsetOutOfRangeError
from raftka.storage.powerloss import apply_ledger

from partition_helpers import Journal, file_size_limit, produce, raw_log, stream, summary

CONFIG = LogConfig(segment_bytes=1024, index_interval_bytes=256, retention_ms=1000)
CHUNK = 700


def open_sm(path, config=CONFIG) -> PartitionStateMachine:
    return PartitionStateMachine(str(path), config, snapshot_chunk_bytes=CHUNK)


def workload(count: int, seed: int = 0) -> tuple[Journal, dict[int, int]]:
    """Produce traffic from three idempotent producers and plain batches; returns (journal, next sequences)."""
    rng = random.Random(seed)
    j, seqs = Journal(), {1: 0, 2: 0, 3: 0}
    for n in range(count):
        if rng.random() < 0.1:
            j.add(b"", term=1 + n // 50)
            continue
        pid = rng.choice([-1, 1, 2, 3])
        values = [b"%d:%d:%d|" % (pid, n, k) + b"z" * rng.randrange(60) for k in range(rng.randint(1, 5))]
        if pid < 0:
            j.add(produce(values), term=1 + n // 50)
        else:
            j.add(produce(values, pid, 0, seqs[pid]), term=1 + n // 50)
            seqs[pid] += len(values)
    return j, seqs


def assert_same_state(leader: PartitionStateMachine, follower: PartitionStateMachine) -> None:
    assert (follower.applied_index, follower.applied_term) == (leader.applied_index, leader.applied_term)
    assert (follower.log_start_offset, follower.high_watermark) == (leader.log_start_offset, leader.high_watermark)
    assert raw_log(follower) == raw_log(leader)


def assert_same_dedup(leader, follower, seqs: dict[int, int], retries: list[tuple[int, int, bytes]]) -> None:
    """The same next entries (retries of old batches, new batches, a gap) give the same results on both."""
    nxt = leader.applied_index + 1
    commands = [data for _, _, data in retries]
    commands += [produce([b"new%d" % pid], pid, 0, seq) for pid, seq in seqs.items()]
    commands += [produce([b"gap"], 1, 0, seqs[1] + 5)]
    outcomes = []
    for i, data in enumerate(commands):
        a, b = leader.apply(nxt + i, 9, data), follower.apply(nxt + i, 9, data)
        assert summary(a) == summary(b)
        outcomes.append(a)
    assert all(r.duplicate for r in outcomes[:len(retries)])
    assert all(r.ok and not r.duplicate for r in outcomes[len(retries):-1])
    assert not outcomes[-1].ok
    assert raw_log(follower) == raw_log(leader)


def last_idempotent_entries(j: Journal, count: int) -> list[tuple[int, int, bytes]]:
    found = [e for e in j.entries if e[2] and int.from_bytes(e[2][1 + 43:1 + 51], "big", signed=True) >= 0]
    return found[-count:]


class History(NamedTuple):
    journal: Journal  # the entries the leader applied
    seqs: dict[int, int]  # next sequence of each producer


@pytest.fixture
def history() -> History:
    return History(*workload(150))


@pytest.fixture
def leader(tmp_path, history):
    sm = open_sm(tmp_path / "leader")
    history.journal.apply_all(sm)
    yield sm
    sm.close()


# ---- complete transfers -------------------------------------------------------------------------


def test_empty_follower_receives_a_byte_identical_log_and_the_producer_state(leader, history, tmp_path):
    follower = open_sm(tmp_path / "follower")
    ok, chunks = stream(leader, follower)
    assert ok and len(chunks) > 10
    assert_same_state(leader, follower)
    assert not os.path.exists(tmp_path / "follower" / STAGING_DIR)
    follower.close()
    follower = open_sm(tmp_path / "follower")  # the install was checkpointed
    assert_same_state(leader, follower)
    assert_same_dedup(leader, follower, history.seqs, last_idempotent_entries(history.journal, 3))
    follower.close()


@pytest.mark.parametrize("crash", ["before the rename", "after the rename"])
def test_an_install_into_an_empty_log_renames_the_staging_log_and_a_crash_midway_is_finished_on_reopen(
        leader, history, tmp_path, monkeypatch, crash):
    follower = open_sm(tmp_path / "follower")
    cursor, done = follower.begin_install(), False
    while not done:
        data, done, index = leader.read_chunk(cursor)
        cursor = follower.install_chunk(data)
    staged = sorted(os.listdir(tmp_path / "follower" / STAGING_DIR))
    real_rename, real_checkpoint = os.rename, follower._write_checkpoint

    def rename(src, dst):
        if crash == "before the rename" and str(src).endswith(STAGING_DIR):
            raise OSError("power cut")
        real_rename(src, dst)

    def checkpoint(**kwargs):
        if crash == "after the rename" and not kwargs:  # the final checkpoint, after the swap
            raise OSError("power cut")
        real_checkpoint(**kwargs)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(follower, "_write_checkpoint", checkpoint)
    with pytest.raises(OSError, match="power cut"):
        follower.finish_install(index, leader.applied_term)
    monkeypatch.undo()
    follower.log.close()
    follower._staging.close()
    follower = open_sm(tmp_path / "follower")
    assert not os.path.exists(tmp_path / "follower" / STAGING_DIR)
    assert sorted(os.listdir(tmp_path / "follower" / "log")) == staged  # moved, not copied
    assert_same_state(leader, follower)
    assert_same_dedup(leader, follower, history.seqs, last_idempotent_entries(history.journal, 2))
    follower.close()


def test_a_renamed_staging_log_survives_a_power_loss_right_after_the_install(leader, history, tmp_path, monkeypatch):
    ledger = tmp_path / "ledger"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    follower = open_sm(tmp_path / "follower")
    stream(leader, follower)
    follower.close()
    report = apply_ledger(ledger, tmp_path / "follower")  # cut every file back to what was fsynced
    assert not [p for p in report.truncated if "/log/" in p] and not [p for p in report.deleted if "/log/" in p]
    follower = open_sm(tmp_path / "follower")
    assert_same_state(leader, follower)
    follower.close()


def test_follower_behind_receives_only_the_missing_tail(leader, history, tmp_path):
    follower = open_sm(tmp_path / "follower")
    history.journal.apply_all(follower, stop=60)
    before, end_before = raw_log(follower), follower.high_watermark
    ok, chunks = stream(leader, follower)
    assert ok
    first = decode_chunk(chunks[0])
    assert (first.start, first.reset) == (end_before, False)
    assert sum(len(decode_chunk(c).batches) for c in chunks) == len(raw_log(leader)) - len(before)
    assert raw_log(follower).startswith(before)
    assert_same_state(leader, follower)
    assert_same_dedup(leader, follower, history.seqs, last_idempotent_entries(history.journal, 2))
    follower.close()


@pytest.mark.parametrize("follower_log", ["empty (renamed in)", "behind (copied)"])
def test_a_checkpoint_begun_before_an_install_and_written_after_it_does_not_undo_it(leader, history, tmp_path,
                                                                                   follower_log):
    """The host runs a checkpoint's fsyncs in a worker thread; a snapshot install may finish meanwhile."""
    follower = open_sm(tmp_path / "follower")
    if follower_log.startswith("empty"):
        follower.apply(1, 1, b"")  # a no-op: something to checkpoint, nothing in the log
    else:
        history.journal.apply_all(follower, stop=60)
    _, job = follower.begin_checkpoint()
    ok, _ = stream(leader, follower)
    assert ok
    job()  # the older checkpoint's job runs last
    follower.checkpoint_done()
    follower.close()
    follower = open_sm(tmp_path / "follower")
    assert_same_state(leader, follower)
    follower.close()


def test_follower_up_to_date_in_offsets_adopts_the_leaders_index(leader, history, tmp_path):
    follower = open_sm(tmp_path / "follower")
    history.journal.apply_all(follower)
    leader.apply(leader.applied_index + 1, 5, b"")  # a no-op: index moves, the log does not
    ok, chunks = stream(leader, follower)
    assert ok and len(chunks) == 1 and decode_chunk(chunks[0]).next_offset == follower.high_watermark
    assert_same_state(leader, follower)
    follower.close()


def test_leader_appending_during_the_stream_is_included_up_to_its_final_index(leader, tmp_path):
    follower = open_sm(tmp_path / "follower")
    extra = iter(range(10))

    def leader_applies_more():
        n = next(extra, None)
        if n is not None:
            leader.apply(leader.applied_index + 1, 7, produce([b"late%d" % n] * 3))

    ok, _ = stream(leader, follower, between_chunks=leader_applies_more)
    assert ok and next(extra, None) is None
    assert_same_state(leader, follower)
    follower.close()


# ---- retention ----------------------------------------------------------------------------------


def test_retention_only_deletes_checkpointed_segments(leader):
    end = leader.high_watermark
    assert leader.apply_retention(now=10**12) == 0  # nothing checkpointed yet
    leader.checkpoint()
    assert leader.apply_retention(now=10**12) > 0
    start = leader.log_start_offset
    assert 0 < start <= end
    with pytest.raises(OffsetOutOfRangeError, match=f"earliest {start}"):
        leader.log.read(start - 1)
    assert leader.apply_retention(now=500) == 0  # retention.ms not exceeded


@pytest.mark.parametrize("follower_entries", [0, 20, 140])
def test_follower_below_the_leaders_log_start_is_reset_to_it(leader, history, tmp_path, follower_entries):
    leader.checkpoint()
    leader.apply_retention(now=10**12)
    leader_start = leader.log_start_offset
    follower = open_sm(tmp_path / "follower")
    history.journal.apply_all(follower, stop=follower_entries)
    follower_end = follower.high_watermark
    ok, chunks = stream(leader, follower)
    assert ok
    first = decode_chunk(chunks[0])
    if follower_end < leader_start:
        assert (first.start, first.reset) == (leader_start, True)
        assert follower.log_start_offset == leader_start
    else:
        assert (first.start, first.reset) == (follower_end, False)
    assert raw_log(follower) == raw_log(leader)
    assert (follower.applied_index, follower.high_watermark) == (leader.applied_index, leader.high_watermark)
    follower.close()
    follower = open_sm(tmp_path / "follower")
    assert raw_log(follower) == raw_log(leader)
    assert_same_dedup(leader, follower, history.seqs, last_idempotent_entries(history.journal, 3))
    follower.close()


# ---- interrupted and refused installs -----------------------------------------------------------


@pytest.mark.parametrize("interruption", ["finish early", "reopen", "restart stream", "follower applies"])
def test_interrupted_install_leaves_the_live_log_untouched_and_a_new_install_succeeds(leader, history, tmp_path,
                                                                                     interruption):
    follower = open_sm(tmp_path / "follower")
    history.journal.apply_all(follower, stop=30)
    follower.checkpoint()
    before, applied = raw_log(follower), follower.applied_index
    ok, old_chunks = stream(leader, follower, stop_after=4)
    assert ok is None
    assert os.path.isdir(tmp_path / "follower" / STAGING_DIR)
    assert (raw_log(follower), follower.applied_index) == (before, applied)  # staged only
    if interruption == "finish early":
        assert follower.finish_install(leader.applied_index, leader.applied_term) is False
        assert not os.path.exists(tmp_path / "follower" / STAGING_DIR)
    elif interruption == "reopen":
        follower.close()
        follower = open_sm(tmp_path / "follower")
        assert not os.path.exists(tmp_path / "follower" / STAGING_DIR)
    elif interruption == "restart stream":
        follower.begin_install()
        assert not os.path.exists(tmp_path / "follower" / STAGING_DIR)
    else:
        while follower.high_watermark == decode_chunk(old_chunks[0]).start:  # the live log moves on
            history.journal.apply_all(follower, start=follower.applied_index + 1, stop=follower.applied_index + 1)
        cursor = follower.begin_install()
        assert follower.install_chunk(old_chunks[0]) == cursor  # it starts at the old log end: stale
        before, applied = raw_log(follower), follower.applied_index
    assert (raw_log(follower), follower.applied_index) == (before, applied)
    ok, _ = stream(leader, follower)
    assert ok
    assert_same_state(leader, follower)
    follower.close()


def test_finish_install_refuses_when_the_live_log_changed_while_staging(leader, history, tmp_path):
    follower = open_sm(tmp_path / "follower")
    history.journal.apply_all(follower, stop=30)
    end_before = follower.high_watermark

    def follower_applies():  # committed entries still in the follower's own journal get applied meanwhile
        if follower.high_watermark == end_before:
            history.journal.apply_all(follower, start=follower.applied_index + 1, stop=follower.applied_index + 1)

    ok, _ = stream(leader, follower, between_chunks=follower_applies)
    assert ok is False
    assert follower.high_watermark > end_before and not os.path.exists(tmp_path / "follower" / STAGING_DIR)
    assert stream(leader, follower)[0]
    assert_same_state(leader, follower)
    follower.close()


def test_finish_install_refuses_another_index_and_a_stale_one(leader, history, tmp_path):
    follower = open_sm(tmp_path / "follower")
    cursor = follower.begin_install()
    done = False
    while not done:
        data, done, index = leader.read_chunk(cursor)
        cursor = follower.install_chunk(data)
    assert follower.finish_install(index + 1, 1) is False
    assert (follower.applied_index, follower.high_watermark) == (0, 0)
    history.journal.apply_all(follower)
    ok, _ = stream(leader, follower)  # same index as already applied: nothing to install
    assert ok is False
    follower.close()


def test_stale_duplicate_out_of_order_and_malformed_chunks_are_ignored(leader, tmp_path):
    follower = open_sm(tmp_path / "follower")
    cursor0 = follower.begin_install()
    chunk0, _, _ = leader.read_chunk(cursor0)
    cursor1 = follower.install_chunk(chunk0)
    chunk1, _, _ = leader.read_chunk(cursor1)
    chunk2, _, _ = leader.read_chunk(encode_cursor(decode_chunk(chunk1).next_offset))
    torn = bytearray(chunk1)
    torn[-3] ^= 1
    for junk in (chunk0, chunk2, b"", b"\x00\x00", b"\x00\x00\x00\x05{}xyz", chunk1[:-10], bytes(torn),
                 b"\x00\x00\x00\x0b" + b'{"start":0}'):
        assert follower.install_chunk(junk) == cursor1
    cursor = follower.install_chunk(chunk1)
    done = False
    while not done:
        data, done, index = leader.read_chunk(cursor)
        cursor = follower.install_chunk(data)
        assert follower.install_chunk(data) == cursor  # a duplicate changes nothing
    assert follower.finish_install(index, leader.applied_term)
    assert_same_state(leader, follower)
    follower.close()


def test_a_duplicate_of_the_first_reset_chunk_does_not_restart_staging(leader, tmp_path):
    leader.checkpoint()
    leader.apply_retention(now=10**12)
    for n in range(30):
        leader.apply(leader.applied_index + 1, 4, produce([b"after retention %d" % n] * 4))
    follower = open_sm(tmp_path / "follower")
    first, _, _ = leader.read_chunk(follower.begin_install())
    assert decode_chunk(first).reset
    cursor = follower.install_chunk(first)
    second, _, _ = leader.read_chunk(cursor)
    cursor = follower.install_chunk(second)
    assert follower.install_chunk(first) == cursor
    done = False
    while not done:
        data, done, index = leader.read_chunk(cursor)
        cursor = follower.install_chunk(data)
    assert follower.finish_install(index, leader.applied_term)
    assert_same_state(leader, follower)
    follower.close()


def test_malformed_cursor_is_refused_and_a_cursor_inside_a_batch_restarts_at_the_log_start(tmp_path):
    sm = open_sm(tmp_path / "leader")
    sm.apply(1, 1, produce([b"a", b"b", b"c"]))
    sm.apply(2, 1, produce([b"d"]))
    for bad in (b"", b"[]", b'{"offset": -1}', b'{"offset": "3"}'):
        with pytest.raises(SnapshotFormatError):
            sm.read_chunk(bad)
    data, done, index = sm.read_chunk(encode_cursor(1))
    chunk = decode_chunk(data)
    assert (chunk.start, chunk.reset, chunk.next_offset, done, index) == (0, True, 4, True, 2)
    data, done, _ = sm.read_chunk(encode_cursor(9))  # beyond our log: nothing to send
    assert done and decode_chunk(data).next_offset == 9
    sm.close()


@pytest.mark.parametrize("reset", [False, True])
def test_crash_after_the_install_commit_point_is_finished_on_reopen(leader, history, tmp_path, reset):
    if reset:
        leader.checkpoint()
        leader.apply_retention(now=10**12)
        for n in range(40):
            leader.apply(leader.applied_index + 1, 4, produce([b"after retention %d" % n] * 4))
    big_segments = LogConfig()
    follower = open_sm(tmp_path / "follower", big_segments)
    history.journal.apply_all(follower, stop=10)
    kept = 0 if reset else follower.log.size_bytes  # a reset install starts the live log afresh
    assert len(raw_log(leader)) > kept + 3000
    cursor = follower.begin_install()
    done = False
    while not done:
        data, done, index = leader.read_chunk(cursor)
        cursor = follower.install_chunk(data)
    with file_size_limit(kept + 1500):  # the copy into the live log fails midway
        with pytest.raises(Exception, match="File too large"):
            follower.finish_install(index, leader.applied_term)
    with pytest.raises(PartitionStateError, match="stopped after an I/O failure"):
        follower.apply(follower.applied_index + 1, 1, b"")
    follower.close()
    follower = open_sm(tmp_path / "follower", big_segments)
    assert not os.path.exists(tmp_path / "follower" / STAGING_DIR)
    assert_same_state(leader, follower)
    assert_same_dedup(leader, follower, history.seqs, last_idempotent_entries(history.journal, 2))
    follower.close()


INSTALL_CHILD = r"""
import os, sys
from partition_helpers import file_size_limit, produce
from raftka.raft.partition import PartitionStateMachine
from raftka.storage import LogConfig
leader_dir, follower_dir, reset = sys.argv[1], sys.argv[2], sys.argv[3] == "reset"
leader = PartitionStateMachine(leader_dir, LogConfig(segment_bytes=4096, retention_ms=1000), snapshot_chunk_bytes=700)
follower = PartitionStateMachine(follower_dir, LogConfig(), snapshot_chunk_bytes=700)
entries, seq = [], 0
for i in range(1, 221):
    if i % 3:
        values = [b"%d|" % i + b"x" * (200 + i % 90)] * (1 + i % 4)
        entries.append((i, 1, produce(values, 1, 0, seq)))
        seq, last_idempotent = seq + len(values), i
    else:
        entries.append((i, 1, produce([b"plain %d" % i])))
sys.stdout.write("%d %d " % (last_idempotent, seq))
for e in entries[:120]:
    leader.apply(*e)
leader.checkpoint()
if reset:
    leader.apply_retention(now=10**12)
for e in entries[120:]:
    leader.apply(*e)
leader.checkpoint()
for e in entries[:20]:
    follower.apply(*e)
    if e[0] == 10:
        follower.checkpoint()  # entries 11..20 are applied but not fsynced
kept = 0 if reset else follower.log.size_bytes
# The limit must also let the fsync ledger (a file too) grow a little.
limit = max(kept + 1500, os.path.getsize(os.environ["RAFTKA_FSYNC_LEDGER"]) + 4000)
assert limit < kept + 20000 < leader.log.size_bytes, (limit, kept, leader.log.size_bytes)
cursor, done = follower.begin_install(), False
while not done:
    data, done, index = leader.read_chunk(cursor)
    cursor = follower.install_chunk(data)
try:
    with file_size_limit(limit):
        follower.finish_install(index, 1)
except Exception as exc:
    sys.stdout.write(repr(exc))
os._exit(0)  # power loss: nothing more reaches the disk
"""


@pytest.mark.parametrize("mode", ["extend", "reset"])
def test_power_loss_during_an_install_after_its_commit_point_is_finished_on_reopen(tmp_path, mode):
    leader_dir, follower_dir, ledger = tmp_path / "leader", tmp_path / "follower", tmp_path / "ledger"
    env = dict(os.environ, **{LEDGER_ENV: str(ledger)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(__file__), env.get("PYTHONPATH")]))
    child = subprocess.run([sys.executable, "-c", INSTALL_CHILD, str(leader_dir), str(follower_dir), mode],
                           env=env, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert "File too large" in child.stdout
    report = apply_ledger(ledger, follower_dir)
    assert report.truncated or report.deleted
    leader = open_sm(leader_dir, LogConfig(segment_bytes=4096, retention_ms=1000))
    follower = open_sm(follower_dir, LogConfig())
    assert not os.path.exists(follower_dir / STAGING_DIR)
    assert_same_state(leader, follower)
    assert (follower.log_start_offset > 0) is (mode == "reset")
    last_idempotent, next_seq = map(int, child.stdout.split()[:2])
    retry = produce([b"again"] * (1 + last_idempotent % 4), 1, 0, next_seq - 1 - last_idempotent % 4)
    for sm in (leader, follower):
        assert sm.apply(221, 1, retry).duplicate
        assert sm.apply(222, 1, produce([b"next"], 1, 0, next_seq)).ok
    assert raw_log(follower) == raw_log(leader)
    leader.close()
    follower.close()


# ---- through the Raft core ------------------------------------------------------------------------


class Replica:
    """One member of a Raft group: RaftNode + on-disk journal + partition state machine (the host's duties)."""

    def __init__(self, node_id: int, peers: list[int], directory):
        self.sm = open_sm(directory / "partition")
        self.journal = RaftJournal(str(directory / "raft"))
        self.node = RaftNode("t/0", node_id, peers, self.journal, RaftConfig(election_ticks=10, heartbeat_ticks=2),
                             applied=self.sm.applied_index, applied_term=self.sm.applied_term,
                             snapshotter=self.sm, rng=random.Random(node_id))
        self.results = {}

    def pump(self):
        messages = self.node.take_messages()
        if self.journal.dirty:
            self.journal.sync()
        self.node.persisted()
        for index, entry in self.node.take_committed(self.journal.synced_index):
            self.results[index] = summary(self.sm.apply(index, entry.term, entry.data))
        return messages

    def close(self):
        self.sm.close()
        self.journal.close()


def test_a_lagging_replica_catches_up_through_the_raft_core_snapshot_stream(tmp_path):
    replicas = {i: Replica(i, [1, 2, 3], tmp_path / f"r{i}") for i in (1, 2, 3)}
    online = {1, 2}

    def run(rounds):
        for _ in range(rounds):
            for r in replicas.values():
                r.node.tick()
            pending = [m for r in replicas.values() for m in r.pump()]
            while pending:
                m = decode_message(encode_message(pending.pop(0)))
                if m.src in online and m.dst in online:
                    replicas[m.dst].node.step(m)
                    pending += replicas[m.dst].pump()

    replicas[1].node.campaign()
    run(5)
    leader = replicas[1]
    assert leader.node.role is Role.LEADER
    j, seqs = workload(120, seed=5)
    for _, _, data in j.entries:
        if data:
            leader.node.propose(data)
    run(5)
    assert replicas[2].sm.applied_index == leader.sm.applied_index > 100
    durable = leader.sm.checkpoint()
    leader.journal.compact(durable)  # replica 3 needs entries that are now gone
    online.add(3)
    run(60)
    follower = replicas[3]
    assert follower.results == {}  # nothing was replayed: it caught up by snapshot
    assert_same_state(leader.sm, follower.sm)
    retry = last_idempotent_entries(j, 1)[0][2]
    leader.node.propose(retry)
    run(5)
    outcome = {r.results[max(r.results)] for r in replicas.values()}
    assert len(outcome) == 1 and outcome.pop()[2]  # a duplicate everywhere, with the same offsets
    assert raw_log(follower.sm) == raw_log(leader.sm) == raw_log(replicas[2].sm)
    for r in replicas.values():
        r.close()
