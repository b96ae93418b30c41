"""Client benchmark against a local 3-broker cluster: produce/consume throughput and produce latency.

Starts its own LocalCluster (3 broker processes on loopback, replication factor
3, acks=all - the only mode raftka has) and measures, for 100 B and 1 KiB
values on a 6-partition topic:

  produce   msg/s and MB/s of acknowledged records, 1 producer and 8 producers
            (separate processes, each an AIOProducer sending as fast as the
            buffer allows for --seconds, then flushing); one extra row for the
            blocking Producer (1 producer, 100 B)
  consume   msg/s and MB/s of one AIOConsumer reading everything produced
  latency   send-to-acknowledgement p50/p99 of one producer paced at 2,000 msg/s
            (100 B, default linger_ms=5 - part of the latency by design)

Numbers include the client's own CPU: everything shares this machine's cores.
Run `python -m bench.client [--seconds S]` from the repository root (< 3 min).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from raftka.client import Admin, Producer, TopicPartition
from raftka.client.aio import AIOConsumer, AIOProducer
from raftka.client.devcluster import LocalCluster

PARTITIONS = 6
SIZES = {"100 B": 100, "1 KiB": 1024}
LATENCY_RATE = 2_000


async def _produce_for(bootstrap: Sequence[str], topic: str, size: int, seconds: float) -> tuple[int, float]:
    """Send as fast as possible for ``seconds``, flush; (acknowledged records, elapsed seconds)."""
    value = b"v" * size
    async with AIOProducer(bootstrap, buffer_memory=16 << 20) as producer:
        started = time.perf_counter()
        stop = started + seconds
        futures = []
        sent = 0
        while time.perf_counter() < stop:
            for _ in range(100):
                futures.append(await producer.send(topic, value, key=b"%d" % (sent % 1000)))
                sent += 1
        await producer.flush()
        elapsed = time.perf_counter() - started
    failed = sum(1 for f in futures if f.exception() is not None)
    if failed:
        raise RuntimeError(f"{failed} of {sent} records failed; first: {next(f.exception() for f in futures if f.exception())}")
    return sent, elapsed


def _producer_process(bootstrap: list[str], topic: str, size: int, seconds: float, results) -> None:
    results.put(asyncio.run(_produce_for(bootstrap, topic, size, seconds)))


def produce_throughput(bootstrap: list[str], topic: str, size: int, producers: int, seconds: float) -> tuple[int, float]:
    if producers == 1:
        return asyncio.run(_produce_for(bootstrap, topic, size, seconds))
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_producer_process, args=(bootstrap, topic, size, seconds, results)) for _ in range(producers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    # Processes start at slightly different times: aggregate rate = sum of per-process rates.
    total = sum(n for n, _ in outcomes)
    rate = sum(n / t for n, t in outcomes)
    return total, total / rate


def blocking_produce_throughput(bootstrap: list[str], topic: str, size: int, seconds: float) -> tuple[int, float]:
    value = b"v" * size
    with Producer(bootstrap, buffer_memory=16 << 20) as producer:
        started = time.perf_counter()
        stop = started + seconds
        sent = 0
        futures = []
        while time.perf_counter() < stop:
            for _ in range(100):
                futures.append(producer.send(topic, value, key=b"%d" % (sent % 1000)))
                sent += 1
        producer.flush()
        elapsed = time.perf_counter() - started
    assert all(f.exception() is None for f in futures)
    return sent, elapsed


async def _consume_all(bootstrap: list[str], topic: str, expected: int) -> tuple[int, float]:
    consumer = AIOConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", max_poll_records=10_000)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    started = time.perf_counter()
    count = 0
    while count < expected:
        records = await consumer.poll(2000)
        if not records:
            raise RuntimeError(f"consumer stalled at {count} of {expected} records")
        count += len(records)
    elapsed = time.perf_counter() - started
    await consumer.close()
    return count, elapsed


async def _paced_latency(bootstrap: list[str], topic: str, rate: int, seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    async with AIOProducer(bootstrap) as producer:
        await producer.send_and_wait(topic, b"warm-up")
        tick = 0.005
        per_tick = rate * tick
        started = loop.time()
        sent = 0
        while loop.time() - started < seconds:
            due = int((loop.time() - started) / tick * per_tick) + 1
            while sent < due:
                sent_at = loop.time()
                future = await producer.send(topic, b"l" * 100)
                future.add_done_callback(lambda f, t=sent_at: latencies.append(loop.time() - t))
                sent += 1
            await asyncio.sleep(tick)
        await producer.flush()
    return sorted(latencies)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each produce run")
    args = parser.parse_args(argv)
    console = Console(width=120)
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="raftka-bench-client-") as root:
        with LocalCluster(brokers=3, data_dir=root) as cluster:
            bootstrap = cluster.bootstrap
            produced: dict[str, int] = {}
            with Admin(bootstrap) as admin:
                for label, size in SIZES.items():
                    topic = f"bench-{size}"
                    admin.create_topic(topic, partitions=PARTITIONS, replication_factor=3)
                    produced[label] = 0
                    for producers in (1, 8):
                        console.print(f"produce {label} x {producers} producer(s) ...")
                        count, elapsed = produce_throughput(bootstrap, topic, size, producers, args.seconds)
                        produced[label] += count
                        rows.append(("produce", label, f"{producers} (AIOProducer)", f"{count / elapsed:,.0f}",
                                     f"{count * size / elapsed / 1e6:,.1f}", ""))
                    if size == 100:
                        console.print("produce 100 B x 1 blocking Producer ...")
                        count, elapsed = blocking_produce_throughput(bootstrap, topic, size, args.seconds)
                        produced[label] += count
                        rows.append(("produce", label, "1 (Producer, blocking)", f"{count / elapsed:,.0f}",
                                     f"{count * size / elapsed / 1e6:,.1f}", ""))
                for label, size in SIZES.items():
                    console.print(f"consume {label} ...")
                    count, elapsed = asyncio.run(_consume_all(bootstrap, f"bench-{size}", produced[label]))
                    rows.append(("consume", label, "1 (AIOConsumer)", f"{count / elapsed:,.0f}",
                                 f"{count * size / elapsed / 1e6:,.1f}", f"{count:,} records"))
                admin.create_topic("bench-latency", partitions=PARTITIONS, replication_factor=3)
            console.print(f"latency at {LATENCY_RATE:,} msg/s ...")
            latencies = asyncio.run(_paced_latency(bootstrap, "bench-latency", LATENCY_RATE, 5.0))
            rows.append(("latency", "100 B", f"1 at {LATENCY_RATE:,} msg/s", "", "",
                         f"p50 {percentile(latencies, 0.5) * 1e3:.1f} ms, p99 {percentile(latencies, 0.99) * 1e3:.1f} ms"))
    table = Table("what", "record", "clients", "msg/s", "MB/s", "notes",
                  title="raftka client, 3 brokers on loopback, RF=3, acks=all, 6 partitions")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
