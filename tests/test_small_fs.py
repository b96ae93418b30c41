"""The storage-fault injector of small_fs: a shut-down ext4 fails every I/O with EIO, and it keeps all that an
fsync said was durable (a fault injector that lost acknowledged data would make a disk that lies: no
replication protocol survives that, and a test built on it fails for nothing).

Each trial appends to three files as a partition log does (one thread writes, another fsyncs a duplicate of
the descriptor and counts what was written before the fsync started as durable), shuts the file system down
at a random moment, and mounts it again. With the shutdown flag NOLOGFLUSH this failed in about one trial in
four (an fsync returned success as the file system went down, for data the remount did not have).
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time

import pytest

from small_fs import mounted_ext4

TRIALS = 12


class Appender:
    """Appends to `path` in one thread and fsyncs it in another; `durable` is what a successful fsync covered."""

    def __init__(self, path, rng: random.Random):
        self.path, self.rng = path, rng
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.written = self.durable = 0
        self.errors: list[int] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._append), threading.Thread(target=self._sync)]
        for thread in self._threads:
            thread.start()

    def _append(self) -> None:
        try:
            while not self.stop.is_set():
                size = os.writev(self.fd, [os.urandom(self.rng.randint(100, 14_000)), b"\0" * 61])
                with self._lock:
                    self.written += size
                time.sleep(self.rng.uniform(0, 0.002))
        except OSError as exc:
            self.errors.append(exc.errno)

    def _sync(self) -> None:
        try:
            while not self.stop.is_set():
                with self._lock:
                    end, fd = self.written, os.dup(self.fd)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.durable = max(self.durable, end)
                time.sleep(self.rng.uniform(0, 0.003))
        except OSError as exc:
            self.errors.append(exc.errno)

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(10)
        try:
            os.close(self.fd)
        except OSError:
            pass


def test_a_shut_down_ext4_fails_with_eio_and_keeps_what_every_fsync_acknowledged(tmp_path):
    rng = random.Random(7)
    for trial in range(TRIALS):
        with mounted_ext4(tmp_path / f"disk{trial}", tmp_path / f"disk{trial}.img", 64 << 20) as disk:
            appenders = [Appender(disk.path / f"log{i}", rng) for i in range(3)]
            try:
                time.sleep(rng.uniform(0.1, 0.4))
                disk.shut_down()
                time.sleep(0.05)
            finally:
                for appender in appenders:
                    appender.close()
            errors = [a.errors for a in appenders]
            assert all(e and set(e) <= {errno.EIO} for e in errors), errors
            with pytest.raises(OSError) as failed:
                os.open(disk.path / "another", os.O_WRONLY | os.O_CREAT, 0o644)
            assert failed.value.errno == errno.EIO
            disk.remount()
            for appender in appenders:
                kept = os.path.getsize(appender.path)
                assert kept >= appender.durable > 0, (
                    f"trial {trial}: {appender.path.name}: an fsync acknowledged {appender.durable} bytes, "
                    f"the remounted file has {kept}")
