"""Producer batching: linger, batch_size, one-in-flight readiness, flush, split; record size estimate."""

from raftka.client.accumulator import BATCH_OVERHEAD, RecordAccumulator, record_size
from raftka.client.structs import TopicPartition
from raftka.storage import Record, encode_batch

TP = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


def rec(n: int = 10) -> tuple[Record, int]:
    record = Record(None, b"x" * n, [], 0)
    return record, record_size(record.key, record.value, record.headers)


def test_record_size_is_an_upper_bound_of_the_encoded_size():
    cases = [
        Record(None, None, [], 0),
        Record(b"k" * 300, b"v" * 70_000, [("h", b"x" * 200), ("\u00e9t\u00e9", None)], 0),
        Record(b"", b"", [], 0),
    ]
    for r in cases:
        encoded = len(encode_batch([r], timestamp_ms=0)) - BATCH_OVERHEAD
        assert encoded <= record_size(r.key, r.value, r.headers) < encoded + 64


def test_first_record_waits_for_linger_then_becomes_ready():
    acc = RecordAccumulator(batch_size=1000, linger_s=0.005)
    record, size = rec()
    assert acc.append(TP, record, size, "f0", now=10.0) is True  # new batch: sender must schedule its linger
    assert acc.append(TP, record, size, "f1", now=10.001) is False
    ready, wait = acc.ready(10.002, busy=set())
    assert ready == [] and abs(wait - 0.003) < 1e-9
    ready, wait = acc.ready(10.005, busy=set())
    assert ready == [TP] and wait is None
    batch = acc.pop(TP)
    assert batch.futures == ["f0", "f1"] and len(batch) == 2 and not acc


def test_full_batch_is_ready_before_linger_and_overflow_starts_a_new_batch():
    record, size = rec(100)
    acc = RecordAccumulator(batch_size=BATCH_OVERHEAD + 2 * size, linger_s=60)
    acc.append(TP, record, size, 0, now=0)
    assert acc.append(TP, record, size, 1, now=0) is True  # reached batch_size
    assert acc.ready(0, busy=set())[0] == [TP]
    assert acc.append(TP, record, size, 2, now=0) is True  # did not fit: second batch
    first = acc.pop(TP)
    second = acc.pop(TP)
    assert first.futures == [0, 1] and second.futures == [2]


def test_a_record_larger_than_batch_size_travels_alone():
    small, small_size = rec(10)
    big, big_size = rec(5000)
    acc = RecordAccumulator(batch_size=1000, linger_s=60)
    acc.append(TP, small, small_size, "small", now=0)
    acc.append(TP, big, big_size, "big", now=0)
    acc.append(TP, small, small_size, "after", now=0)
    assert [b.futures for b in acc.batches()] == [["small"], ["big"], ["after"]]


def test_a_queued_batch_behind_the_head_makes_the_head_ready():
    record, size = rec(10)
    acc = RecordAccumulator(batch_size=BATCH_OVERHEAD + size, linger_s=60)
    acc.append(TP, record, size, 0, now=0)
    acc.append(TP, record, size, 1, now=0)
    assert acc.ready(0, busy=set())[0] == [TP]


def test_busy_partitions_are_never_ready_so_one_batch_is_in_flight_per_partition():
    record, size = rec()
    acc = RecordAccumulator(batch_size=1000, linger_s=0)
    acc.append(TP, record, size, 0, now=0)
    acc.append(TP1, record, size, 1, now=0)
    ready, wait = acc.ready(1, busy={TP})
    assert ready == [TP1] and wait is None


def test_flushing_makes_every_batch_ready_at_once():
    record, size = rec()
    acc = RecordAccumulator(batch_size=1000, linger_s=60)
    acc.append(TP, record, size, 0, now=0)
    assert acc.ready(0, busy=set())[0] == []
    acc.flushing += 1
    assert acc.ready(0, busy=set())[0] == [TP]


def test_serials_order_batches_and_split_halves_keep_the_parent_serial_and_go_first():
    record, size = rec(10)
    acc = RecordAccumulator(batch_size=BATCH_OVERHEAD + 3 * size, linger_s=0)
    for i in range(4):
        acc.append(TP, record, size, i, now=0)
    mark = acc.next_serial
    assert mark == 2
    head = acc.pop(TP)
    first, second = head.split()
    assert (first.futures, second.futures) == ([0], [1, 2])
    assert first.serial == second.serial == head.serial < mark
    assert first.payload is None and second.payload is None
    acc.reenqueue_front([first, second])
    assert [b.futures for b in acc.batches()] == [[0], [1, 2], [3]]


def test_drain_all_empties_the_accumulator():
    record, size = rec()
    acc = RecordAccumulator(batch_size=1000, linger_s=0)
    acc.append(TP, record, size, 0, now=0)
    acc.append(TP1, record, size, 1, now=0)
    assert len(acc.drain_all()) == 2 and not acc and list(acc.batches()) == []
