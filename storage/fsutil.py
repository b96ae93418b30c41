"""Durable file-system primitives: fsync of files and directories, atomic_write, fsync ledger.

Everything in raftka.storage that must survive power loss goes through these helpers.
atomic_write (tmp file + fsync + rename + directory fsync) is public: the Raft layer stores its
hard state with it. In test mode (env RAFTKA_FSYNC_LEDGER=<path>) every completed fsync of a
data file appends "<absolute path> <size>" to that ledger, and a file made durable by a
directory fsync (created, or renamed into place) is recorded with its size too, so that
raftka.storage.powerloss.apply_ledger can later cut every file back to what was really durable.

`fsync_count()` is the number of fsync calls this process made (files and directories, from any
thread): the broker's metrics report it, and the benchmarks turn it into fsyncs per second.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading

LEDGER_ENV = "RAFTKA_FSYNC_LEDGER"
TMP_SUFFIX = ".tmp"

_fsyncs = 0
_fsyncs_lock = threading.Lock()


def fsync(fd: int) -> None:
    """os.fsync, counted (see `fsync_count`)."""
    global _fsyncs
    with _fsyncs_lock:
        _fsyncs += 1
    os.fsync(fd)


def fsync_count() -> int:
    """fsync calls made by this process so far."""
    return _fsyncs


def record_durable(path: str, size: int) -> None:
    """Test mode only: note in the ledger that path durably holds its first size bytes."""
    ledger = os.environ.get(LEDGER_ENV)
    if ledger:
        with open(ledger, "a", encoding="utf-8") as out:
            out.write(f"{os.path.abspath(path)} {size}\n")


def fsync_file(fd: int, path: str | None) -> int:
    """fsync an open data file and return the size now known durable.

    path names the file in the test-mode ledger; pass None when the caller records the size
    itself (concurrent fsyncs of one file must reach the ledger in size order).
    """
    size = os.fstat(fd).st_size
    fsync(fd)
    if path is not None:
        record_durable(path, size)
    return size


def fsync_dir(path: str) -> None:
    """fsync a directory so that file creations, renames and deletions in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, sync_dir: bool = True) -> None:
    """Replace the file at path with data so that a crash leaves either the old or the new content.

    Writes path + ".tmp", fsyncs it, renames it over path and fsyncs the directory (with
    sync_dir=False the caller fsyncs the directory itself before relying on the new file).
    """
    path = os.fspath(path)
    tmp = path + TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a full disk must not keep a half-written copy
        raise
    if sync_dir:
        fsync_dir(os.path.dirname(os.path.abspath(path)))
        record_durable(path, len(data))


def try_lock_directory(path: str) -> int | None:
    """An exclusive flock on directory `path`: the descriptor to close to release it, or None if another
    process (or another descriptor in this one) holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
