"""Benchmark of raftka's Raft replication: 3 broker processes on loopback, replication factor 3.

    python -m bench.raft [--quick] [--seconds S] [--concurrency 1,8,32] [--idle-scales 1000,3000,10000]

Throughput: one topic with one partition (one Raft group of 3 replicas).  Batches of 100 and
1000 records of 100 B (raftka.storage.encode_batch) go straight to the partition leader's
binary fast path `POST /topics/{t}/partitions/{p}/batch` from aiohttp with a bounded number
of requests in flight.  The broker answers after Raft commit (fsync on a majority) and apply
on the leader, so request->response is the commit latency.  Per point: committed records/s
and batches/s (answers received inside the measuring window), latency p50/p99, the CPU of each
broker process and of this client (% of one core), the leader's CPU time per committed batch (less
sensitive to other load on the machine than the rates), and the whole machine's CPU (% of all cores).

Idle / scale: for 1,000, 3,000 and 10,000 partitions (plus the metadata group) spread over the 3
brokers, a fresh cluster, a topic of that many partitions with RF=3, waiting until every partition
has a leader (the broker that leads it says so in GET /raft/leaders) or a timeout (then the point
is still measured, flagged all_led=false): the leaders-ready time; then a settle period, then
each broker's CPU% (of one core) and RSS over a measuring window, with psutil; then kill -9 of
the broker leading the most partitions and the seconds until every partition has a leader again.

Prints numbers only (no pass/fail) and writes bench/results/raft.json.  The client shares the
machine with the brokers (and with whatever else runs there: the load average is recorded).
Default run < 12 min (10,000 partitions take most of it), `--quick` < 5 min.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

import aiohttp
import orjson
import psutil
import uvloop
from raftka.client.devcluster import LocalCluster, http_json
from raftka.storage import Record, encode_batch
from rich.console import Console
from rich.table import Table

from bench.machine import cpu_model

BATCH_TYPE = "application/vnd.raftka.batch"
RECORD_BYTES = 100
RESULTS = Path(__file__).resolve().parent / "results" / "raft.json"
PROGRESS_S = 10.0  # a line of progress while leaders are awaited


# ------------------------------------------------------------------ machine


def machine() -> dict:
    model = cpu_model("")
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class CpuMeter:
    """CPU seconds of some processes between start() and stop(), as % of one core; system-wide % too."""

    def __init__(self, procs: dict[str, psutil.Process]):
        self.procs = procs

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return times.user + times.system

    def start(self) -> None:
        psutil.cpu_percent(interval=None)
        self.began = time.perf_counter()
        self.cpu0 = {name: self._cpu(p) for name, p in self.procs.items()}
        self.load0 = load_average()

    def stop(self) -> dict:
        elapsed = time.perf_counter() - self.began
        result = {name: round((self._cpu(p) - self.cpu0[name]) / elapsed * 100, 1) for name, p in self.procs.items()}
        return {"cpu_percent": result, "system_cpu_percent": psutil.cpu_percent(interval=None),
                "load_average_before": self.load0, "load_average_after": load_average(),
                "window_s": round(elapsed, 2)}


def broker_procs(cluster: LocalCluster) -> dict[str, psutil.Process]:
    return {f"broker-{b}": psutil.Process(p.pid) for b, p in cluster.procs.items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------- throughput


def wait_for_leader(cluster: LocalCluster, topic: str, partition: int, timeout: float = 30.0) -> int:
    """Broker id of the partition's leader as reported by the brokers (GET .../partitions/{p})."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for broker in cluster.ids:
            try:
                doc = http_json(cluster.url(broker) + f"/topics/{topic}/partitions/{partition}", timeout=2)
            except (urllib.error.URLError, OSError, ValueError):
                continue
            if doc.get("leader") == broker and doc.get("high_watermark") is not None:
                return broker
        time.sleep(0.1)
    raise TimeoutError(f"no leader for {topic}/{partition} after {timeout} s")


