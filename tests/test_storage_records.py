"""RecordBatch v2 codec: Kafka byte compatibility, round trips, header access, garbage resistance."""

from __future__ import annotations

import os
import struct

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftka.storage import (
    CorruptBatchError,
    InvalidRecordError,
    Record,
    encode_batch,
    iter_batches,
    iter_records,
    read_batch_header,
    validate_batch,
)

INT64 = st.integers(-(1 << 62), (1 << 62))
TIMESTAMPS = st.integers(0, 1 << 45) | st.none()
HEADERS = st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8) | st.none()), max_size=3)
RECORDS = st.builds(Record, st.binary(max_size=40) | st.none(), st.binary(max_size=300) | st.none(), HEADERS, TIMESTAMPS)


def fix_crc(batch: bytearray) -> bytearray:
    """Recompute the CRC after editing CRC-covered bytes, so the record parser itself is exercised."""
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    return batch


def test_matches_a_batch_written_by_kafka():
    # First batch of a Kafka 3.x KRaft __cluster_metadata log: one FeatureLevelRecord
    # (metadata.version = 20), written by Kafka itself; its CRC is 0xb069457c.
    value = bytes([1, 0x0C, 0, 0x11]) + b"metadata.version" + bytes([0, 0x14, 0])
    timestamp = 0x0191E05AF818
    batch = encode_batch([Record(None, value, (), timestamp)], 1, partition_leader_epoch=1)
    expected_header = bytes.fromhex(
        "0000000000000001" "0000004f" "00000001" "02" "b069457c" "0000" "00000000"
        "00000191e05af818" "00000191e05af818" "ffffffffffffffff" "ffff" "ffffffff" "00000001"
    )
    assert batch[:61] == expected_header
    assert batch[61:66] == bytes([0x3A, 0, 0, 0, 1])  # length 29, attributes, ts delta, offset delta, null key
    assert len(batch) == 12 + 0x4F
    [record] = iter_records(batch)
    assert record == (1, timestamp, None, value, [])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(RECORDS, min_size=1, max_size=30),
    st.integers(0, 1 << 50),
    st.integers(-1, 1 << 40),
    st.integers(-1, 32767),
    st.integers(-1, 1 << 30),
    st.integers(-1, 1 << 30),
)
def test_round_trip(records, base_offset, producer_id, producer_epoch, base_sequence, epoch):
    now = 1_700_000_000_000
    batch = encode_batch(
        records, base_offset, producer_id=producer_id, producer_epoch=producer_epoch,
        base_sequence=base_sequence, partition_leader_epoch=epoch, timestamp_ms=now,
    )
    header = validate_batch(batch)
    timestamps = [now if r.timestamp is None else r.timestamp for r in records]
    assert header.size == len(batch)
    assert (header.base_offset, header.last_offset, header.record_count) == (base_offset, base_offset + len(records) - 1, len(records))
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (producer_id, producer_epoch, base_sequence)
    assert header.partition_leader_epoch == epoch
    assert (header.base_timestamp, header.max_timestamp) == (timestamps[0], max(timestamps))
    decoded = list(iter_records(batch))
    assert [(d.offset, d.timestamp, d.key, d.value, d.headers) for d in decoded] == [
        (base_offset + i, ts, r.key, r.value, [tuple(h) for h in r.headers]) for i, (r, ts) in enumerate(zip(records, timestamps))
    ]


@pytest.mark.parametrize("size", [0, 1, 63, 64, 8191, 8192, 16383, 16384, 70000])
def test_lengths_around_varint_and_cache_boundaries(size):
    records = [Record(b"k" * size, b"v" * size, [("h" * size, b"x" * size)], 5), Record(None, b"", (), -(1 << 40))]
    batch = encode_batch(records, 3)
    got = list(iter_records(batch))
    assert got[0] == (3, 5, b"k" * size, b"v" * size, [("h" * size, b"x" * size)])
    assert got[1] == (4, -(1 << 40), None, b"", [])
    assert read_batch_header(batch).max_timestamp == 5


def test_records_beyond_the_precomputed_offset_deltas_encode_correctly():
    records = [Record(None, b"%d" % i, (), 100 + (i % 3)) for i in range(20000)]
    decoded = list(iter_records(encode_batch(records)))
    assert [(r.offset, r.timestamp, r.value) for r in decoded] == [(i, 100 + i % 3, b"%d" % i) for i in range(20000)]


