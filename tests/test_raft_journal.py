"""The durable Raft journal: persistence, truncation, compaction, resets and power loss."""

import os
import subprocess
import sys
import textwrap

import pytest

from raftka.raft.journal import Journal, JournalError
from raftka.raft.messages import ENTRY_CONFIG, ENTRY_NORMAL, Entry
from raftka.storage.powerloss import apply_ledger


def fill(j: Journal, terms):
    j.append([Entry(t, b"data-%d-%d" % (j.last_index + 1 + i, t)) for i, t in enumerate(terms)])


def test_entries_terms_and_hard_state_survive_reopen(tmp_path):
    j = Journal(str(tmp_path))
    fill(j, [1, 1, 2, 2, 3])
    j.set_hard_state(3, 2)
    j.sync()
    j.close()
    j = Journal(str(tmp_path))
    assert (j.term, j.vote, j.last_index, j.synced_index) == (3, 2, 5, 5)
    assert [j.term_at(i) for i in range(0, 7)] == [0, 1, 1, 2, 2, 3, None]
    assert [e.data for e in j.entries(2, 5, 1 << 20)] == [b"data-2-1", b"data-3-2", b"data-4-2"]


def test_entries_are_served_from_disk_when_the_cache_is_small(tmp_path):
    j = Journal(str(tmp_path), cache_bytes=10)
    fill(j, [1] * 20)
    j.sync()
    got = j.entries(1, 21, 1 << 20)
    assert [e.data for e in got] == [b"data-%d-1" % i for i in range(1, 21)]
    assert len(j.entries(1, 21, 30)) == 3  # max_bytes bounds the answer...
    assert len(j.entries(1, 21, 1)) == 1  # ...but one entry always fits


def test_truncate_then_append_replaces_the_tail(tmp_path):
    j = Journal(str(tmp_path))
    fill(j, [1, 1, 1, 1])
    j.sync()
    j.truncate_from(3)
    fill(j, [2, 2])
    j.sync()
    j.close()
    j = Journal(str(tmp_path))
    assert [j.term_at(i) for i in range(1, 5)] == [1, 1, 2, 2]
    assert j.entries(3, 4, 100)[0].data == b"data-3-2"


def test_compaction_forgets_entries_and_survives_reopen(tmp_path):
    j = Journal(str(tmp_path), segment_bytes=200)
    fill(j, [1] * 10 + [2] * 10)
    j.sync()
    j.compact(15)
    assert (j.snapshot_index, j.snapshot_term) == (15, 2)
    assert j.term_at(14) is None and j.term_at(15) == 2
    assert j.entries(1, 21, 1 << 20)[0].data == b"data-16-2"
    j.close()
    j = Journal(str(tmp_path), segment_bytes=200)
    assert (j.snapshot_index, j.last_index) == (15, 20)
    assert [e.data for e in j.entries(16, 21, 1 << 20)] == [b"data-%d-2" % i for i in range(16, 21)]
    with pytest.raises(JournalError):
        j.truncate_from(10)


def test_compaction_never_passes_the_synced_index(tmp_path):
    j = Journal(str(tmp_path))
    fill(j, [1] * 5)
    j.compact(3)
    assert j.snapshot_index == 0  # nothing synced yet


def test_reset_discards_everything(tmp_path):
    j = Journal(str(tmp_path))
    fill(j, [1] * 5)
    j.sync()
    j.reset(100, 7, b'{"voters":[1,2,3],"learners":[]}')
    assert (j.last_index, j.term_at(100), j.entries(1, 200, 1 << 20)) == (100, 7, [])
    fill(j, [8])
    j.sync()
    j.close()
    j = Journal(str(tmp_path))
    assert (j.snapshot_index, j.last_index, j.term_at(101)) == (100, 101, 8)
    assert j.config_at(101) == (100, b'{"voters":[1,2,3],"learners":[]}')


def test_configuration_entries_survive_reopen_truncation_and_compaction(tmp_path):
    a, b = b'{"voters":[1,2],"learners":[3]}', b'{"voters":[1,2,3],"learners":[]}'
    j = Journal(str(tmp_path))
    j.bootstrap_config(b'{"voters":[1,2],"learners":[]}')
    j.append([Entry(1, b"x"), Entry(1, a, ENTRY_CONFIG), Entry(1, b"y"), Entry(2, b, ENTRY_CONFIG), Entry(2, b"z")])
    j.sync()
    j.close()
    j = Journal(str(tmp_path))
    assert [e.kind for e in j.entries(1, 6, 1 << 20)] == [ENTRY_NORMAL, ENTRY_CONFIG, ENTRY_NORMAL, ENTRY_CONFIG,
                                                          ENTRY_NORMAL]
    assert j.config_at(1) == (0, b'{"voters":[1,2],"learners":[]}')
    assert j.config_at(3) == (2, a) and j.config_at(5) == (4, b)
    j.truncate_from(4)
    assert j.config_at(10) == (2, a)
    j.compact(3)  # the compaction point's membership moves into the hard state
    assert j.config_at(3) == (3, a)
    j.sync()
    j.close()
    j = Journal(str(tmp_path))
    assert (j.snapshot_index, j.snapshot_config, j.config_at(3)) == (3, a, (3, a))


def test_a_staged_snapshot_membership_is_durable_at_once(tmp_path):
    j = Journal(str(tmp_path))
    j.stage_snapshot(40, 3, b'{"voters":[7],"learners":[]}')
    on_disk = (tmp_path / "hardstate.log").read_bytes()  # written before stage_snapshot returned
    assert b'"staged"' in on_disk and b'\\"voters\\":[7]' in on_disk
    j.close()
    j = Journal(str(tmp_path))
    assert j.staged_config(40) == b'{"voters":[7],"learners":[]}' and j.staged_config(41) == b""


def test_power_loss_keeps_synced_entries_and_hard_state(tmp_path):
    """A child appends and syncs some entries, appends more without sync, and is SIGKILLed;
    then the page cache is 'lost' with the fsync ledger."""
    ledger = tmp_path / "ledger"
    data = tmp_path / "g"
    script = textwrap.dedent(f"""
        import os, signal
        from raftka.raft.journal import Journal
        from raftka.raft.messages import Entry
        j = Journal({str(data)!r})
        j.append([Entry(1, b"durable-%d" % i) for i in range(50)])
        j.set_hard_state(4, 3)
        j.sync()
        j.append([Entry(2, b"lost-%d" % i) for i in range(50)])
        j.set_hard_state(5, None)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, RAFTKA_FSYNC_LEDGER=str(ledger))
    proc = subprocess.run([sys.executable, "-c", script], env=env)
    assert proc.returncode == -9
    apply_ledger(str(ledger), str(data))
    j = Journal(str(data))
    assert (j.term, j.vote, j.last_index) == (4, 3, 50)
    assert [e.data for e in j.entries(1, 51, 1 << 30)] == [b"durable-%d" % i for i in range(50)]
