"""Helpers shared by the partition state machine tests: commands, a journal list, log dumps, I/O faults."""

from __future__ import annotations

import resource
import signal
from contextlib import contextmanager

from raftka.raft.messages import Entry
from raftka.raft.partition import DeleteRecordsResult, PartitionStateMachine, encode_produce
from raftka.storage import Record, encode_batch


def batch(values, pid=-1, epoch=-1, seq=-1) -> bytes:
    records = [Record(None, v, (), 1000) for v in values]
    return encode_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def produce(values, pid=-1, epoch=-1, seq=-1) -> bytes:
    return encode_produce(batch(values, pid, epoch, seq))


def same_entry(a: Entry, b: Entry) -> bool:
    """Same Raft entry; a data entry read back from the partition log differs only in its batch's baseOffset and
    partitionLeaderEpoch (not covered by the batch CRC)."""
    if a.term != b.term or a.kind != b.kind:
        return False
    if a.data[:1] == b"P" and len(a.data) > 62:
        return a.data[17:] == b.data[17:]
    return a.data == b.data


def summary(result) -> tuple | None:
    """A ProduceResult as comparable data: (base_offset, last_offset, duplicate, error code); a DeleteRecordsResult
    as ("deleted", deleted_before, error code)."""
    if result is None:
        return None
    if isinstance(result, DeleteRecordsResult):
        return ("deleted", result.deleted_before, int(result.error))
    return (result.base_offset, result.last_offset, result.duplicate, int(result.error))


def values_of(sm: PartitionStateMachine) -> list[tuple[int, bytes]]:
    records = sm.log.read_records(sm.log_start_offset, max_records=1 << 30, max_bytes=1 << 30)
    return [(r.offset, r.value) for r in records]


def raw_log(sm: PartitionStateMachine) -> bytes:
    """The stored batch bytes from the log start to the high watermark."""
    parts, offset = [], sm.log_start_offset
    while offset < sm.high_watermark:
        result = sm.log.read(offset, 1 << 20)
        parts.append(result.data)
        offset = result.next_offset
    return b"".join(parts)


class Journal:
    """The committed Raft entries, as the host would replay them: (index, term, data)."""

    def __init__(self):
        self.entries: list[tuple[int, int, bytes]] = []

    def add(self, data: bytes, term: int = 1) -> tuple[int, int, bytes]:
        entry = (len(self.entries) + 1, term, data)
        self.entries.append(entry)
        return entry

    def apply_all(self, sm, start: int = 1, stop: int | None = None) -> list:
        return [summary(sm.apply(*e)) for e in self.entries[start - 1:stop]]


def stream(leader: PartitionStateMachine, follower: PartitionStateMachine, *, stop_after: int | None = None,
           between_chunks=None) -> tuple[bool | None, list[bytes]]:
    """Run the snapshot stream as raft.core does; (finish_install's answer or None if stopped early, chunks)."""
    cursor = follower.begin_install()
    chunks = []
    while True:
        data, done, index = leader.read_chunk(cursor)
        chunks.append(data)
        cursor = follower.install_chunk(data)
        if done:
            return follower.finish_install(index, leader.applied_term), chunks
        if stop_after is not None and len(chunks) >= stop_after:
            return None, chunks
        if between_chunks is not None:
            between_chunks()


@contextmanager
def file_size_limit(limit: int):
    """Writes that would grow a file beyond `limit` bytes fail with EFBIG (a real I/O error)."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
