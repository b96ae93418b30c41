"""Small filesystems for the brokers' data directories: what the disk-full nemesis fills.

``SmallDisks(data_dirs, size_bytes)`` mounts a tmpfs of ``size_bytes`` at every node's data
directory before the brokers start (a tmpfs takes memory only for what is written to it) and
unmounts them on close, after the run's evidence was read. ``fill(node)`` writes a filler file
until the filesystem refuses with ENOSPC, as another process on the host would; ``free(node)``
deletes it, and the broker recovers without a restart. Mounts made here before the brokers start
are visible in their network namespaces too (``ip netns exec`` copies the mount table).

Mounting needs root; when it cannot be done, ``SmallDisks`` raises ``UnsupportedFault`` with the
reason (the runner then skips the scenario and says why).
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from . import teardown
from .loopback import UnsupportedFault

DEFAULT_SIZE_BYTES = 256 << 20
FILLER = "disk-full-nemesis.filler"
_CHUNK = 1 << 20


class SmallDisks:
    def __init__(self, data_dirs: Mapping[int, Path], size_bytes: int = DEFAULT_SIZE_BYTES) -> None:
        if os.geteuid() != 0:
            raise UnsupportedFault("disk-full mounts a small filesystem per data directory, which needs root")
        self.data_dirs = {node: Path(path) for node, path in data_dirs.items()}
        self.size_bytes = size_bytes
        self._mounted: list[Path] = []
        self._teardown_key = teardown.register(self.close)
        try:
            for path in self.data_dirs.values():
                path.mkdir(parents=True, exist_ok=True)
                result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    raise UnsupportedFault(f"cannot mount a tmpfs at {path}: {result.stderr.strip()}")
                self._mounted.append(path)
        except BaseException:
            self.close()
            raise

    def free_bytes(self, node: int) -> int:
        st = os.statvfs(self.data_dirs[node])
        return st.f_bavail * st.f_frsize

    def fill(self, node: int) -> int:
        """Write the filler until the filesystem is full; returns the bytes written."""
        written, chunk = 0, _CHUNK
        fd = os.open(self.data_dirs[node] / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            while chunk >= 512:
                try:
                    written += os.write(fd, bytes(chunk))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        finally:
            os.close(fd)
        return written

    def free(self, node: int) -> None:
        try:
            os.unlink(self.data_dirs[node] / FILLER)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unmount everything (idempotent); the brokers must have stopped."""
        try:
            while self._mounted:
                _unmount(self._mounted.pop())
        finally:
            teardown.unregister(self._teardown_key)

    def __enter__(self) -> SmallDisks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unmount(path: Path) -> None:
    deadline = time.monotonic() + 10
    while subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # detach; freed once unused
            return
        time.sleep(0.1)
