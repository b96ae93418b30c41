"""Health of a broker's data directory: write failures, free space, the low-disk watermark, the probe.

The host (`raft.host`) stops a group's replica when a write for it fails and stops every
non-critical group (the partitions) while the filesystem is below the low-disk watermark; this
module holds the facts and rules it acts on, with no knowledge of Raft:

* `storage_failure_reason(exc)`: whether an exception comes from the disk refusing a write
  (ENOSPC, EDQUOT, EIO, EROFS, ...; also when wrapped by the storage engine) and how to say it
  ("disk full", "I/O error", "read-only file system").
* `default_min_free_bytes(total)`: the watermark when none is configured: 1 GiB or 5 % of the
  filesystem, whichever is smaller — a fixed reserve would swallow a small disk, a percentage
  alone wastes tens of GiB on a large one (1 GiB is many minutes of metadata, checkpoints and
  catch-up at any realistic rate).
* `journal_segment_bytes(total)`: Raft journal segments are at most 1/64 of the filesystem
  (1-64 MiB): compaction frees whole segments only, so on a small disk they must be small.
* `StorageMonitor`: samples free space (statvfs), decides "low" with hysteresis (low below the
  watermark; healthy again only at watermark + max(10 %, 1 MiB) free, so that a disk hovering at
  the watermark does not flap its replicas on and off), and schedules the write probe (write + fsync + delete a small
  file) that says a failed disk is usable again, with exponential backoff (0.5 s doubling to 4 s).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from raftka.storage.fsutil import fsync

GIB = 1 << 30
MIB = 1 << 20
DEFAULT_MIN_FREE_CAP = GIB
DEFAULT_MIN_FREE_FRACTION = 0.05
PROBE_FILE = ".storage-probe"
PROBE_BYTES = 4096
PROBE_BACKOFF_S = (0.5, 4.0)  # first retry after a failed probe, cap

_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EIO: "I/O error",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large for the file system",
    errno.ENOMEM: "out of memory for the file system",
}


def storage_failure_reason(exc: BaseException) -> str | None:
    """"disk full", "I/O error", ... when exc (or what it wraps) is the OS refusing I/O, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _REASONS:
            return _REASONS[exc.errno]
        exc = exc.__cause__ or exc.__context__
    return None


def default_min_free_bytes(total_bytes: int) -> int:
    return min(DEFAULT_MIN_FREE_CAP, int(total_bytes * DEFAULT_MIN_FREE_FRACTION))


def journal_segment_bytes(total_bytes: int) -> int:
    return max(MIB, min(64 * MIB, total_bytes // 64))


@dataclass(frozen=True)
class DiskUsage:
    total_bytes: int
    free_bytes: int  # available to this (unprivileged or not) process


def disk_usage(path: str) -> DiskUsage:
    st = os.statvfs(path)
    return DiskUsage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


def probe_write(directory: str) -> None:
    """Write, fsync and delete a small file in directory; raises OSError if the disk refuses."""
    path = os.path.join(directory, PROBE_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            fsync(fd)
        finally:
            os.close(fd)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class StorageMonitor:
    """Free space against the watermark (with hysteresis) and the probe schedule of one data directory.

    ``min_free_bytes`` None means the default for the filesystem's size; 0 disables the watermark
    (write failures still stop replicas).
    """

    def __init__(self, directory: str, min_free_bytes: int | None):
        self.directory = directory
        self.usage = disk_usage(directory)
        self.min_free_bytes = (default_min_free_bytes(self.usage.total_bytes) if min_free_bytes is None
                               else min_free_bytes)
        self.low = False
        self._probe_failures = 0
        self._next_probe = 0.0

    @property
    def resume_free_bytes(self) -> int:
        """Free space at which a low disk counts as healthy again."""
        return self.min_free_bytes + max(self.min_free_bytes // 10, MIB) if self.min_free_bytes else 0

    def sample(self) -> bool:
        """Measure free space now; returns whether the disk is low (below the watermark)."""
        self.usage = disk_usage(self.directory)
        free = self.usage.free_bytes
        self.low = free < self.min_free_bytes if not self.low else free < self.resume_free_bytes
        return self.low

    def low_reason(self) -> str:
        return (f"disk almost full: {self.usage.free_bytes} bytes free, below the low-disk watermark "
                f"(--min-free-bytes {self.min_free_bytes})")

    def probe_due(self, now: float) -> bool:
        return now >= self._next_probe

    def probe(self, now: float) -> str | None:
        """Try a write; None if the disk took it, else the reason (and the next try is backed off)."""
        try:
            probe_write(self.directory)
        except OSError as exc:
            self._probe_failures += 1
            first, cap = PROBE_BACKOFF_S
            self._next_probe = now + min(cap, first * 2 ** (self._probe_failures - 1))
            return storage_failure_reason(exc) or str(exc)
        self._probe_failures = 0
        self._next_probe = now
        return None

    def status(self) -> dict:
        return {"free_bytes": self.usage.free_bytes, "total_bytes": self.usage.total_bytes,
                "min_free_bytes": self.min_free_bytes, "low": self.low}