def test_base_offset_is_outside_the_crc_so_it_can_be_patched():
    batch = bytearray(encode_batch([Record(b"a", b"b"), Record(b"c", b"d")], 0))
    batch[0:8] = (123456).to_bytes(8, "big")
    assert validate_batch(batch).base_offset == 123456
    assert [r.offset for r in iter_records(batch)] == [123456, 123457]


def test_iter_records_spans_batches_and_skips_below_start_offset():
    data = encode_batch([Record(None, b"0"), Record(None, b"1")], 10) + encode_batch([Record(None, b"2")], 12)
    assert [r.offset for r in iter_records(data, start_offset=11)] == [11, 12]
    assert [h.base_offset for h, _ in iter_batches(data)] == [10, 12]


def test_log_append_time_batches_report_the_batch_timestamp():
    batch = bytearray(encode_batch([Record(None, b"a", (), 1), Record(None, b"b", (), 2)]))
    struct.pack_into(">h", batch, 21, 0x08)
    struct.pack_into(">q", batch, 35, 99)
    assert [r.timestamp for r in iter_records(fix_crc(batch))] == [99, 99]


@pytest.mark.parametrize(
    "records, message",
    [
        ([], "at least one record"),
        ([Record("text", b"v")], "record 0"),
        ([Record(None, b"v"), Record(None, "text")], "record 1"),
        ([Record(None, b"v", [(b"bytes-key", b"v")])], "record 0"),
        ([Record(None, b"v", (), 1 << 70)], "out of range"),
        ([Record(None, b"v", (), 0), Record(None, b"v", (), 1 << 70)], "record 1"),
        ([("not", "a record")], "record 0"),
    ],
)
def test_bad_records_are_rejected_clearly(records, message):
    with pytest.raises(InvalidRecordError, match=message):
        encode_batch(records)


def test_corruptions_are_named():
    batch = encode_batch([Record(b"k", b"v")])
    with pytest.raises(CorruptBatchError, match="CRC"):
        validate_batch(batch[:-1] + b"X")
    with pytest.raises(CorruptBatchError, match="truncated"):
        validate_batch(batch[:-1])
    with pytest.raises(CorruptBatchError, match="magic"):
        read_batch_header(batch[:16] + b"\x01" + batch[17:])
    with pytest.raises(CorruptBatchError, match="after the batch"):
        validate_batch(batch + b"\x00")
    compressed = bytearray(batch)
    struct.pack_into(">h", compressed, 21, 1)
    with pytest.raises(CorruptBatchError, match="compressed"):
        validate_batch(fix_crc(compressed))
    wrong_delta = bytearray(batch)
    wrong_delta[64] = 2  # offsetDelta of record 0 (zigzag 1)
    with pytest.raises(CorruptBatchError, match="offset delta"):
        validate_batch(fix_crc(wrong_delta))
    assert validate_batch(fix_crc(wrong_delta), records=False).record_count == 1


def _decode_everything(data: bytes) -> None:
    for decoder in (lambda: validate_batch(data), lambda: read_batch_header(data), lambda: list(iter_records(data)), lambda: list(iter_batches(data))):
        try:
            decoder()
        except CorruptBatchError:
            pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_decoders_survive_random_bytes(data):
    _decode_everything(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(RECORDS, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 10_000),
    st.booleans(),
)
def test_decoders_survive_mutated_batches_with_valid_crc(records, edits, cut, recompute_crc):
    batch = bytearray(encode_batch(records, timestamp_ms=1))
    for position, value in edits:
        batch[position % len(batch)] = value
    start = max(cut % (len(batch) + 1), 21)
    del batch[start : start + cut % 3]
    if recompute_crc and len(batch) > 21:
        fix_crc(batch)
    _decode_everything(bytes(batch))
    _agrees_with_the_reference(bytes(batch))


TINY_RECORDS = st.builds(
    Record, st.binary(max_size=2) | st.none(), st.binary(max_size=2) | st.none(),
    st.lists(st.tuples(st.text(max_size=2), st.binary(max_size=2) | st.none()), max_size=2), st.integers(-2, 2) | st.none(),
)


@settings(max_examples=800, deadline=None)
@given(
    st.lists(TINY_RECORDS, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(61, 200), st.integers(0, 255)), min_size=1, max_size=2),
)
def test_record_fields_edited_under_a_valid_crc_decode_as_the_reference_says(records, edits):
    # tiny records: nearly every edited byte is a length, delta, count or header field
    batch = bytearray(encode_batch(records, timestamp_ms=0))
    for position, value in edits:
        batch[61 + position % (len(batch) - 61)] = value
    _agrees_with_the_reference(bytes(fix_crc(batch)))