class Load:
    """`concurrency` workers POSTing the same batch to the leader back to back."""

    def __init__(self, session: aiohttp.ClientSession, leader_url: str, path: str, body: bytes):
        self.session = session
        self.leader_url = leader_url
        self.path = path
        self.body = body
        self.latencies: list[float] = []
        self.records = 0
        self.batches = 0
        self.redirects = 0
        self.errors: dict[str, int] = {}
        self.served_by: set[str] = set()

    async def worker(self, window_start: float, window_end: float) -> None:
        """Post until the window ends; count the batches committed (answered) inside the window."""
        while time.perf_counter() < window_end:
            began = time.perf_counter()
            try:
                async with self.session.post(self.leader_url + self.path, data=self.body,
                                             headers={"Content-Type": BATCH_TYPE}) as resp:
                    raw = await resp.read()
                    status, served_by = resp.status, resp.headers.get("X-Raftka-Broker", "?")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self._error(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            ended = time.perf_counter()
            if status == 503:
                doc = orjson.loads(raw)
                if doc.get("leader_url"):
                    self.leader_url = doc["leader_url"]
                self.redirects += 1
                await asyncio.sleep(0.05)
            elif status != 200:
                self._error(f"{status}: {raw[:120].decode(errors='replace')}")
                await asyncio.sleep(0.05)
            elif window_start <= ended <= window_end:
                doc = orjson.loads(raw)
                self.records += doc["last_offset"] - doc["base_offset"] + 1
                self.batches += 1
                self.latencies.append(ended - began)
                self.served_by.add(served_by)

    def _error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1


async def drive(leader_url: str, path: str, body: bytes, concurrency: int, warmup: float,
                seconds: float, meter: CpuMeter) -> dict:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        load = Load(session, leader_url, path, body)
        start = time.perf_counter() + warmup
        end = start + seconds
        workers = [asyncio.create_task(load.worker(start, end)) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        meter.start()
        await asyncio.sleep(seconds)
        usage = meter.stop()
        await asyncio.gather(*workers)
    lat = load.latencies
    return {
        "records_per_s": round(load.records / seconds),
        "batches_per_s": round(load.batches / seconds, 1),
        "mb_per_s": round(load.records * RECORD_BYTES / seconds / 1e6, 2),
        "latency_ms": {"p50": round(percentile(lat, 0.5) * 1e3, 2), "p99": round(percentile(lat, 0.99) * 1e3, 2),
                       "mean": round(statistics.fmean(lat) * 1e3, 2), "max": round(max(lat) * 1e3, 2)}
        if lat else None,
        "committed_batches": load.batches,
        "redirects": load.redirects,
        "errors": load.errors,
        "served_by": sorted(load.served_by),
        **usage,
    }


def throughput(root: str, batch_sizes: list[int], concurrencies: list[int], warmup: float, seconds: float,
               console: Console) -> list[dict]:
    topic = "bench"
    rows = []
    with LocalCluster(brokers=3, data_dir=os.path.join(root, "throughput")) as cluster:
        cluster.create_topic(topic, partitions=1, replication_factor=3)
        leader = wait_for_leader(cluster, topic, 0)
        procs = broker_procs(cluster)
        procs["client"] = psutil.Process()
        meter = CpuMeter(procs)
        for size in batch_sizes:
            body = encode_batch([Record(None, b"x" * RECORD_BYTES)] * size)
            for concurrency in concurrencies:
                console.print(f"throughput: {size}-record batches ({len(body):,} B), {concurrency} in flight, "
                              f"leader broker-{leader} ...")
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    point = runner.run(drive(cluster.url(leader), f"/topics/{topic}/partitions/0/batch", body,
                                             concurrency, warmup, seconds, meter))
                leader_cpu_s = point["cpu_percent"][f"broker-{leader}"] / 100 * point["window_s"]
                point["leader_cpu_ms_per_batch"] = (round(leader_cpu_s / point["committed_batches"] * 1e3, 3)
                                                    if point["committed_batches"] else None)
                rows.append({"batch_records": size, "batch_bytes": len(body), "in_flight": concurrency,
                             "leader": f"broker-{leader}", **point})
    return rows


# --------------------------------------------------------------------- idle


def group_prefix(cluster: LocalCluster, topic: str, timeout: float = 60.0) -> str:
    """The Raft group names of `topic`'s partitions start with this (``<topic id>/``), from one broker's
    `GET /raft` (once: it describes every group)."""
    deadline = time.monotonic() + timeout
    while True:
        for broker in cluster.ids:
            try:
                groups = http_json(cluster.url(broker) + "/raft", timeout=30)["groups"]
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                continue
            for g in groups:
                if str(g.get("partition", "")).rpartition("/")[0] == topic:
                    return g["group"].rpartition("/")[0] + "/"
        if time.monotonic() > deadline:
            raise TimeoutError(f"no broker hosts a partition of {topic} after {timeout} s")
        time.sleep(0.5)


def led_partitions(cluster: LocalCluster, prefix: str) -> dict[int, int]:
    """partition -> broker, for the partitions (groups named `prefix`<partition>) whose leader says it leads
    them (`GET /raft/leaders` of each live broker: a few bytes per group, where listing 10,000 partitions
    on every broker took 1-2 s per round and loaded the brokers being measured)."""
    led: dict[int, int] = {}
    for broker in cluster.ids:
        try:
            doc = http_json(cluster.url(broker) + "/raft/leaders", timeout=5)
        except (urllib.error.URLError, OSError, ValueError):
            continue
        for group in doc.get("groups", {}):
            if group.startswith(prefix):
                led[int(group[len(prefix):])] = broker
    return led


def election_totals(cluster: LocalCluster, brokers: list[int] | None = None) -> dict[str, int]:
    """Elections started, deferred by the campaign budget and won, and leaders stepped down (no quorum heard),
    summed over `brokers` (default: the running ones; `GET /raft?groups=`: the counters without any group's
    status)."""
    totals = {"started": 0, "deferred": 0, "won": 0, "stepped_down": 0}
    for broker in list(cluster.procs) if brokers is None else brokers:
        try:
            counts = http_json(cluster.url(broker) + "/raft?groups=", timeout=5)["elections"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            continue
        for outcome in totals:
            totals[outcome] += counts[outcome]
    return totals


def wait_led(cluster: LocalCluster, prefix: str, partitions: int, began: float, timeout: float,
             console: Console) -> dict[int, int]:
    """Poll until every partition reports a leader (or `timeout` s after `began`); the last answer.  Every
    `PROGRESS_S` a line: partitions led, and the `election_totals` since the last line (a creation that does
    not converge shows whether elections are held back, failing, undone by step-downs, or not started)."""
    last_line, last_totals = began, election_totals(cluster)
    while True:
        led = led_partitions(cluster, prefix)
        now = time.monotonic()
        if len(led) == partitions or now - began > timeout:
            return led
        if now - last_line >= PROGRESS_S:
            totals = election_totals(cluster)
            console.print(f"  {now - began:5.1f} s: {len(led)} of {partitions} led; elections in the last "
                          f"{now - last_line:.0f} s: " + ", ".join(f"{totals[k] - last_totals[k]} {k}" for k in totals))
            last_line, last_totals = now, totals
        time.sleep(0.25)


def idle_point(root: str, partitions: int, settle: float, window: float, ready_timeout: float,
               console: Console) -> dict:
    """Idle CPU and RSS of each broker hosting `partitions` RF=3 partitions, then a failover.

    If not every partition has a leader within `ready_timeout` (elections still churning), the
    point is measured anyway and reported with all_led = false.  Failover: kill -9 of the
    broker leading the most partitions; seconds until every partition has a leader again on
    the survivors (`failover_s`, None if not within `ready_timeout`).
    """
    topic = "idle"
    with LocalCluster(brokers=3, data_dir=os.path.join(root, f"idle-{partitions}")) as cluster:
        began = time.monotonic()
        try:
            cluster.create_topic(topic, partitions=partitions, replication_factor=3)
            create_s = time.monotonic() - began
        except (urllib.error.URLError, OSError) as exc:  # slow answer: the topic may still be created
            console.print(f"idle: creating {partitions} partitions: {exc!r}; waiting for leaders anyway")
            create_s = None
        prefix = group_prefix(cluster, topic)
        led = wait_led(cluster, prefix, partitions, began, ready_timeout, console)
        ready_s = time.monotonic() - began
        creation_elections = election_totals(cluster)
        led_ready = len(led)
        all_led = led_ready == partitions
        console.print(f"idle: {len(led)} of {partitions} partition(s) led after {ready_s:.1f} s "
                      f"(elections: {', '.join(f'{n} {k}' for k, n in creation_elections.items())}); "
                      f"settling {settle:.0f} s, measuring {window:.0f} s ...")
        time.sleep(settle)
        procs = broker_procs(cluster)
        meter = CpuMeter(procs)
        meter.start()
        time.sleep(window)
        usage = meter.stop()
        rss = {name: round(p.memory_info().rss / 2**20, 1) for name, p in procs.items()}
        led = led_partitions(cluster, prefix)
        still_led = len(led)
        leaders_per_broker = {f"broker-{b}": sum(1 for v in led.values() if v == b) for b in cluster.ids}
        victim = max(cluster.ids, key=lambda b: leaders_per_broker[f"broker-{b}"])
        orphaned = leaders_per_broker[f"broker-{victim}"]
        survivors_before = election_totals(cluster, [b for b in cluster.procs if b != victim])
        cluster.kill(victim)
        killed_at = time.monotonic()
        after = wait_led(cluster, prefix, partitions, killed_at, ready_timeout, console)
        failover_s = time.monotonic() - killed_at if len(after) == partitions else None
        failover_elections = {k: v - survivors_before[k] for k, v in election_totals(cluster).items()}
        console.print(f"idle: kill -9 of broker {victim} (leading {orphaned}): "
                      + (f"every partition led again after {failover_s:.1f} s" if failover_s is not None
                         else f"{partitions - len(after)} partition(s) still without a leader after {ready_timeout} s"))
        for broker in list(cluster.procs):
            cluster.kill(broker)  # the data is thrown away: no need for a graceful hand-over
    cpu = usage["cpu_percent"]
    return {"partitions": partitions, "groups_per_broker": partitions + 1, "all_led": all_led,
            "led_before_window": led_ready, "create_s": None if create_s is None else round(create_s, 1),
            "ready_s": round(ready_s, 1),
            "leaders_per_broker": leaders_per_broker, "rss_mib": rss, "led_after_window": still_led,
            "max_broker_cpu_percent": max(cpu.values()), "mean_broker_cpu_percent": round(statistics.fmean(cpu.values()), 1),
            "max_rss_mib": max(rss.values()), "failover_killed": f"broker-{victim}", "failover_orphaned": orphaned,
            "failover_s": None if failover_s is None else round(failover_s, 2),
            "failover_led": len(after), "elections_until_led": creation_elections,
            "failover_elections": failover_elections, **usage}


# -------------------------------------------------------------------- report


def print_report(console: Console, info: dict, loads: list[dict], idles: list[dict]) -> None:
    console.print(f"machine: {info['machine']['cpus']} CPUs ({info['machine']['cpu_model']}), shared; "
                  f"python {info['machine']['python']}; load average at start {info['load_average_start']}, "
                  f"at end {info['load_average_end']}")
    table = Table("batch", "in flight", "records/s", "batches/s", "MB/s", "p50 ms", "p99 ms",
                  "leader CPU%", "leader CPU ms/batch", "followers CPU%", "client CPU%", "machine CPU%", "load avg",
                  title="Raft commit throughput: 1 partition, RF=3, 3 brokers on loopback, 100 B records")
    for r in loads:
        cpu = r["cpu_percent"]
        followers = [f"{v:.0f}" for k, v in cpu.items() if k.startswith("broker") and k != r["leader"]]
        lat = r["latency_ms"] or {"p50": float("nan"), "p99": float("nan")}
        table.add_row(f"{r['batch_records']} rec", str(r["in_flight"]), f"{r['records_per_s']:,}",
                      f"{r['batches_per_s']:,.1f}", f"{r['mb_per_s']:.1f}", f"{lat['p50']:.1f}", f"{lat['p99']:.1f}",
                      f"{cpu[r['leader']]:.0f}", f"{r['leader_cpu_ms_per_batch'] or float('nan'):.2f}",
                      " / ".join(followers), f"{cpu['client']:.0f}",
                      f"{r['system_cpu_percent']:.0f}", f"{r['load_average_before'][0]:.1f}")
    console.print(table)
    table = Table("partitions", "groups/broker", "led / ready s", "CPU% broker 1 / 2 / 3", "max CPU%", "RSS MiB 1 / 2 / 3",
                  "failover s", "machine CPU%", "load avg",
                  title="Idle cost: RF=3 partitions spread over 3 brokers (CPU% of one core over the window)")
    for r in idles:
        cpu, rss = r["cpu_percent"], r["rss_mib"]
        table.add_row(str(r["partitions"]), str(r["groups_per_broker"]),
                      f"{r['led_before_window']} after {r['ready_s']:.1f}",
                      " / ".join(f"{v:.1f}" for v in cpu.values()), f"{r['max_broker_cpu_percent']:.1f}",
                      " / ".join(f"{v:.0f}" for v in rss.values()),
                      "-" if r["failover_s"] is None else f"{r['failover_s']:.1f}", f"{r['system_cpu_percent']:.0f}",
                      f"{r['load_average_before'][0]:.1f}")
    console.print(table)


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (whole run < 90 s)")
    parser.add_argument("--seconds", type=float, help="measuring window of each throughput point (default 5, quick 1.5)")
    parser.add_argument("--batch-sizes", type=int_list, default=[100, 1000], help="records per batch")
    parser.add_argument("--concurrency", type=int_list, default=[1, 8, 32], help="requests in flight")
    parser.add_argument("--idle-scales", type=int_list, default=[1000, 3000, 10000],
                        help="partitions for the idle / scale test")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    warmup = 0.5 if args.quick else 1.0
    # Idle means settled: 2 s after the last leader was elected, a quick run right after bench.partitions read
    # 2.7-4.2 % of a core per broker for 1,000 partitions (groups still waking up), 5 s later 0.5-0.7 %.
    settle, window = (5.0, 4.0) if args.quick else (5.0, 10.0)
    ready_timeout = 75.0 if args.quick else 120.0
    console = Console(width=160)
    began = time.monotonic()
    info = {"machine": machine(), "load_average_start": load_average(), "quick": args.quick,
            "settings": {"seconds": seconds, "warmup_s": warmup, "idle_settle_s": settle, "idle_window_s": window,
                         "idle_ready_timeout_s": ready_timeout,
                         "record_bytes": RECORD_BYTES, "replication_factor": 3, "brokers": 3,
                         "note": "client, 3 brokers and other users share the machine; CPU% is of one core"}}
    loads: list[dict] = []
    idles: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="raftka-bench-raft-") as root:
        if not args.skip_throughput:
            loads = throughput(root, args.batch_sizes, args.concurrency, warmup, seconds, console)
        if not args.skip_idle:
            for n in args.idle_scales:
                idles.append(idle_point(root, n, settle, window, ready_timeout, console))
    info["load_average_end"] = load_average()
    info["runtime_s"] = round(time.monotonic() - began, 1)
    print_report(console, info, loads, idles)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps({**info, "throughput": loads, "idle": idles}, option=orjson.OPT_INDENT_2))
    console.print(f"total {info['runtime_s']:.0f} s; results in {args.output}")


if __name__ == "__main__":
    sys.exit(main())
