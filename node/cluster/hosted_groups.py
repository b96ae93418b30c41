"""`hosted-groups.json`: the Raft groups this data directory hosts, and refusing a replica whose state was lost.

A replica whose log vanished from a directory that hosted it, under the same
live incarnation, would vote as the replica it was, its promises forgotten.
The broker records each group here once its journal exists and before it can
say anything, and checks the record before it hosts a group again
(`GroupStateLost`: the operator empties the directory, and the broker comes
back as a new incarnation).
"""

from __future__ import annotations

import os

import orjson

from raftka.raft.host import GroupStateLost
from raftka.storage import atomic_write

HOSTED_GROUPS_FILE = "hosted-groups.json"


class HostedGroups:
    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self._groups: set[str] | None = None  # the file's contents, once read

    def read(self) -> set[str]:
        """The groups this directory hosts (read once, then kept in memory)."""
        if self._groups is None:
            try:
                with open(os.path.join(self.data_dir, HOSTED_GROUPS_FILE), "rb") as f:
                    self._groups = set(orjson.loads(f.read()))
            except FileNotFoundError:
                self._groups = set()
        return set(self._groups)

    def write(self, groups: set[str]) -> None:
        atomic_write(os.path.join(self.data_dir, HOSTED_GROUPS_FILE), orjson.dumps(sorted(groups)))
        self._groups = set(groups)

    def check_not_lost(self, name: str, hosted: set[str], directory: str) -> None:
        """A group this directory hosted whose log (`directory`) vanished would vote as its old self."""
        if name in hosted and not os.path.isdir(directory):
            raise GroupStateLost(f"raft group {name}: its log vanished from {self.data_dir}; stop the broker, "
                                 "empty its data directory and start it again to rejoin as a new incarnation")
