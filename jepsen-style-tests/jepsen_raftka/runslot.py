"""Run slots: a small number per live harness run, held by an flock for the run's life.

The slot number names everything a run creates outside its own memory
(namespaces ``rk-<slot>-<node>``, links ``rk<slot>...``, subnet
10.77.<slot>.0/24, the ``RAFTKA_JEPSEN_RUN`` marker in its child processes),
so concurrent runs never collide. The kernel drops the lock when the owning
process dies, even by SIGKILL, so a slot whose lock can be taken belongs to no
live run and whatever still carries its name is a leftover (see
``stale_slots``). Lock files live in /run/raftka-jepsen when root (tmpfs, gone
at reboot like the namespaces), else in the temp directory.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_SLOT = 250  # 10.77.<slot>.0/24 needs slot < 255


def lock_dir() -> Path:
    if os.geteuid() == 0 and os.path.isdir("/run"):
        path = Path("/run/raftka-jepsen")
    else:
        path = Path(tempfile.gettempdir()) / f"raftka-jepsen-{os.geteuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _lock_path(number: int) -> Path:
    return lock_dir() / f"slot-{number}.lock"


def _try_lock(number: int) -> int | None:
    fd = os.open(_lock_path(number), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class RunSlot:
    """A held slot. ``token`` (``<lock dir>#<slot>-<random>``) marks this run's child
    processes; the lock dir in it keeps runs of other users (other lock dirs) apart."""

    def __init__(self, number: int, fd: int) -> None:
        self.number = number
        self.token = f"{lock_dir()}#{number}-{secrets.token_hex(6)}"
        self._fd: int | None = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.token}\npid {os.getpid()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __repr__(self) -> str:
        return f"RunSlot({self.token}, held={self.held})"


def acquire() -> RunSlot:
    """The lowest free slot; raises RuntimeError when all MAX_SLOT are in use."""
    for number in range(1, MAX_SLOT + 1):
        fd = _try_lock(number)
        if fd is not None:
            return RunSlot(number, fd)
    raise RuntimeError(f"all {MAX_SLOT} harness run slots are in use (lock dir {lock_dir()})")


def ours(token: str) -> bool:
    """Whether token belongs to a run using this process's lock dir."""
    return token.startswith(f"{lock_dir()}#")


def live_tokens() -> set[str]:
    """Tokens of the runs whose slot lock is held right now (by anyone, this process included)."""
    tokens = set()
    for path in lock_dir().glob("slot-*.lock"):
        number = int(path.stem.removeprefix("slot-"))
        fd = _try_lock(number)
        if fd is not None:
            os.close(fd)
            continue
        lines = path.read_text(errors="replace").splitlines()
        if lines:
            tokens.add(lines[0])
    return tokens


@contextmanager
def stale_slots(candidates: Iterable[int]) -> Iterator[set[int]]:
    """The candidate slots no live run holds, locked for the duration of the block so
    that no new run takes one of them while its leftovers are being removed."""
    held: dict[int, int] = {}
    try:
        for number in sorted(set(candidates)):
            fd = _try_lock(number) if 1 <= number <= MAX_SLOT else None
            if fd is not None:
                held[number] = fd
        yield set(held)
    finally:
        for fd in held.values():
            os.close(fd)
