"""Test support: small real filesystems to fill up or break, for storage-fault tests.

`mounted_tmpfs(path, size)` mounts a tmpfs of `size` bytes at `path` (skipping the test with the
reason when that is impossible: not root, no mount permission) and always unmounts it, also when
the test fails. `Tmpfs.fill(leave_bytes)` writes a filler file until only `leave_bytes` are free
(0: until the disk says ENOSPC); `Tmpfs.free()` removes it.

`mounted_ext4(path, image)` formats a loop-mounted ext4 image and mounts it at `path`;
`Ext4.shut_down()` is EXT4_IOC_SHUTDOWN (what xfstests' "godown" does): from then on every read
and write on it fails with EIO, a real I/O error, until it is unmounted and mounted again
(`Ext4.remount()`, once nothing holds files there). It shuts down with the default flags, which
write everything back first: with NOLOGFLUSH (and LOGFLUSH too), an fsync running in another
thread as the file system went down could return success for data the remount no longer had (in 7
of 30 and 5 of 40 trials of `test_small_fs`'s probe), a disk that lies, which Raft cannot survive
and which is not what these tests are about (power loss is `raftka.storage.powerloss`'s).

A filesystem mounted here is copied into any mount namespace created meanwhile (``ip netns
exec`` of a concurrent jepsen run) and lives on there after our unmount: harmless for a tmpfs
(its memory is freed when that namespace ends), and the reason `remount` mounts a copy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import struct
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


EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_DEFAULT = 0  # freeze (write everything back), then shut down (see the module docstring)


class Ext4:
    def __init__(self, path: Path, image: Path):
        self.path, self.image = path, image

    def shut_down(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_DEFAULT))
        finally:
            os.close(fd)

    def remount(self) -> None:
        """Unmount, then mount a copy of the image: the same data on a new device. (Mounting the same
        image again can get the old, shut-down superblock back when another mount namespace, e.g. a
        concurrent `ip netns exec`, still holds a copy of the first mount.)"""
        unmount(self.path)
        repaired = self.image.with_name(self.image.stem + "-repaired.img")
        shutil.copyfile(self.image, repaired)
        self.image = repaired
        subprocess.run(["mount", "-o", "loop", str(repaired), str(self.path)], check=True, capture_output=True)


@contextlib.contextmanager
def mounted_ext4(path: Path, image: Path, size: int):
    path, image = Path(path), Path(image)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("I/O-error tests mount a loop device, which needs root")
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (e2fsprogs)")
    with open(image, "wb") as f:
        f.truncate(size)
    _run_or_skip(["mkfs.ext4", "-q", "-F", str(image)], "format an ext4 image")
    _run_or_skip(["mount", "-o", "loop", str(image), str(path)], "loop-mount an ext4 image")
    try:
        yield Ext4(path, image)
    finally:
        unmount(path)


def _run_or_skip(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot {what} here: {result.stderr.strip() or result.returncode}")
