"""Kafka-compatible murmur2 partitioner: known vectors and a literal Java transcription."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftka.client.partitioner import murmur2, partition_for_key


def java_murmur2(data: bytes) -> int:
    """Line-by-line transcription of Kafka's Utils.murmur2 with explicit int32 wrap-around."""

    def i32(x: int) -> int:
        x &= 0xFFFFFFFF
        return x - (1 << 32) if x & 0x80000000 else x

    def ushr(x: int, n: int) -> int:  # Java's >>>
        return (x & 0xFFFFFFFF) >> n

    length = len(data)
    seed = i32(0x9747B28C)
    m = 0x5BD1E995
    r = 24
    h = i32(seed ^ length)
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (
            (data[i4] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = i32(k)
        k = i32(k * m)
        k = i32(k ^ ushr(k, r))
        k = i32(k * m)
        h = i32(h * m)
        h = i32(h ^ k)
    rest = length % 4
    if rest == 3:
        h = i32(h ^ ((data[(length & ~3) + 2] & 0xFF) << 16))
    if rest >= 2:
        h = i32(h ^ ((data[(length & ~3) + 1] & 0xFF) << 8))
    if rest >= 1:
        h = i32(h ^ (data[length & ~3] & 0xFF))
        h = i32(h * m)
    h = i32(h ^ ushr(h, 13))
    h = i32(h * m)
    h = i32(h ^ ushr(h, 15))
    return h


# raftka design vectors: partition for N = 1000.
DESIGN_VECTORS = [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566)]

# Kafka's own clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java#testMurmur2.
KAFKA_UTILS_TEST_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

# Akka's Murmur2Spec, values produced by Kafka's implementation.
AKKA_VECTORS = [
    (b"1", -1993445489),
    (b"12", 126087238),
    (b"123", -267702483),
    (b"1234", -1614185708),
    (b"12345", -1188365604),
]


@pytest.mark.parametrize(("key", "partition"), DESIGN_VECTORS)
def test_design_vectors(key, partition):
    assert partition_for_key(key, 1000) == partition


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST_VECTORS + AKKA_VECTORS)
def test_kafka_hash_vectors(key, expected):
    assert murmur2(key) == expected
    assert java_murmur2(key) == expected


def test_long_keys_beyond_cached_unpackers():
    key = bytes(range(256)) * 3 + b"xyz"
    assert murmur2(key) == java_murmur2(key)


@given(st.binary(max_size=300))
def test_matches_java_transcription(key):
    assert murmur2(key) == java_murmur2(key)


@given(st.binary(max_size=40), st.integers(min_value=1, max_value=100_000))
def test_partition_is_in_range_and_matches_java(key, n):
    p = partition_for_key(key, n)
    assert 0 <= p < n
    assert p == (java_murmur2(key) & 0x7FFFFFFF) % n


def test_result_is_a_signed_int32():
    values = [murmur2(bytes([i, i * 7 % 256, 3])) for i in range(256)]
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values) and any(v > 0 for v in values)


def test_accepts_bytearray_and_memoryview():
    assert murmur2(bytearray(b"foobar")) == murmur2(memoryview(b"foobar")) == -790332482


@pytest.mark.parametrize("n", [0, -3])
def test_rejects_non_positive_partition_count(n):
    with pytest.raises(ValueError, match="num_partitions"):
        partition_for_key(b"k", n)
