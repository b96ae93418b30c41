"""atomic_write, the test-mode fsync ledger and apply_ledger's power-loss simulation."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time

from raftka.storage import LEDGER_ENV, atomic_write
from raftka.storage.fsutil import fsync_file
from raftka.storage.powerloss import apply_ledger, read_ledger


def test_atomic_write_replaces_content_and_records_it(tmp_path, monkeypatch):
    ledger = tmp_path / "ledger"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    target = tmp_path / "state" / "hard-state.json"
    target.parent.mkdir()
    atomic_write(target, b'{"term": 1}')
    atomic_write(str(target), b'{"term": 22}')
    assert target.read_bytes() == b'{"term": 22}'
    assert os.listdir(target.parent) == ["hard-state.json"]
    assert read_ledger(ledger) == {str(target): len(b'{"term": 22}')}


def test_atomic_write_never_leaves_a_half_written_file(tmp_path):
    """A writer killed at a random moment leaves one whole version of the file (its writes alternate
    between ten contents of the same size), never a mix or a truncated one."""
    target = tmp_path / "f"
    script = ("import sys\nfrom raftka.storage import atomic_write\nfor n in range(1 << 30):\n"
              "    atomic_write(sys.argv[1], (b'%d' % (n % 10)) * 300000)\n    print(n, flush=True)\n")
    for delay in (0.0, 0.01, 0.05, 0.1):
        child = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE)
        try:
            # Precondition: the writer is in its loop (a kill before its first write would test nothing).
            ready, _, _ = select.select([child.stdout], [], [], 60)
            assert ready and child.stdout.readline(), "the writer never completed a write"
            time.sleep(delay)  # the random moment: somewhere in one of the next writes
            child.kill()
            assert child.wait() == -signal.SIGKILL, "the writer was not killed while writing"
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        content = target.read_bytes()
        assert len(content) == 300000 and len(set(content)) == 1, (len(content), content[:20])


def test_no_ledger_without_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    atomic_write(tmp_path / "f", b"x")
    assert os.listdir(tmp_path) == ["f"]


def test_apply_ledger_cuts_files_back_to_their_last_fsynced_size(tmp_path, monkeypatch):
    ledger, root = tmp_path / "ledger", tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    synced, shrunk, never = root / "a.log", root / "sub" / "b.log", root / "c.log"
    with open(synced, "wb") as f:
        f.write(b"1" * 100)
        f.flush()
        fsync_file(f.fileno(), str(synced))
        f.write(b"2" * 50)  # never fsynced
    with open(shrunk, "wb") as f:
        f.write(b"x" * 100)
        f.flush()
        fsync_file(f.fileno(), str(shrunk))
        f.truncate(10)
        fsync_file(f.fileno(), str(shrunk))  # the last fsynced size counts, not the largest
    never.write_bytes(b"lost")
    with open(ledger, "a") as f:
        f.write(f"{synced} 5")  # an unfinished last line (writer died mid-line) is ignored
    report = apply_ledger(ledger, root)
    assert synced.read_bytes() == b"1" * 100
    assert shrunk.read_bytes() == b"x" * 10
    assert not never.exists()
    assert report.truncated == {str(synced): 50} and report.deleted == [str(never)]


def test_apply_ledger_can_keep_part_of_the_unsynced_tail(tmp_path, monkeypatch):
    ledger, root = tmp_path / "ledger", tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    sizes = set()
    for seed in range(20):
        path = root / "f"
        with open(path, "wb") as f:
            f.write(b"a" * 10)
            f.flush()
            fsync_file(f.fileno(), str(path))
            f.write(b"b" * 90)
        apply_ledger(ledger, root, keep_unsynced=random.Random(seed))
        data = path.read_bytes()
        assert data == (b"a" * 10 + b"b" * 90)[: len(data)] and len(data) >= 10
        sizes.add(len(data))
    assert len(sizes) > 5
