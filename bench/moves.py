"""Benchmark of a replica move: copying a 1 GiB partition to another broker, and what producers feel meanwhile.

    python -m bench.moves [--gib 1] [--runs 3] [--seconds 6] [--in-flight 8] [--limits 104857600,0]

Per run, for each catch-up limit (`--reassignment-max-bytes-per-sec`; 0 = unlimited), a fresh
3-broker cluster on loopback:

1. topic `big` (1 partition, replication factor 1) is filled with `--gib` GiB through the leader's
   binary fast path (batches of 1000 records of 1 KiB), then the leader's journal is compacted
   (its periodic checkpoint): a new replica gets the partition by the snapshot stream, as it would
   after any real amount of traffic;
2. topic `load` (1 partition, replication factor 3) takes a produce load: `--in-flight` requests of
   100 records of 100 B at a time to its leader, for `--seconds` — once quiet (the baseline), then
   right after `POST /topics/big/partitions/0/reassignment` moves `big` to another broker;
3. the move's copy rate is the partition's size over the time from the request to the end of the
   job (`GET /reassignments` empty: copied, promoted, the old replica removed), so it includes the
   job's own steps, not only the copy.

Prints per run: copy MB/s, produce records/s and latency p50/p99 quiet and during the move (and
whether the move was still running at the end of that window), the load average; then the range
over the runs. Writes bench/results/moves.json. Goals (issue 13): copy >= 100 MB/s on loopback;
produce p99 during the move < 2x the quiet figure. The client and the brokers share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
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
from rich.table import Table

from bench.raft import BATCH_TYPE, CpuMeter, broker_procs, drive, load_average, machine, wait_for_leader

RESULTS = Path(__file__).resolve().parent / "results" / "moves.json"
FILL_RECORD_BYTES = 1024
FILL_BATCH_RECORDS = 1000
LOAD_BATCH_RECORDS = 100
DEFAULT_LIMIT = 100 * 1024 * 1024


async def fill(url: str, topic: str, total_bytes: int, in_flight: int = 4) -> int:
    """Produce about total_bytes of records to partition 0 through url's fast path; bytes of the batches sent."""
    body = encode_batch([Record(None, b"f" * FILL_RECORD_BYTES)] * FILL_BATCH_RECORDS)
    batches = max(1, total_bytes // len(body))
    sent = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(batches):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def worker() -> None:
            nonlocal sent
            while not queue.empty():
                queue.get_nowait()
                while True:
                    async with session.post(f"{url}/topics/{topic}/partitions/0/batch", data=body,
                                            headers={"Content-Type": BATCH_TYPE}) as resp:
                        await resp.read()
                        if resp.status == 200:
                            sent += len(body)
                            break
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return sent


def group_of(cluster: LocalCluster, broker: int, partition: str) -> dict:
    groups = http_json(cluster.url(broker) + "/raft", timeout=10)["groups"]
    return next(g for g in groups if g.get("partition") == partition)


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def one_run(root: str, gib: float, limit: int, seconds: float, in_flight: int, console: Console) -> dict:
    extra = ["--reassignment-max-bytes-per-sec", str(limit)]
    with LocalCluster(brokers=3, data_dir=root, extra_args=extra) as cluster:
        cluster.create_topic("big", partitions=1, replication_factor=1)
        source = wait_for_leader(cluster, "big", 0)
        began = time.monotonic()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            filled = runner.run(fill(cluster.url(source), "big", int(gib * 2**30)))
        fill_s = time.monotonic() - began
        console.print(f"  filled big/0 on broker-{source}: {filled / 2**30:.2f} GiB in {fill_s:.0f} s")
        wait(lambda: group_of(cluster, source, "big/0")["snapshot_index"] > 0, 60,
             "the leader's journal to be compacted")
        size = group_of(cluster, source, "big/0")["size_bytes"]
        cluster.create_topic("load", partitions=1, replication_factor=3)
        load_leader = wait_for_leader(cluster, "load", 0)
        body = encode_batch([Record(None, b"x" * 100)] * LOAD_BATCH_RECORDS)
        path = "/topics/load/partitions/0/batch"
        meter = CpuMeter(broker_procs(cluster))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            quiet = runner.run(drive(cluster.url(load_leader), path, body, in_flight, 1.0, seconds, meter))
        target = next(b for b in cluster.ids if b != source)
        moved_at = time.monotonic()
        request = orjson.dumps({"replicas": [target]})
        http_json_post(cluster.url(target) + "/topics/big/partitions/0/reassignment", request)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            during = runner.run(drive(cluster.url(load_leader), path, body, in_flight, 0.0, seconds, meter))
        still_moving = bool(http_json(cluster.url(target) + "/reassignments", timeout=10)["reassignments"])
        wait(lambda: not http_json(cluster.url(target) + "/reassignments", timeout=10)["reassignments"], 600,
             "the move to finish")
        move_s = time.monotonic() - moved_at
        return {"limit_bytes_per_s": limit, "partition_bytes": size, "fill_s": round(fill_s, 1),
                "move_s": round(move_s, 2), "copy_mb_per_s": round(size / move_s / 1e6, 1),
                "moving_through_window": still_moving, "load_leader": load_leader, "from": source, "to": target,
                "quiet": quiet, "during": during, "load_average": load_average()}


def http_json_post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return orjson.loads(resp.read())


def summary(rows: list[dict]) -> Table:
    table = Table("limit", "run", "GiB", "copy MB/s", "move s", "quiet rec/s", "quiet p50/p99 ms", "move rec/s",
                  "move p50/p99 ms", "p99 ratio", "load avg")
    for r in rows:
        q, d = r["quiet"], r["during"]
        ratio = d["latency_ms"]["p99"] / q["latency_ms"]["p99"] if q["latency_ms"] and d["latency_ms"] else None
        table.add_row("unlimited" if not r["limit_bytes_per_s"] else f"{r['limit_bytes_per_s'] / 2**20:.0f} MiB/s",
                      str(r["run"]), f"{r['partition_bytes'] / 2**30:.2f}", f"{r['copy_mb_per_s']}", f"{r['move_s']}",
                      f"{q['records_per_s']:,}", f"{q['latency_ms']['p50']}/{q['latency_ms']['p99']}",
                      f"{d['records_per_s']:,}", f"{d['latency_ms']['p50']}/{d['latency_ms']['p99']}",
                      f"{ratio:.2f}" if ratio else "-", " ".join(map(str, r["load_average"])))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the partition that moves")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="produce window, quiet and during the move")
    parser.add_argument("--in-flight", type=int, default=8, help="produce requests in flight")
    parser.add_argument("--limits", default=f"{DEFAULT_LIMIT},0",
                        help="catch-up limits to measure, bytes/s, comma-separated (0: unlimited)")
    args = parser.parse_args(argv)
    console = Console(width=160)
    console.print(f"machine: {machine()}")
    rows = []
    for limit in [int(x) for x in args.limits.split(",")]:
        for run in range(1, args.runs + 1):
            console.print(f"move {args.gib} GiB, limit {limit or 'unlimited'}, run {run}/{args.runs} ...")
            with tempfile.TemporaryDirectory(prefix="raftka-bench-moves-") as root:
                rows.append({"run": run, **one_run(root, args.gib, limit, args.seconds, args.in_flight, console)})
            console.print(summary(rows[-1:]))
    console.print(summary(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps({"machine": machine(), "args": vars(args), "runs": rows},
                                     option=orjson.OPT_INDENT_2))
    console.print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