def _agrees_with_the_reference(batch: bytes) -> None:
    try:
        expected = reference_decode(batch)
    except Malformed:
        expected = None
    try:
        decoded = [tuple(r) for r in iter_records(batch)]
    except CorruptBatchError:
        decoded = None
    assert decoded == expected
    # validate_batch's lighter walk accepts exactly what the decoder accepts
    try:
        validate_batch(batch)
        valid = True
    except CorruptBatchError:
        valid = False
    assert valid == (decoded is not None)


class Malformed(Exception):
    pass


def reference_decode(batch: bytes) -> list[tuple]:
    """The record grammar of one batch, written for reading rather than speed (the test's model).

    Kafka's DefaultRecord rules: a negative key, value or header value length is null; a header
    name is non-null UTF-8; a record fills exactly its length; the records fill the batch. Two
    rules are raftka's: a record's offset delta is its index (dense offsets), and the record
    attributes are read as a varint, as aiokafka's parser does (Kafka writes an int8 that is
    always 0: the same byte).
    """
    if len(batch) < 61 or batch[16] != 2 or crc32c(batch[21:]) != struct.unpack_from(">I", batch, 17)[0]:
        raise Malformed("header")
    base_offset, batch_length = struct.unpack_from(">qi", batch)
    attributes, last_delta, base_ts, max_ts = struct.unpack_from(">hiqq", batch, 21)
    count = struct.unpack_from(">i", batch, 57)[0]
    if batch_length + 12 != len(batch) or base_offset < 0 or attributes & 7 or count < 1 or last_delta != count - 1:
        raise Malformed("header fields")
    pos, end = 61, len(batch)

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise Malformed("varint")
            byte = batch[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                value &= (1 << 64) - 1
                return (value >> 1) ^ -(value & 1)

    def nullable_bytes() -> bytes | None:
        nonlocal pos
        size = varint()
        if size < 0:
            return None
        if pos + size > end:
            raise Malformed("bytes")
        pos += size
        return batch[pos - size : pos]

    records = []
    for index in range(count):
        length = varint()
        start = pos
        varint()  # attributes
        delta = varint()  # int64 arithmetic, as in Kafka and aiokafka
        timestamp = max_ts if attributes & 8 else (base_ts + delta + (1 << 63)) % (1 << 64) - (1 << 63)
        if varint() != index:
            raise Malformed("offset delta")
        key, value = nullable_bytes(), nullable_bytes()
        header_count = varint()
        if header_count < 0:
            raise Malformed("header count")
        headers = []
        for _ in range(header_count):
            name = nullable_bytes()
            if name is None:
                raise Malformed("null header name")
            try:
                headers.append((name.decode("utf-8"), nullable_bytes()))
            except UnicodeDecodeError as exc:
                raise Malformed("header name") from exc
        if pos - start != length:
            raise Malformed("record length")
        records.append((base_offset + index, timestamp, key, value, headers))
    if pos != end:
        raise Malformed("bytes after the records")
    return records


@settings(max_examples=100, deadline=None)
@given(st.lists(RECORDS, min_size=1, max_size=20), st.integers(0, 1 << 45))
def test_the_table_driven_encoder_matches_the_general_one(records, now):
    from raftka.storage.records import _record_parts, _record_parts_cached

    base_ts = now if records[0].timestamp is None else records[0].timestamp
    fast, fast_max = _record_parts_cached(records, base_ts, now)
    general, general_max = _record_parts(records, base_ts, now)
    assert (b"".join(fast), fast_max) == (b"".join(general), general_max)


def test_aiokafkas_pure_python_fallback_decodes_the_same_records():
    # Where no compiled aiokafka wheel fits the platform, its pure-Python parser reads the records: same answers
    import subprocess
    import sys

    script = (
        "from raftka.storage import Record, encode_batch, iter_records, validate_batch\n"
        "from raftka.storage.records import DefaultRecordBatch\n"
        "assert DefaultRecordBatch.__name__ == '_DefaultRecordBatchPy', DefaultRecordBatch\n"
        "batch = encode_batch([Record(b'k', b'v', [('h', None)], -1), Record(None, b'w', (), 5)], 7)\n"
        "validate_batch(batch)\n"
        "print([tuple(r) for r in iter_records(batch)])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(7, -1, b'k', b'v', [('h', None)]), (8, 5, None, b'w', [])]"
