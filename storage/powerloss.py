"""Power-loss simulation for tests: cut files back to what the fsync ledger says was durable.

When env RAFTKA_FSYNC_LEDGER names a file, raftka.storage.fsutil appends "<abs path> <size>"
to it after each fsync (and after a directory fsync makes a new or renamed file durable).
apply_ledger replays that ledger over a directory tree as if the machine lost its page cache:
every regular file is truncated to its last recorded size and files never recorded are
deleted. With keep_unsynced (a random.Random), each file instead keeps a random part of its
unsynced tail, as when the OS wrote some dirty pages back before the power went: that makes
torn batches. Run it only while no process writes under the tree (e.g. after SIGKILL).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field


@dataclass
class PowerLossReport:
    """What apply_ledger did: {path: bytes removed} for truncated files, and deleted paths."""

    truncated: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)


def read_ledger(ledger_path: str | os.PathLike[str]) -> dict[str, int]:
    """Last recorded durable size of every path in the ledger (an unfinished last line is ignored)."""
    sizes: dict[str, int] = {}
    try:
        with open(ledger_path, encoding="utf-8") as ledger:
            for line in ledger:
                if not line.endswith("\n"):
                    break
                path, _, size = line[:-1].rpartition(" ")
                sizes[path] = int(size)
    except FileNotFoundError:
        pass
    return sizes


def apply_ledger(
    ledger_path: str | os.PathLike[str], root_dir: str | os.PathLike[str], *, keep_unsynced: random.Random | None = None
) -> PowerLossReport:
    """Truncate every file under root_dir to its last fsynced size; delete files never fsynced."""
    durable = read_ledger(ledger_path)
    report = PowerLossReport()
    for directory, _, files in os.walk(root_dir):
        for name in files:
            path = os.path.abspath(os.path.join(directory, name))
            if path == os.path.abspath(ledger_path):
                continue
            size = os.path.getsize(path)
            synced = durable.get(path)
            keep = synced or 0
            if keep_unsynced is not None and size > keep:
                keep += keep_unsynced.randint(0, size - keep)
            if synced is None and keep == 0:
                os.unlink(path)
                report.deleted.append(path)
            elif size > keep:
                os.truncate(path, keep)
                report.truncated[path] = size - keep
    return report
