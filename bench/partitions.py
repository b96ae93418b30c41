"""Many busy partitions, and a long run without spurious elections: `python -m bench.partitions [--quick]`.

Two measurements on one fresh 3-broker cluster (loopback, RF 3):

  many partitions  8 producer processes (raftka's Python client, 100 B records, <= 1000 unacknowledged
                   each, null keys: the sticky partitioner spreads batches) write to a topic of 1
                   partition, then to a topic of 64 partitions, for the same time each.  Per run:
                   aggregate msg/s, the brokers' CPU per message, the bytes each broker writes to
                   disk per byte acknowledged (per replica, /proc/PID/io write_bytes) and each
                   broker's fsyncs per second (its `raftka_fsyncs_total` metric), and the batches the
                   leaders committed (`raftka_produce_seconds`: records per batch, and the leaders'
                   mean time from taking a batch to committing it).  The figure is the ratio 64
                   partitions / 1 partition (goal >= 1: no collapse from per-group fsyncs).
  soak             the binary batch fast path (100 records of 100 B per batch) at full speed for a
                   few seconds (the peak), then paced at 80 % of that peak for `--soak-minutes`;
                   before and after, every broker's /raft: term changes of every group
                   (goal: none - no spurious election under steady load).

Writes bench/results/partitions.json.  The client shares the machine with the brokers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import orjson
import uvloop
from raftka.client.devcluster import LocalCluster, http_json
from raftka.storage import Record, encode_batch
from rich.console import Console

from bench.compare_clients import RaftkaEndpoint
from bench.compare_systems import ServerMeter
from bench.compare_workloads import produce
from bench.raft import BATCH_TYPE, CpuMeter, broker_procs, drive, group_prefix, led_partitions, load_average, machine

RESULTS = Path(__file__).resolve().parent / "results" / "partitions.json"
RECORD_BYTES = 100
REPLICAS = 3
IN_FLIGHT = 1000
_FSYNCS = re.compile(rb"^raftka_fsyncs_total (\S+)$", re.M)
_PRODUCED = re.compile(rb"^raftka_produce_seconds_(count|sum) (\S+)$", re.M)


def scrape_metrics(cluster: LocalCluster) -> dict[int, bytes]:
    """Each live broker's /metrics, read once for every figure taken from it."""
    scrapes = {}
    for broker in cluster.procs:
        with urllib.request.urlopen(cluster.url(broker) + "/metrics", timeout=10) as resp:
            scrapes[broker] = resp.read()
    return scrapes


def fsync_counts(scrapes: dict[int, bytes]) -> dict[int, int]:
    """Each broker's raftka_fsyncs_total."""
    counts = {}
    for broker, text in scrapes.items():
        match = _FSYNCS.search(text)
        counts[broker] = int(float(match.group(1))) if match else 0
    return counts


def produced_batches(scrapes: dict[int, bytes]) -> tuple[int, float]:
    """Batches the brokers committed as partition leaders, and the seconds they took (summed)."""
    count, seconds = 0, 0.0
    for text in scrapes.values():
        for name, value in _PRODUCED.findall(text):
            if name == b"count":
                count += int(float(value))
            else:
                seconds += float(value)
    return count, seconds


def wait_all_led(cluster: LocalCluster, topic: str, partitions: int, timeout: float) -> float:
    began = time.monotonic()
    prefix = group_prefix(cluster, topic)
    while len(led_partitions(cluster, prefix)) < partitions:
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"{topic}: not every partition has a leader after {timeout} s")
        time.sleep(0.2)
    return time.monotonic() - began


def many_partitions(cluster: LocalCluster, partitions: int, producers: int, seconds: float,
                    console: Console) -> dict:
    pids = [p.pid for p in cluster.procs.values()]
    runs = {}
    for topic, count in (("one", 1), ("many", partitions)):
        cluster.create_topic(topic, partitions=count, replication_factor=REPLICAS)
        wait_all_led(cluster, topic, count, 60)
        endpoint = RaftkaEndpoint(tuple(cluster.bootstrap), topic, 5.0, partition=None)
        meter = ServerMeter(pids)
        scraped_before = scrape_metrics(cluster)
        result = produce(endpoint, RECORD_BYTES, seconds, IN_FLIGHT, producers, meter)
        scraped_after = scrape_metrics(cluster)
        before, after = fsync_counts(scraped_before), fsync_counts(scraped_after)
        batches_before, batches_after = produced_batches(scraped_before), produced_batches(scraped_after)
        batches = batches_after[0] - batches_before[0]
        batch_seconds = batches_after[1] - batches_before[1]
        rate = result.acked / result.elapsed
        fsyncs = {f"broker-{b}": round((after[b] - before[b]) / result.elapsed) for b in after}
        runs[topic] = {
            "partitions": count, "producers": producers, "msg_per_s": round(rate),
            "server_cpu_s_per_M": round(meter.seconds / result.acked * 1e6, 2) if result.acked else None,
            "disk_bytes_per_byte": round(meter.written / (result.acked * RECORD_BYTES * REPLICAS), 2)
            if result.acked else None,
            "fsyncs_per_s": fsyncs, "batches_per_s": round(batches / result.elapsed),
            "records_per_batch": round(result.acked / batches) if batches else None,
            "leader_ms_per_batch": round(batch_seconds / batches * 1e3, 2) if batches else None,
            "failed": result.failed, "load_average": load_average(),
        }
        console.print(f"{count:>3} partition(s), {producers} producers: {rate:,.0f} msg/s, fsyncs/s per broker "
                      f"{fsyncs}, disk {runs[topic]['disk_bytes_per_byte']} B/B, "
                      f"{runs[topic]['batches_per_s']:,} batches/s of {runs[topic]['records_per_batch']} records, "
                      f"{runs[topic]['leader_ms_per_batch']} ms each on the leader")
    one, many = runs["one"]["msg_per_s"], runs["many"]["msg_per_s"]
    return {**runs, "ratio": round(many / one, 2) if one else None}


