"""raft/storage_health.py: which errors are storage failures, the default watermark, and the monitor's
hysteresis and probe backoff on a real small filesystem (tmpfs)."""

import errno
import os

import pytest

from raftka.raft.storage_health import (
    GIB,
    MIB,
    StorageMonitor,
    default_min_free_bytes,
    journal_segment_bytes,
    storage_failure_reason,
)
from raftka.storage import StorageError

from small_fs import mounted_tmpfs


def wrapped(err: int) -> StorageError:
    try:
        try:
            raise OSError(err, os.strerror(err))
        except OSError as exc:
            raise StorageError("append failed") from exc
    except StorageError as exc:
        return exc


@pytest.mark.parametrize("err, reason", [(errno.ENOSPC, "disk full"), (errno.EIO, "I/O error"),
                                         (errno.EROFS, "read-only file system"), (errno.EDQUOT, "disk quota exceeded")])
def test_storage_failures_are_recognised_also_when_wrapped(err, reason):
    assert storage_failure_reason(OSError(err, "x")) == reason
    assert storage_failure_reason(wrapped(err)) == reason


def test_other_errors_are_not_storage_failures():
    assert storage_failure_reason(ValueError("bug")) is None
    assert storage_failure_reason(OSError(errno.ENOENT, "missing")) is None
    assert storage_failure_reason(StorageError("corrupt batch")) is None


def test_default_watermark_is_1_gib_or_5_percent_whichever_is_smaller():
    assert default_min_free_bytes(20 * MIB) == MIB
    assert default_min_free_bytes(10 * GIB) == 512 * MIB
    assert default_min_free_bytes(2000 * GIB) == GIB


def test_journal_segments_are_a_64th_of_the_filesystem_between_1_and_64_mib():
    assert journal_segment_bytes(20 * MIB) == MIB
    assert journal_segment_bytes(1 * GIB) == 16 * MIB
    assert journal_segment_bytes(100 * GIB) == 64 * MIB


def test_low_with_hysteresis_and_a_backed_off_probe(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", 16 * MIB) as disk:
        monitor = StorageMonitor(str(disk.path), 4 * MIB)
        assert monitor.resume_free_bytes == 5 * MIB
        assert not monitor.sample()
        disk.fill(leave_bytes=3 * MIB)
        assert monitor.sample() and "below the low-disk watermark" in monitor.low_reason()
        disk.free()
        disk.fill(leave_bytes=int(4.5 * MIB))  # above the watermark, below watermark + 1 MiB: still low
        assert monitor.sample()
        disk.free()
        assert not monitor.sample()
        disk.fill()
        assert monitor.probe(100.0) == "disk full"
        assert not monitor.probe_due(100.4) and monitor.probe_due(100.5)
        assert monitor.probe(100.5) == "disk full"
        assert not monitor.probe_due(101.4) and monitor.probe_due(101.5)  # backed off: 0.5 s, then 1 s, ...
        disk.free()
        assert monitor.probe(101.5) is None and monitor.probe_due(101.5)
        assert os.listdir(disk.path) == []  # the probe leaves nothing behind
