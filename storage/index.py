"""Sparse offset index of one segment: relative offset -> byte position of a batch start.

Held in memory as two parallel uint32 arrays; an entry is added every index_interval_bytes of
appended data, so a lookup lands at most one interval (plus one batch) before the wanted
batch. A closed segment's index is stored in its `<base_offset:020d>.index` file::

    entries   N x (relative offset uint32, position uint32), big-endian
    trailer   next_offset int64, log_size uint64, max_timestamp int64, entry_count uint32,
              crc uint32 (CRC-32C of entries + the four trailer fields before it), magic b"RKIX"

The trailer also carries the segment facts needed without reading the log (its next offset
for continuity checks, its max timestamp for retention). A trailer that does not match the
segment file (CRC, size, entry count) makes the index "damaged"; the caller rebuilds it.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_right
from typing import NamedTuple

from crc32c import crc32c

INDEX_MAGIC = b"RKIX"
_TRAILER = struct.Struct(">qQqII4s")
_TRAILER_CRC_OFFSET = 28  # the CRC covers the trailer bytes before this offset
_BIG_ENDIAN = sys.byteorder == "big"


class IndexTrailer(NamedTuple):
    next_offset: int
    log_size: int
    max_timestamp: int
    entry_count: int


class OffsetIndex:
    """Sparse mapping of relative offsets to file positions, sorted by both."""

    __slots__ = ("offsets", "positions")

    def __init__(self, offsets: array | None = None, positions: array | None = None) -> None:
        self.offsets = offsets if offsets is not None else array("I")
        self.positions = positions if positions is not None else array("I")

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, relative_offset: int, position: int) -> None:
        self.offsets.append(relative_offset)
        self.positions.append(position)

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch starting at or before relative_offset (0 if none)."""
        slot = bisect_right(self.offsets, relative_offset)
        return self.positions[slot - 1] if slot else 0

    def encode(self, trailer: IndexTrailer) -> bytes:
        """The index file content for a closed segment described by trailer."""
        pairs = array("I", bytes(8 * len(self.offsets)))
        pairs[0::2] = self.offsets
        pairs[1::2] = self.positions
        if not _BIG_ENDIAN:
            pairs.byteswap()
        entries = pairs.tobytes()
        fields = _TRAILER.pack(trailer.next_offset, trailer.log_size, trailer.max_timestamp, len(self), 0, INDEX_MAGIC)
        crc = crc32c(fields[:_TRAILER_CRC_OFFSET], crc32c(entries))
        return entries + fields[:_TRAILER_CRC_OFFSET] + struct.pack(">I", crc) + INDEX_MAGIC

    @classmethod
    def decode(cls, data: bytes) -> tuple[OffsetIndex, IndexTrailer]:
        """Parse an index file; raises ValueError if it is damaged in any way."""
        if len(data) < _TRAILER.size:
            raise ValueError(f"index file of {len(data)} bytes is shorter than its trailer")
        entries_size = len(data) - _TRAILER.size
        next_offset, log_size, max_ts, count, crc, magic = _TRAILER.unpack_from(data, entries_size)
        if magic != INDEX_MAGIC:
            raise ValueError("index trailer magic missing")
        if count * 8 != entries_size:
            raise ValueError(f"index holds {entries_size} entry bytes but its trailer says {count} entries")
        with memoryview(data) as view:
            expected = crc32c(view[entries_size : entries_size + _TRAILER_CRC_OFFSET], crc32c(view[:entries_size]))
        if crc != expected:
            raise ValueError("index CRC mismatch")
        pairs = array("I")
        pairs.frombytes(data[:entries_size])
        if not _BIG_ENDIAN:
            pairs.byteswap()
        return cls(pairs[0::2], pairs[1::2]), IndexTrailer(next_offset, log_size, max_ts, count)