# ---------------------------------------------------------------------- soak


def group_terms(cluster: LocalCluster) -> dict[str, int]:
    """Highest term each group has on any live broker."""
    terms: dict[str, int] = {}
    for broker in cluster.procs:
        for group in http_json(cluster.url(broker) + "/raft", timeout=30)["groups"]:
            terms[group["group"]] = max(terms.get(group["group"], 0), group["term"])
    return terms


async def paced(url: str, body: bytes, batches_per_s: float, seconds: float, in_flight: int) -> dict:
    """POST `body` batches_per_s times a second for `seconds` (at most in_flight at once)."""
    slots = asyncio.Semaphore(in_flight)
    counts = {"ok": 0, "failed": 0}
    latencies: list[float] = []
    tasks: set[asyncio.Task] = set()
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def post() -> None:
            began = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={"Content-Type": BATCH_TYPE}) as resp:
                    await resp.read()
                    counts["ok" if resp.status == 200 else "failed"] += 1
                    if resp.status == 200:
                        latencies.append(time.perf_counter() - began)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                counts["failed"] += 1
            finally:
                slots.release()

        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        while loop.time() - started < seconds:
            due = int((loop.time() - started) * batches_per_s) + 1
            while sent < due:
                await slots.acquire()
                task = asyncio.create_task(post())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    latencies.sort()
    return {"sent": sent, **counts, "p99_ms": round(latencies[int(0.99 * len(latencies))] * 1e3, 1)
            if latencies else None}


def soak(cluster: LocalCluster, minutes: float, fraction: float, console: Console) -> dict:
    topic = "soak"
    cluster.create_topic(topic, partitions=1, replication_factor=REPLICAS)
    leader = cluster.leader_of(topic, 0, timeout=60)
    body = encode_batch([Record(None, b"x" * RECORD_BYTES)] * 100)
    path = f"/topics/{topic}/partitions/0/batch"
    meter = CpuMeter(broker_procs(cluster))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        peak = runner.run(drive(cluster.url(leader), path, body, 8, 1.0, 5.0, meter))
    rate = peak["batches_per_s"] * fraction
    console.print(f"soak: peak {peak['records_per_s']:,} records/s; {minutes:g} min at {fraction:.0%} "
                  f"({rate * 100:,.0f} records/s) ...")
    before = group_terms(cluster)
    began = time.monotonic()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        outcome = runner.run(paced(cluster.url(leader) + path, body, rate, minutes * 60, 64))
    after = group_terms(cluster)
    changes = {g: after.get(g, 0) - t for g, t in before.items() if after.get(g, 0) != t}
    console.print(f"soak: {outcome['ok']:,} batches acknowledged, {outcome['failed']} failed, p99 "
                  f"{outcome['p99_ms']} ms; term changes: {changes or 'none'}")
    return {"minutes": minutes, "fraction_of_peak": fraction, "peak_records_per_s": peak["records_per_s"],
            "paced_records_per_s": round(rate * 100), "elapsed_s": round(time.monotonic() - began, 1), **outcome,
            "term_changes": changes, "elections": sum(changes.values())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per produce run, a 1-minute soak")
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--seconds", type=float, help="per produce run (default 8, quick 3)")
    parser.add_argument("--soak-minutes", type=float, help="default 10, quick 1; 0 skips the soak")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    minutes = args.soak_minutes if args.soak_minutes is not None else (1.0 if args.quick else 10.0)
    console = Console(width=140)
    info = {"machine": machine(), "load_average_start": load_average(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="raftka-bench-partitions-") as root:
        with LocalCluster(brokers=3, data_dir=os.path.join(root, "cluster")) as cluster:
            info["many_partitions"] = many_partitions(cluster, args.partitions, args.producers, seconds, console)
            if minutes > 0:
                info["soak"] = soak(cluster, minutes, 0.8, console)
    info["load_average_end"] = load_average()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    console.print(f"64 / 1 partition throughput ratio {info['many_partitions']['ratio']}; results in {args.output}")


if __name__ == "__main__":
    sys.exit(main())
