"""Key -> partition mapping, identical to Kafka's Java client (part of the wire contract).

Clients and brokers must agree on which partition a key lands in, and so must
raftka and Kafka: a key produced through raftka lands on the same partition
number as with Kafka's ``DefaultPartitioner``/``BuiltInPartitioner``. The
broker imports this module too (the one sanctioned import from ``client`` into
``node``): it routes keyed records that arrive without a partition number.

``murmur2`` is ``org.apache.kafka.common.utils.Utils.murmur2`` (MurmurHash2,
seed 0x9747b28c, little-endian 4-byte blocks), returning Java's signed int.
``partition_for_key`` is ``toPositive(murmur2(key)) % num_partitions`` where
``toPositive(x) = x & 0x7fffffff``. Records without a key are not hashed; the
producer spreads them itself (round robin or sticky per batch).

Pure Python, tuned for the producer's per-record hot path: words are read with
one cached ``struct`` unpacker per key length and 32-bit arithmetic is masked
only where a shift needs the exact value.
"""

from __future__ import annotations

import struct

__all__ = ["SEED", "murmur2", "partition_for_key"]

SEED = 0x9747B28C
_MUL = 0x5BD1E995
_MASK = 0xFFFFFFFF
_CACHED_WORD_COUNTS = 64  # keys up to 256 bytes use a pre-built unpacker
_UNPACKERS = [struct.Struct(f"<{n}I").unpack_from for n in range(_CACHED_WORD_COUNTS + 1)]


def murmur2(data: bytes, _mul: int = _MUL, _mask: int = _MASK, _unpackers: list = _UNPACKERS) -> int:
    """Kafka's murmur2 of ``data`` as a signed 32-bit int (like Java's ``Utils.murmur2``)."""
    length = len(data)
    h = SEED ^ length
    words = length >> 2
    if words:
        if words <= _CACHED_WORD_COUNTS:
            blocks = _unpackers[words](data)
        else:
            blocks = struct.unpack_from(f"<{words}I", data)
        for k in blocks:
            k = k * _mul & _mask
            h = (h * _mul ^ (k ^ k >> 24) * _mul) & _mask
    tail = length & 3
    if tail:
        i = length - tail
        if tail == 3:
            h ^= data[i + 2] << 16
        if tail >= 2:
            h ^= data[i + 1] << 8
        h = (h ^ data[i]) * _mul & _mask
    h ^= h >> 13
    h = h * _mul & _mask
    return (h ^ h >> 15 ^ 0x80000000) - 0x80000000


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's Java client picks for a non-null ``key``."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions
