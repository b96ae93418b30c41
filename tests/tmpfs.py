"""Test support: a small real filesystem (tmpfs) to fill up, for disk-full tests.

`mounted_tmpfs(path, size)` mounts a tmpfs of `size` bytes at `path` (skipping the test with the
reason when that is impossible: not root, no mount permission) and always unmounts it, also when
the test fails. `Tmpfs.fill(leave_bytes)` writes a filler file until only `leave_bytes` are free
(0: until the disk says ENOSPC); `Tmpfs.free()` removes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

FILLER = "filler.bin"


class Tmpfs:
    def __init__(self, path: Path, size: int):
        self.path = path
        self.size = size

    @property
    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave_bytes: int = 0, name: str = FILLER) -> int:
        """Write `name` until at most `leave_bytes` are free; returns the bytes written."""
        written = 0
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            chunk = 1 << 20
            while chunk >= 4096:
                if self.free_bytes - chunk < leave_bytes:
                    chunk //= 2
                    continue
                try:
                    written += os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        finally:
            os.close(fd)
        return written

    def free(self, name: str = FILLER) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / name)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: int):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("disk-full tests mount a tmpfs, which needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path}: {result.stderr.strip() or result.returncode}")
    try:
        yield Tmpfs(path, size)
    finally:
        unmount(path)


def unmount(path: Path) -> None:
    """Unmount, waiting a little for processes that still hold files there; lazily as a last resort."""
    deadline = time.monotonic() + 10
    while subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
            return
        time.sleep(0.1)
