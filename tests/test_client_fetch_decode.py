"""Decoding the broker's raw fetch answers (RecordBatch v2 bytes) into ConsumerRecords."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftka.client.errors import ProtocolError
from raftka.client.fetcher import decode_batches
from raftka.storage import Record, encode_batch


def batch(base: int, values: list[bytes], **kw) -> bytes:
    return encode_batch([Record(b"k" + v, v, [("h", v)], 1000 + i) for i, v in enumerate(values)], base, **kw)


def test_records_are_decoded_with_offsets_keys_values_headers_timestamps():
    data = batch(5, [b"a", b"b"]) + batch(7, [b"c"])
    records = decode_batches(data, "t", 2, 5)
    assert [(r.offset, r.value, r.key, r.timestamp) for r in records] == [
        (5, b"a", b"ka", 1000), (6, b"b", b"kb", 1001), (7, b"c", b"kc", 1000)
    ]
    assert all(r.topic == "t" and r.partition == 2 for r in records)
    assert records[0].headers == [("h", b"a")]


def test_records_below_the_requested_offset_are_skipped():
    data = batch(0, [b"a", b"b", b"c"]) + batch(3, [b"d"])
    assert [r.offset for r in decode_batches(data, "t", 0, 2)] == [2, 3]
    assert decode_batches(data, "t", 0, 4) == []


def test_a_trailing_partial_batch_is_ignored_not_an_error():
    whole, cut = batch(0, [b"a"]), batch(1, [b"b" * 100])
    for keep in (1, 30, 61, 62, len(cut) - 1):
        assert [r.offset for r in decode_batches(whole + cut[:keep], "t", 0, 0)] == [0]


def test_empty_answer_means_no_records():
    assert decode_batches(b"", "t", 0, 0) == []


def test_a_corrupt_batch_is_a_protocol_error_never_served():
    data = bytearray(batch(0, [b"hello"]))
    data[-1] ^= 0xFF
    with pytest.raises(ProtocolError, match="corrupt record batch"):
        decode_batches(bytes(data), "t", 0, 0)


@given(
    st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=40),
)
def test_decoding_concatenated_batches_returns_exactly_the_records_from_start(batches, start):
    data, expected, offset = b"", [], 0
    for values in batches:
        data += batch(offset, values)
        expected += [(offset + i, v) for i, v in enumerate(values)]
        offset += len(values)
    got = [(r.offset, r.value) for r in decode_batches(data, "t", 0, start)]
    assert got == [e for e in expected if e[0] >= start]
