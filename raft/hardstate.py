"""The hard state of every Raft group of a broker, in one append-only file: one fsync per round for all groups.

A group's hard state is its term, vote, compaction point (index, term and the membership in effect
there) and a staged snapshot membership (see `journal`).  It changes on elections (every replica of
every group whose term moves) and when a journal is compacted.  Kept in a file per group, each change
cost a file write, an fsync, a rename and a directory fsync: an election round of thousands of
groups (a broker's restart with 10,000 partitions) waited for tens of thousands of fsyncs.  Here every
change is a record appended to ``hardstate.log``; `sync()` writes whatever was put since the last one
and fsyncs once, so the host makes all the groups of a round durable together (TiKV's raft-engine
does the same for its groups' state).

Record: ``length u32 | crc32c u32 | orjson {"group": name, "state": {...}}`` (or ``"removed": true``
when a group's replica is deleted); big-endian.  Opening reads every record, the newest per group
wins, and a torn or corrupt tail (a crash mid-write: never fsynced, so never relied on) is cut off.
When the file holds more than `compact_bytes` and twice the live states, `sync()` rewrites it with
one record per live group (temporary file, fsync, rename, directory fsync).

Threads: `put`/`remove`/`get` on the event loop; `sync` may run in a worker thread meanwhile.
A failed `sync` keeps what it could not write for the next one, so nothing put is ever silently
dropped; callers must not let a group speak on state whose `sync` failed.
"""

from __future__ import annotations

import os
import struct
import threading

import orjson
from crc32c import crc32c

from raftka.storage.fsutil import fsync_dir, fsync_file, record_durable

FILE = "hardstate.log"
DEFAULT_COMPACT_BYTES = 4 << 20
_HEADER = struct.Struct(">II")
_MAX_RECORD = 64 << 20


class HardStateError(Exception):
    """The hard state file cannot be read (not a torn tail: a bad record followed by good ones)."""


class HardStateStore:
    def __init__(self, directory: str, *, compact_bytes: int = DEFAULT_COMPACT_BYTES):
        """Reads the file if it exists; nothing is created before the first `sync()` with something to write."""
        self.directory = directory
        self.path = os.path.join(directory, FILE)
        self._compact_bytes = compact_bytes
        self._states: dict[str, dict] = {}
        self._pending: list[bytes] = []  # encoded records put and not yet written, in order
        self._put_seq = 0  # puts (and removes) so far ...
        self.synced_seq = 0  # ... and how many of them are durable
        self._lock = threading.Lock()  # _states and _pending (event loop vs. the syncing thread)
        self._io = threading.Lock()  # one sync at a time: records reach the file in put order
        self._fd = -1
        self._size = self._load()

    # ------------------------------------------------------------ state

    def get(self, group: str) -> dict | None:
        """The group's newest hard state (put, whether or not synced yet); None if it has none."""
        return self._states.get(group)

    def put(self, group: str, state: dict) -> int:
        """Record a new hard state for the group; durable after the next `sync()`, i.e. once `synced_seq`
        reaches the sequence number returned."""
        record = _encode({"group": group, "state": state})
        with self._lock:
            self._states[group] = state
            self._pending.append(record)
            self._put_seq += 1
            return self._put_seq

    def remove(self, group: str) -> None:
        """Forget the group (its replica is deleted); durable after the next `sync()`."""
        with self._lock:
            if self._states.pop(group, None) is not None:
                self._pending.append(_encode({"group": group, "removed": True}))
                self._put_seq += 1

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    @property
    def put_seq(self) -> int:
        """Puts and removes so far: everything put is durable once `synced_seq` reaches it."""
        return self._put_seq

    @property
    def groups(self) -> list[str]:
        return list(self._states)

    # ------------------------------------------------------------ durability

    def sync(self) -> None:
        """Write every record put so far and fsync (one fsync for all groups); compact if the file grew."""
        with self._io:
            with self._lock:
                records, self._pending = self._pending, []
                covered = self._put_seq
                live = self._compaction_snapshot(sum(len(r) for r in records))
            try:
                if live is not None:
                    self._rewrite(live)
                elif records:
                    if self._fd < 0:
                        self._open_for_append()
                    data = b"".join(records)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(self._fd, view):]
                    self._size += len(data)
                    fsync_file(self._fd, self.path)
            except BaseException:
                with self._lock:
                    self._pending[:0] = records  # not durable: the next sync writes them again
                raise
            self.synced_seq = covered

    def close(self) -> None:
        try:
            if self._pending:
                self.sync()
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    # ------------------------------------------------------------ private

    def _open_for_append(self) -> None:
        created = not os.path.exists(self.path)
        os.makedirs(self.directory, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if created:
            fsync_dir(self.directory)
            record_durable(self.path, 0)

    def _compaction_snapshot(self, adding: int) -> dict[str, dict] | None:
        """The live states to rewrite the file with, if it is due (called under _lock)."""
        size = self._size + adding
        if size <= self._compact_bytes or size <= 2 * 128 * (len(self._states) + 1):
            return None
        return dict(self._states)

    def _rewrite(self, live: dict[str, dict]) -> None:
        data = b"".join(_encode({"group": g, "state": s}) for g, s in live.items())
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fsync_file(fd, None)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.directory)
        record_durable(self.path, len(data))
        old, self._fd = self._fd, os.open(self.path, os.O_WRONLY | os.O_APPEND)
        if old >= 0:
            os.close(old)
        self._size = len(data)

    def _load(self) -> int:
        """Read the file into _states; cut a torn tail; returns the size kept."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return 0
        position = 0
        while position < len(data):
            record = _decode(data, position)
            if record is None:
                break
            doc, position = record
            if doc.get("removed"):
                self._states.pop(doc["group"], None)
            else:
                self._states[doc["group"]] = doc["state"]
        if position < len(data):
            if _decode_any_after(data, position):
                raise HardStateError(f"{self.path}: corrupt record at byte {position} followed by valid ones")
            with open(self.path, "r+b") as f:  # a torn tail: never synced, never relied upon
                f.truncate(position)
                fsync_file(f.fileno(), self.path)
        return position


def _encode(doc: dict) -> bytes:
    payload = orjson.dumps(doc)
    return _HEADER.pack(len(payload), crc32c(payload)) + payload


def _decode(data: bytes, position: int) -> tuple[dict, int] | None:
    """(document, next position) of the record at position; None if it is torn or corrupt."""
    end = position + _HEADER.size
    if end > len(data):
        return None
    length, checksum = _HEADER.unpack_from(data, position)
    if length > _MAX_RECORD or end + length > len(data):
        return None
    payload = data[end:end + length]
    if crc32c(payload) != checksum:
        return None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("group"), str):
        return None
    return doc, end + length


def _decode_any_after(data: bytes, position: int) -> bool:
    """Is there a valid record starting anywhere after a bad one (damage, not a torn tail)?"""
    for start in range(position + 1, len(data) - _HEADER.size):
        record = _decode(data, start)
        if record is not None and record[1] == len(data):
            return True
    return False
