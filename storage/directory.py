"""The partition directory: ownership marker, metadata, exclusive lock and file inventory.

A directory is raftka's if it holds the marker file `raftka-log.json` (written atomically),
which also stores the metadata that segment file names cannot express: the log start offset
when it lies inside a segment, and an unfinished reset. A non-empty directory without the
marker, or with files raftka does not write, is refused (ForeignDirectoryError) and left
untouched; a read-only one is refused with UnwritableDirectoryError. An flock on the
directory keeps a second process (or a second PartitionLog) from opening the same log; an owner
that guarantees this itself (the Raft host locks its whole data directory) opens without it and
saves the descriptor the lock holds (10,000 partitions are 10,000 descriptors).
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import orjson

from .errors import DataDirError, ForeignDirectoryError, UnwritableDirectoryError
from .fsutil import TMP_SUFFIX, atomic_write, fsync, fsync_dir, record_durable, try_lock_directory
from .segment import INDEX_SUFFIX, LOG_SUFFIX, segment_name

MARKER = "raftka-log.json"
_FORMAT = "raftka-partition-log"
_VERSION = 1
_SEGMENT_FILE = re.compile(r"^(\d{20})(\.log|\.index)$")


class LogMeta(NamedTuple):
    """Contents of the marker file. reset_to is set while reset() is in progress."""

    log_start_offset: int
    reset_to: int | None = None


class LogDirectory:
    """An opened, validated and locked partition directory."""

    def __init__(self, path: str, lock_fd: int, meta: LogMeta) -> None:
        self.path = path
        self.meta = meta
        self._lock_fd = lock_fd
        self._unsynced_marker: int | None = None  # size of a marker written with sync_dir=False, until fsync()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, lock: bool = True) -> LogDirectory:
        """Validate (or create and mark) the directory and (with `lock`) lock it for this process."""
        path = os.path.abspath(os.fspath(path))
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ForeignDirectoryError(f"{path} exists and is not a directory")
        created = not os.path.exists(path)
        try:
            os.makedirs(path, exist_ok=True)
            if created:
                fsync_dir(os.path.dirname(path))
        except OSError as exc:
            raise UnwritableDirectoryError(f"cannot create log directory {path}: {exc}") from exc
        names = set(os.listdir(path))
        marked = MARKER in names
        if not marked and names - {MARKER + TMP_SUFFIX}:
            raise ForeignDirectoryError(
                f"{path} is not empty and has no {MARKER} marker, so it is not a raftka log; "
                f"found {_preview(names)}"
            )
        unexpected = {n for n in names if not _SEGMENT_FILE.match(n)} - {MARKER, MARKER + TMP_SUFFIX}
        if unexpected:
            raise ForeignDirectoryError(f"{path} holds files raftka did not write: {_preview(unexpected)}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UnwritableDirectoryError(f"log directory {path} is not writable")
        lock_fd = -1
        if lock:
            lock_fd = try_lock_directory(path)
            if lock_fd is None:
                raise DataDirError(f"log directory {path} is already open (locked by another PartitionLog)")
        directory = cls(path, lock_fd, LogMeta(0))
        try:
            if marked:
                directory.meta = directory._read_meta()
            else:  # a new (empty) log: PartitionLog fsyncs the directory once its first segment exists
                directory.write_meta(LogMeta(0), sync_dir=False)
            _remove_if_exists(os.path.join(path, MARKER + TMP_SUFFIX))
        except OSError as exc:
            directory.close()
            raise UnwritableDirectoryError(f"cannot write to log directory {path}: {exc}") from exc
        except DataDirError:
            directory.close()
            raise
        return directory

    def _read_meta(self) -> LogMeta:
        marker = os.path.join(self.path, MARKER)
        with open(marker, "rb") as f:
            raw = f.read()
        try:
            doc = orjson.loads(raw)
            if doc["format"] != _FORMAT or doc["version"] != _VERSION:
                raise ValueError(f"format {doc['format']!r} version {doc['version']!r}")
            meta = LogMeta(doc["log_start_offset"], doc["reset_to"])
            if type(meta.log_start_offset) is not int or meta.log_start_offset < 0:
                raise ValueError(f"bad log_start_offset {meta.log_start_offset!r}")
            if meta.reset_to is not None and (type(meta.reset_to) is not int or meta.reset_to < 0):
                raise ValueError(f"bad reset_to {meta.reset_to!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise DataDirError(f"unreadable marker file {marker}: {exc}") from exc
        return meta

    def write_meta(self, meta: LogMeta, *, sync_dir: bool = True) -> None:
        """Replace the marker file (with sync_dir=False it is durable only after the caller's `fsync()`)."""
        doc = orjson.dumps({"format": _FORMAT, "version": _VERSION, "log_start_offset": meta.log_start_offset,
                            "reset_to": meta.reset_to})
        atomic_write(os.path.join(self.path, MARKER), doc, sync_dir=sync_dir)
        self._unsynced_marker = None if sync_dir else len(doc)
        self.meta = meta

    def segment_bases(self) -> list[int]:
        """Base offsets of the segment (.log) files, ascending; index files without a log are removed."""
        logs, indexes = set(), set()
        for name in os.listdir(self.path):
            match = _SEGMENT_FILE.match(name)
            if match:
                (logs if match.group(2) == LOG_SUFFIX else indexes).add(int(match.group(1)))
        for base in indexes - logs:
            _remove_if_exists(os.path.join(self.path, segment_name(base) + INDEX_SUFFIX))
        return sorted(logs)

    def fsync(self) -> None:
        if self._lock_fd >= 0:
            fsync(self._lock_fd)
        else:
            fsync_dir(self.path)
        if self._unsynced_marker is not None:
            record_durable(os.path.join(self.path, MARKER), self._unsynced_marker)
            self._unsynced_marker = None

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _remove_if_exists(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _preview(names: set[str]) -> str:
    shown = sorted(names)[:5]
    return ", ".join(shown) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
