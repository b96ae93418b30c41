"""The Python client against real 3-broker clusters (LocalCluster: real processes, sockets, disks)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest
from client_ports import closed_port

from raftka.client import Admin, Consumer, Producer, TopicPartition
from raftka.client.aio import AIOConsumer, AIOProducer
from raftka.client.cluster import Cluster, topic_path
from raftka.client.connection import BATCH_CONTENT_TYPE
from raftka.client.errors import (
    InvalidReplicationFactorError,
    OutOfOrderSequenceError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    TopicNotFoundError,
)
from raftka.client.partitioner import partition_for_key
from raftka.storage import Record, encode_batch

devcluster = pytest.importorskip("raftka.client.devcluster", reason="raftka.client.devcluster (LocalCluster) is not written yet")
LocalCluster = devcluster.LocalCluster

pytestmark = pytest.mark.timeout(180)

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 300, "rebalance_timeout_ms": 10_000}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(brokers=3, data_dir=tmp_path_factory.mktemp("client-cluster"), election_timeout_ms=300) as c:
        yield c


@pytest.fixture(scope="module")
def admin(cluster):
    with Admin(cluster.bootstrap) as a:
        yield a


def read_all(cluster, topic: str, partitions: int, expected: int, timeout: float = 60) -> list:
    """Every record of the topic, by manual assignment from the beginning."""
    records = []
    with Consumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            records += consumer.poll(500, 10_000)
        records += consumer.poll(300)  # nothing beyond what is expected
    return records


# -- producer ----------------------------------------------------------------------------


def test_100k_keyed_records_each_key_in_one_partition_in_send_order(cluster, admin):
    admin.create_topic("keyed", partitions=6)
    keys = [f"key-{k}".encode() for k in range(500)]
    sent = []
    with Producer(cluster.bootstrap) as producer:
        for i in range(100_000):
            key = keys[i % len(keys)]
            sent.append((key, producer.send("keyed", b"%d" % i, key=key)))
        producer.flush()
        metadata = {(key, int(f.result().offset), f.result().partition) for key, f in sent}
    assert len(metadata) == 100_000

    records = read_all(cluster, "keyed", 6, 100_000)
    assert len(records) == 100_000
    assert {(r.key, r.offset, r.partition) for r in records} == metadata  # futures told the truth
    by_key = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert r.partition == partition_for_key(r.key, 6)
        by_key[r.key].append(int(r.value))
    for key, values in by_key.items():
        assert values == sorted(values) and len(values) == 200, key


def test_keyless_records_fill_one_partition_for_a_mebibyte_then_move_on(cluster, admin):
    """A switch of partitions costs raftka a request and a Raft round (routing's docstring): by default a
    producer stays on one partition for 1 MiB of keyless records, four default batches, not one."""
    admin.create_topic("keyless", partitions=4)
    value = b"v" * 1_000
    with Producer(cluster.bootstrap) as producer:
        first = [producer.send("keyless", value) for _ in range(900)]  # ~0.9 MB: still the first partition
        producer.flush()
        later = [producer.send("keyless", value) for _ in range(2_000)]
        producer.flush()
    with Producer(cluster.bootstrap, sticky_partition_bytes=20_000) as producer:
        short = [producer.send("keyless", value) for _ in range(200)]
        producer.flush()
    assert len({f.result().partition for f in first}) == 1
    assert len({f.result().partition for f in first + later}) > 1  # moved on after about 1 MiB
    assert len({f.result().partition for f in short}) > 1  # ~200 KB in 20 KB sticks


def test_leader_killed_mid_stream_no_loss_no_duplicates_order_per_key(tmp_path):
    """Producing and consuming at once while the leader of partition 0 is killed with SIGKILL."""
    with LocalCluster(brokers=3, data_dir=tmp_path, election_timeout_ms=300) as cluster:
        cluster.create_topic("failover", partitions=3)
        victim = cluster.leader_of("failover", 0)
        total, kill_at = 30_000, 8_000
        live: list = []
        stop = threading.Event()

        def consume_live():
            with Consumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest") as consumer:
                consumer.assign([TopicPartition("failover", p) for p in range(3)])
                while not stop.is_set() and len(live) < total:
                    live.extend(consumer.poll(200))

        reader = threading.Thread(target=consume_live)
        reader.start()
        futures = []
        try:
            with Producer(cluster.bootstrap, delivery_timeout_ms=60_000, request_timeout_ms=5_000) as producer:
                for i in range(total):
                    key = b"k%d" % (i % 60)
                    futures.append((key, i, producer.send("failover", b"%d" % i, key=key)))
                    if i == kill_at:
                        cluster.kill(victim)
                    if i % 2000 == 0:
                        time.sleep(0.05)  # spread the stream over the failover
                producer.flush()
                acked = {(key, i): f.result() for key, i, f in futures}  # every record acknowledged
            reader.join(60)
        finally:
            stop.set()
            reader.join()
        records = read_all(cluster, "failover", 3, total)
    assert sorted(int(r.value) for r in records) == list(range(total))  # no loss, no duplicates
    for r in records:
        md = acked[(r.key, int(r.value))]
        assert (md.partition, md.offset) == (r.partition, r.offset)
    per_key = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_key[r.key].append(int(r.value))
    assert all(values == sorted(values) for values in per_key.values())
    for p in range(3):  # the live reader saw every partition in order, without gaps, across the failover
        offsets = [r.offset for r in live if r.partition == p]
        assert offsets == list(range(len(offsets))) and len(offsets) == sum(1 for r in records if r.partition == p)


def test_the_idempotence_contract_the_producer_relies_on(cluster, admin):
    """A retry resends identical bytes: acknowledged with the original offsets, stored once; a gap in the
    sequence is refused (the producer then renumbers under a new producer id)."""
    admin.create_topic("dedup", partitions=1)

    async def go():
        client = Cluster(cluster.bootstrap)
        try:
            identity = (await client.request_coordinator("POST", "/producers", json={})).json()
            pid, epoch = identity["producer_id"], identity["producer_epoch"]
            batch = encode_batch([Record(None, b"a", [], None), Record(None, b"b", [], None)],
                                 producer_id=pid, producer_epoch=epoch, base_sequence=0)

            async def send(data):
                path = topic_path("dedup", 0, "/batch")
                return (await client.request_partition("dedup", 0, "POST", path, data=data,
                                                       content_type=BATCH_CONTENT_TYPE)).json()

            first, again = await send(batch), await send(batch)
            gap = encode_batch([Record(None, b"c", [], None)], producer_id=pid, producer_epoch=epoch, base_sequence=5)
            with pytest.raises(OutOfOrderSequenceError):
                await send(gap)
            return first, again
        finally:
            await client.close()

    first, again = asyncio.run(go())
    assert (first["base_offset"], first["last_offset"], first["duplicate"]) == (0, 1, False)
    assert (again["base_offset"], again["last_offset"], again["duplicate"]) == (0, 1, True)
    assert [r.value for r in read_all(cluster, "dedup", 1, 2)] == [b"a", b"b"]


def test_batches_too_large_for_the_topic_are_split_and_an_oversized_record_fails_alone(cluster, admin):
    admin.create_topic("small-msgs", partitions=1, configs={"max.message.bytes": 20_000})
    with Producer(cluster.bootstrap, linger_ms=50) as producer:
        ok = [producer.send("small-msgs", b"x" * 1_000) for _ in range(100)]  # ~100 KB in one batch
        producer.flush()
        too_big = producer.send("small-msgs", b"y" * 30_000)
        producer.flush()
        offsets = [f.result().offset for f in ok]
        with pytest.raises(RecordTooLargeError):
            too_big.result()
        after = producer.send("small-msgs", b"z").result(timeout=30)
    assert offsets == list(range(100))
    assert after.offset == 100  # the failed record left no gap and no stuck sequence


def test_a_changed_max_message_bytes_applies_to_the_next_batches(cluster, admin):
    """The leader keeps the topic's limit between produces; a config change must still reach it."""
    admin.create_topic("limit-changes", partitions=1, configs={"max.message.bytes": 20_000})

    def accepted(size: int) -> bool:
        try:
            producer.send("limit-changes", b"v" * size).result(timeout=30)
            return True
        except RecordTooLargeError:
            return False

    def eventually(size: int, outcome: bool) -> None:
        deadline = time.monotonic() + 15
        while accepted(size) is not outcome:
            assert time.monotonic() < deadline, f"a {size} B record is still {'refused' if outcome else 'accepted'}"
            time.sleep(0.2)

    with Producer(cluster.bootstrap) as producer:
        assert accepted(15_000)
        admin.alter_configs("limit-changes", {"max.message.bytes": 10_000})
        eventually(15_000, False)
        admin.alter_configs("limit-changes", {"max.message.bytes": 40_000})
        eventually(30_000, True)


def test_unknown_topic_fails_the_record_with_suggestions(cluster, admin):
    admin.create_topic("payments", partitions=1)
    with Producer(cluster.bootstrap, max_block_ms=1_000) as producer:
        future = producer.send("paymnets", b"x")
        with pytest.raises(TopicNotFoundError) as info:
            future.result(timeout=30)
    assert info.value.suggestions == ["payments"]


def test_dead_bootstrap_addresses_are_skipped(cluster, admin):
    admin.create_topic("bootstrap", partitions=1)
    dead = [f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"]
    with Producer(dead + cluster.bootstrap[1:]) as producer:
        assert producer.send("bootstrap", b"hello").result(timeout=30).offset == 0


def test_async_api_produce_consume_commit_seek_lag(cluster, admin):
    admin.create_topic("aio", partitions=2)

    async def go():
        async with AIOProducer(cluster.bootstrap) as producer:
            results = [await producer.send_and_wait("aio", b"v%d" % i, key=b"k%d" % i, headers=[("n", b"%d" % i)]) for i in range(20)]
        per_partition = defaultdict(int)
        for md in results:
            per_partition[md.partition] += 1
        consumer = AIOConsumer(
            group_id="aio-group", bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, consumer_timeout_ms=3000, **FAST_GROUP
        )
        assigned = []
        consumer.subscribe(["aio"], on_assign=assigned.append)
        seen = [record async for record in consumer]
        assert sorted(r.value for r in seen) == sorted(b"v%d" % i for i in range(20))
        assert all(r.headers == [("n", r.value[1:])] for r in seen)
        assert assigned == [{TopicPartition("aio", 0), TopicPartition("aio", 1)}]
        tp = TopicPartition("aio", 0)
        assert await consumer.position(tp) == per_partition[0]
        assert await consumer.committed(tp) is None
        await consumer.commit()
        assert await consumer.committed(tp) == per_partition[0]
        assert await consumer.lag(tp) == 0
        consumer.seek(tp, 1)
        assert await consumer.lag(tp) == per_partition[0] - 1
        again = await consumer.poll(5000)
        assert again and again[0].offset == 1 and {r.partition for r in again} == {0}
        await consumer.close()

    asyncio.run(go())


def test_an_explicit_commit_after_a_seek_may_move_the_group_back(cluster, admin):
    admin.create_topic("rewind", partitions=1)
    tp = TopicPartition("rewind", 0)
    with Producer(cluster.bootstrap) as producer:
        for i in range(10):
            producer.send("rewind", b"%d" % i)
    with Consumer(group_id="rewind-group", bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        while consumer.position(tp) < 10:
            consumer.poll(500)
        consumer.commit()
        assert consumer.committed(tp) == 10
        consumer.seek(tp, 3)
        consumer.commit()  # positions after a seek: may go back
        assert consumer.committed(tp) == 3
        consumer.commit({tp: 1})  # explicit offsets: may go back
        assert consumer.committed(tp) == 1


# -- consumer groups ---------------------------------------------------------------------------


async def poll_until(consumers, predicate, timeout: float) -> None:
    """Poll every consumer continuously and independently (as separate applications would) until
    predicate() holds."""
    stop = asyncio.Event()

    async def pump(consumer):
        while not stop.is_set():
            await consumer.poll(100)

    pumps = [asyncio.create_task(pump(c)) for c in consumers]
    try:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, [sorted(c.assignment()) for c in consumers]
            for task in pumps:
                if task.done():
                    task.result()  # a poll failed: show why
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*pumps)


def test_group_of_3_on_6_partitions_gets_2_each_and_a_7th_member_is_idle(cluster, admin):
    admin.create_topic("six", partitions=6)
    everything = {TopicPartition("six", p) for p in range(6)}

    async def go():
        def member():
            return AIOConsumer(group_id="six-group", bootstrap_servers=cluster.bootstrap, **FAST_GROUP)

        consumers = [member() for _ in range(3)]
        for c in consumers:
            c.subscribe(["six"])

        def split(expected_sizes):
            sets = [c.assignment() for c in consumers]
            return sorted(len(s) for s in sets) == expected_sizes and set().union(*sets) == everything

        await poll_until(consumers, lambda: split([2, 2, 2]), 60)
        more = [member() for _ in range(4)]
        for c in more:
            c.subscribe(["six"])
        consumers += more
        await poll_until(consumers, lambda: split([0, 1, 1, 1, 1, 1, 1]), 60)
        described = await asyncio.to_thread(admin.describe_group, "six-group")
        assert sorted(len(m.assignment) for m in described.members) == [0, 1, 1, 1, 1, 1, 1]
        await asyncio.gather(*(c.close() for c in consumers))

    asyncio.run(go())


CONSUMER_SCRIPT = r"""
import sys
import time
from raftka.client import Consumer
bootstrap, out = sys.argv[1].split(","), open(sys.argv[2], "a", buffering=1)
consumer = Consumer(group_id="crash-group", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                    enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=300,
                    rebalance_timeout_ms=10000, max_poll_records=20)
consumer.subscribe(["crash"])
while True:
    records = consumer.poll(500)
    for r in records:
        out.write(f"{r.partition} {r.offset}\n")
    if records:
        consumer.commit()
        out.write("committed\n")
        time.sleep(0.1)  # a slow consumer: still working when it is killed
"""


def test_a_dead_consumers_partitions_move_and_resume_from_its_committed_offsets(cluster, admin, tmp_path):
    admin.create_topic("crash", partitions=4)
    with Producer(cluster.bootstrap) as producer:
        for i in range(4000):
            producer.send("crash", b"%d" % i, partition=i % 4)
    log = tmp_path / "victim.log"
    victim = subprocess.Popen([sys.executable, "-c", CONSUMER_SCRIPT, ",".join(cluster.bootstrap), str(log)],
                              start_new_session=True)
    survivor_records = []

    async def go():
        survivor = AIOConsumer(group_id="crash-group", bootstrap_servers=cluster.bootstrap,
                               auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=50,
                               **FAST_GROUP)
        survivor.subscribe(["crash"])
        deadline = time.monotonic() + 60
        while len(survivor.assignment()) != 2 or not log.exists() or log.read_text().count("committed") < 10:
            assert time.monotonic() < deadline and victim.poll() is None
            survivor_records.extend(await survivor.poll(100))
            await survivor.commit()
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        killed_at = len(survivor_records)
        victim_partitions = {TopicPartition("crash", p) for p in range(4)} - survivor.assignment()
        # Take over (after the victim's session timeout) before reading the committed offsets: a commit
        # the victim had in flight was applied long before, or is fenced by its generation now.
        # The survivor does not commit meanwhile, so those offsets are still the victim's.
        while len(survivor.assignment()) < 4:
            assert time.monotonic() < deadline + 60
            survivor_records.extend(await survivor.poll(100))
        committed = {tp: await survivor.committed(tp) for tp in victim_partitions}
        while len(survivor.assignment()) < 4 or any(
            sum(1 for r in survivor_records[killed_at:] if r.partition == tp.partition) < 1000 - (committed[tp] or 0)
            for tp in victim_partitions
        ):
            assert time.monotonic() < deadline + 60
            survivor_records.extend(await survivor.poll(200))
            await survivor.commit()
        await survivor.close()
        return victim_partitions, committed, killed_at

    try:
        victim_partitions, committed, killed_at = asyncio.run(go())
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
    victim_seen = defaultdict(set)
    for line in log.read_text().splitlines():
        if line != "committed":
            partition, offset = map(int, line.split())
            victim_seen[partition].add(offset)
    for tp in victim_partitions:
        assert committed[tp] is not None
        before = {r.offset for r in survivor_records[:killed_at] if r.partition == tp.partition}
        taken_over = [r.offset for r in survivor_records[killed_at:] if r.partition == tp.partition]
        assert taken_over == list(range(committed[tp], 1000))  # resumed at the committed offset, in order, no gaps
        assert set(range(committed[tp])) <= victim_seen[tp.partition] | before  # committed => was consumed
    consumed = defaultdict(set)
    for r in survivor_records:
        consumed[r.partition].add(r.offset)
    for p, offsets in victim_seen.items():
        consumed[p] |= offsets
    assert all(consumed[p] == set(range(1000)) for p in range(4))  # at-least-once: nothing skipped


def test_auto_offset_reset_earliest_versus_latest(cluster, admin):
    admin.create_topic("resets", partitions=1)
    with Producer(cluster.bootstrap) as producer:
        for i in range(10):
            producer.send("resets", b"old-%d" % i)

    async def go():
        early = AIOConsumer(group_id="early", bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest", **FAST_GROUP)
        late = AIOConsumer(group_id="late", bootstrap_servers=cluster.bootstrap, auto_offset_reset="latest", **FAST_GROUP)
        early.subscribe(["resets"])
        late.subscribe(["resets"])
        early_values, late_values = [], []
        deadline = time.monotonic() + 30
        while len(early_values) < 10 or not late.assignment():
            assert time.monotonic() < deadline
            got_early, got_late = await asyncio.gather(early.poll(200), late.poll(200))
            early_values += [r.value for r in got_early]
            late_values += [r.value for r in got_late]
        assert late_values == [] and await late.position(TopicPartition("resets", 0)) == 10
        async with AIOProducer(cluster.bootstrap) as producer:
            for i in range(5):
                await producer.send_and_wait("resets", b"new-%d" % i)
        while len(late_values) < 5 or len(early_values) < 15:
            assert time.monotonic() < deadline
            got_early, got_late = await asyncio.gather(early.poll(200), late.poll(200))
            early_values += [r.value for r in got_early]
            late_values += [r.value for r in got_late]
        await asyncio.gather(early.close(), late.close())
        return early_values, late_values

    early_values, late_values = asyncio.run(go())
    assert early_values == [b"old-%d" % i for i in range(10)] + [b"new-%d" % i for i in range(5)]
    assert late_values == [b"new-%d" % i for i in range(5)]


def test_auto_commit_runs_while_a_long_poll_waits(cluster, admin):
    admin.create_topic("patient", partitions=1)
    with Producer(cluster.bootstrap) as producer:
        for i in range(4):
            producer.send("patient", b"%d" % i)

    def committed() -> int | None:
        offsets = devcluster.http_json(cluster.url(1) + "/groups/patient-group/offsets")["offsets"]
        return next((o["offset"] for o in offsets if o["topic"] == "patient"), None)

    async def go():
        consumer = AIOConsumer(group_id="patient-group", bootstrap_servers=cluster.bootstrap,
                               auto_offset_reset="earliest", auto_commit_interval_ms=300, **FAST_GROUP)
        consumer.subscribe(["patient"])
        values = []
        deadline = time.monotonic() + 30
        while len(values) < 4:
            assert time.monotonic() < deadline
            values += [r.value for r in await consumer.poll(200)]
        waiting = asyncio.create_task(consumer.poll(60_000))  # nothing more to read: it waits
        while await asyncio.to_thread(committed) != 4:
            assert not waiting.done(), "the long poll ended before the consumed offsets were committed"
            assert time.monotonic() < deadline, "consumed offsets not committed while the poll waited"
            await asyncio.sleep(0.1)
        assert not waiting.done()
        async with AIOProducer(cluster.bootstrap) as producer:
            await producer.send_and_wait("patient", b"4")
        assert [r.value for r in await waiting] == [b"4"]
        await consumer.close()
        return values

    assert asyncio.run(go()) == [b"0", b"1", b"2", b"3"]


def test_blocking_consumer_callbacks_run_in_the_polling_thread_and_may_commit(cluster, admin):
    admin.create_topic("callbacks", partitions=2)
    with Producer(cluster.bootstrap) as producer:
        for i in range(10):
            producer.send("callbacks", b"%d" % i, partition=i % 2)
    events = []
    consumer = Consumer(group_id="cb-group", bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest",
                        enable_auto_commit=False, **FAST_GROUP)

    def on_revoke(partitions):
        consumer.commit()  # a blocking call from inside the callback
        events.append(("revoke", threading.current_thread() is threading.main_thread(), sorted(partitions)))

    def on_assign(partitions):
        events.append(("assign", sorted(partitions)))

    consumer.subscribe(["callbacks"], on_assign=on_assign, on_revoke=on_revoke)
    records = []
    deadline = time.monotonic() + 30
    while len(records) < 10 and time.monotonic() < deadline:
        records += consumer.poll(200)
    consumer.subscribe(["callbacks"], on_assign, on_revoke)  # resubscribing rebalances: revoke (commit), assign
    consumer.poll(500)
    both = [TopicPartition("callbacks", 0), TopicPartition("callbacks", 1)]
    assert events[0] == ("assign", both)
    assert ("revoke", True, both) in events
    assert consumer.committed(both[0]) == 5 and consumer.committed(both[1]) == 5
    consumer.close()


# -- admin ------------------------------------------------------------------------------------


def test_admin_topic_lifecycle_and_errors(cluster, admin):
    admin.create_topic("lifecycle", partitions=2, replication_factor=3, configs={"retention.ms": 60_000})
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topic("lifecycle")
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topic("too-many-replicas", replication_factor=5)
    assert "lifecycle" in admin.list_topics()
    with Producer(cluster.bootstrap) as producer:
        producer.send("lifecycle", b"x", partition=1).result(timeout=30)
    deadline = time.monotonic() + 20
    while not all((described := admin.describe_topic("lifecycle")).partitions[p].leader for p in (0, 1)):
        assert time.monotonic() < deadline, described  # leaders of a new topic are known within moments
        time.sleep(0.2)
    assert [p.partition for p in described.partitions] == [0, 1] and described.replication_factor == 3
    assert int(described.configs["retention.ms"]) == 60_000
    assert described.partitions[1].high_watermark == 1 and described.partitions[1].log_start_offset == 0
    assert all(p.leader in p.replicas for p in described.partitions)
    admin.add_partitions("lifecycle", 4)
    admin.alter_configs("lifecycle", {"retention.ms": 120_000})
    described = admin.describe_topic("lifecycle")
    assert len(described.partitions) == 4 and int(described.configs["retention.ms"]) == 120_000
    assert admin.topics_overview()["lifecycle"] == (4, 3)
    admin.delete_topic("lifecycle")
    with pytest.raises(TopicNotFoundError) as info:
        admin.describe_topic("lifecycle")
    with pytest.raises(TopicNotFoundError) as info:
        admin.delete_topic("lifecycel")
    assert "lifecycle" not in admin.list_topics()
    assert info.value.topic == "lifecycel"


def test_admin_cluster_and_raft_status(cluster, admin):
    described = admin.describe_cluster()
    assert [b.id for b in described.brokers] == [1, 2, 3]
    assert described.metadata_leader in (1, 2, 3)
    statuses = admin.raft_status()
    assert [s.broker for s in statuses] == [1, 2, 3] and all(s.error is None for s in statuses)
    assert all(any(g.get("role") for g in s.groups) for s in statuses)
