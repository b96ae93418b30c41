"""raftka beside NATS JetStream, in one run: `python -m bench.compare [--quick] [--profile]` (`make bench`).

Starts a fresh 3-broker raftka cluster and a fresh 3-server NATS JetStream
cluster (file storage) on loopback, both up for the whole run, and measures
three systems, one after the other per workload (the order rotates from
workload to workload), with the same Python-side workload code
(`compare_workloads`), payload sizes and in-flight limits: raftka through its
Python client (HTTP), raftka through its Kafka listener with confluent-kafka
(librdkafka; topics of its own on the same cluster), and NATS JetStream:

  produce    msg/s and MB/s, 100 B and 1 KiB, 1 and 8 producers (8 = 8 spawned
             processes: one Python process is CPU-bound far below either
             server), <= 1000 unacknowledged messages per producer; one
             partition / one stream with 3 replicas (each one Raft group);
             plus the servers' CPU seconds per million messages (psutil)
  consume    msg/s and MB/s of one consumer reading the produced backlog
             (NATS: pull consumer, batches of 1000; raftka: AIOConsumer fetches)
  latency    send -> acknowledgement p50/p99 at a fixed 2,000 msg/s (100 B) with
             the servers' CPU per message at that rate, and send ->
             consumer-sees-it p50/p99 at the same rate
  failover   kill -9 of the log's leader under 2,000 msg/s from a producer
             connected to the survivors: seconds until a message sent after
             the kill is acknowledged

Prints one table (raftka | NATS | ratio, with the 1-minute load average at the
start of each workload), and writes bench/results/compare.json and
compare.png (`--tls`: every system with TLS and authentication, compare-tls.json/.png).
`--profile` adds py-spy profiles of the raftka partition leader during an
extra 1 KiB x8 produce run and an extra fixed-rate run
(bench/results/raftka-leader-profile.txt, raw stacks beside it).
`--failover-only` runs just the failover workload (about 2 min).
`--quick` takes < 3 min, the full run (3 alternating repeats of every
produce measurement, median reported; longer runs) < 20 min.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from rich.console import Console

from bench.compare_report import Row, print_table, write_chart, write_json
from bench.compare_systems import KafkaSystem, NatsSystem, RaftkaSystem
from bench.compare_workloads import (
    consume,
    end_to_end,
    failover,
    paced_acks,
    percentile,
    produce,
)
from bench.machine import cpu_model, dirty_kib
from bench.nats_cluster import nats_server_version
from raftka.node.config import DEFAULT_ELECTION_TIMEOUT_MS, DEFAULT_HEARTBEAT_MS

RESULTS = Path(__file__).parent / "results"
SIZES = {"100 B": 100, "1 KiB": 1024}
PRODUCERS = (1, 8)
IN_FLIGHT = 1000
REPLICAS = 3
RATE = 2000
LATENCY_SIZE = 100
IDLE_SETTLE_SECONDS = 5.0  # after creating the logs, before measuring idle CPU (elections and catch-up done)
SETTLE_MAX_SECONDS = 30.0  # before each cell, for followers to catch up on what the previous one left them
IDLE_SECONDS = 10.0  # CPU times count in 10 ms steps: a 3 s window read 0.33 % of a core per server as 0 or 1
LATENCY_LINGER_MS = 0.0  # raftka's default linger_ms=5 would add ~5 ms to every latency by design


@dataclass(frozen=True)
class Settings:
    produce_seconds: float
    repeats: int
    consume_cap: int
    consume_max_s: float
    latency_seconds: float
    failover_before_s: float
    failover_max_wait_s: float
    failover_runs: int
    profile_seconds: float


QUICK = Settings(produce_seconds=3, repeats=1, consume_cap=150_000, consume_max_s=10, latency_seconds=4,
                 failover_before_s=2, failover_max_wait_s=30, failover_runs=5, profile_seconds=6)
FULL = Settings(produce_seconds=8, repeats=3, consume_cap=600_000, consume_max_s=40, latency_seconds=15,
                failover_before_s=3, failover_max_wait_s=60, failover_runs=5, profile_seconds=15)


def median_or_none(values: list[float | None]) -> float | None:
    """The median, counting a run that never recovered as infinitely slow (None if most never did)."""
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    return ordered[len(ordered) // 2] if ordered else None


def load() -> float:
    return os.getloadavg()[0]


def machine() -> dict:
    model = cpu_model("unknown")
    return {"cpu_model": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "nats_server": nats_server_version(),
            "nats_py": version("nats-py"), "load_avg_at_start": list(os.getloadavg())}


class Bench:
    def __init__(self, settings: Settings, console: Console, root: Path, tls: bool = False) -> None:
        self.settings = settings
        self.console = console
        self.raftka = RaftkaSystem(root, tls)
        self.kafka = KafkaSystem(self.raftka)
        self.nats = NatsSystem(root, tls)
        self.rows: list[Row] = []
        self.details: dict = {}
        self.turn = 0

    def order(self) -> list:
        """Every system, the first one rotating from call to call."""
        self.turn += 1
        systems = [self.raftka, self.kafka, self.nats]
        shift = self.turn % len(systems)
        return systems[shift:] + systems[:shift]

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')} load {load():.1f}[/dim] {text}", highlight=False)

    def add(self, workload: str, metric: str, values: dict, higher_is_better: bool, started_load: float) -> None:
        self.rows.append(Row(workload, metric, values.get("raftka"), values.get("nats"), higher_is_better,
                             started_load, values.get("kafka")))

    def settle(self, cell: str) -> None:
        """Write back the machine's dirty pages, then wait until no follower of either cluster lags: a cell must
        not pay for what the one before it left behind on the shared disk and cores — JetStream's writes, which it
        does not fsync (hundreds of MB after its 1 KiB cells, written back by the kernel 30 s later, in
        whichever cell runs then: an fsync waits behind them for tens of ms), or followers' catch-up (a leader
        re-reading its log for them, their fsyncs)."""
        dirty, sync_started = dirty_kib(), time.monotonic()
        os.sync()
        started = time.monotonic()
        synced = started - sync_started
        first = None
        while time.monotonic() - started < SETTLE_MAX_SECONDS:
            backlog = {s.name: s.replica_backlog() for s in (self.raftka, self.nats)}
            first = first or backlog
            if not any(backlog.values()):
                break
            time.sleep(0.1)
        waited = time.monotonic() - started
        self.details.setdefault("settle", []).append({"cell": cell, "dirty_kib": dirty, "sync_s": synced,
                                                      "backlog": first, "seconds": waited, "left": backlog})
        if synced > 0.5:
            self.say(f"{'':<22} settling before {cell}: {dirty / 1024:,.0f} MiB of dirty pages written back in "
                     f"{synced:.1f} s")
        if any(backlog.values()) or waited > 0.5:
            self.say(f"{'':<22} settling before {cell}: followers lagged {first} (entries / messages); "
                     f"{'caught up' if not any(backlog.values()) else f'still {backlog}'} after {waited:.1f} s")

    # ------------------------------------------------------------ workloads

    def produce_all(self) -> dict[str, dict[str, int]]:
        """Produce workloads; returns messages written per size label and system (for consume)."""
        written = {label: {"raftka": 0, "kafka": 0, "nats": 0} for label in SIZES}
        for label, size in SIZES.items():
            for producers in PRODUCERS:
                workload = f"produce {label} x{producers}"
                started_load = load()
                runs: dict[str, list[tuple[float, float, float]]] = {"raftka": [], "kafka": [], "nats": []}
                for _ in range(self.settings.repeats):
                    for system in self.order():
                        self.settle(f"{workload} {system.name}")
                        meter = system.meter()
                        result = produce(system.endpoint(f"tp-{size}"), size, self.settings.produce_seconds,
                                         IN_FLIGHT, producers, meter)
                        written[label][system.name] += result.written
                        rate = result.acked / result.elapsed
                        cpu = meter.seconds / result.acked * 1e6 if result.acked else float("nan")
                        amplification = (meter.written / (result.acked * size * REPLICAS) if result.acked
                                         else float("nan"))
                        runs[system.name].append((rate, cpu, amplification))
                        self.say(f"{workload:<22} {system.name:<6} {rate:>9,.0f} msg/s  {rate * size / 1e6:6.1f} MB/s  "
                                 f"server CPU {cpu:5.1f} s/M msg  disk {amplification:4.2f} B/B"
                                 + (f"  ({result.failed} failed)" if result.failed else ""))
                rate = {s: statistics.median(r for r, _, _ in v) for s, v in runs.items()}
                cpu = {s: statistics.median(c for _, c, _ in v) for s, v in runs.items()}
                disk = {s: statistics.median(d for _, _, d in v) for s, v in runs.items()}
                self.details[workload] = {s: [{"msg_per_s": r, "server_cpu_s_per_M": c, "disk_bytes_per_byte": d}
                                              for r, c, d in v] for s, v in runs.items()}
                self.add(workload, "msg/s", rate, True, started_load)
                self.add(workload, "MB/s", {s: v * size / 1e6 for s, v in rate.items()}, True, started_load)
                self.add(workload, "server CPU s / M msg", cpu, False, started_load)
                self.add(workload, "disk bytes written / byte acked, per replica", disk, False, started_load)
        return written

    def consume_all(self, written: dict[str, dict[str, int]]) -> None:
        for label, size in SIZES.items():
            workload = f"consume {label}"
            started_load = load()
            rates = {}
            for system in self.order():
                self.settle(f"{workload} {system.name}")
                expected = min(written[label][system.name], self.settings.consume_cap)
                count, nbytes, elapsed = asyncio.run(consume(system.endpoint(f"tp-{size}"), expected,
                                                             self.settings.consume_max_s))
                rates[system.name] = count / elapsed
                self.details[workload + " " + system.name] = {"messages": count, "seconds": elapsed}
                self.say(f"{workload:<22} {system.name:<6} {count / elapsed:>9,.0f} msg/s  "
                         f"{nbytes / elapsed / 1e6:6.1f} MB/s  ({count:,} of {expected:,} messages)")
            self.add(workload, "msg/s", rates, True, started_load)
            self.add(workload, "MB/s", {s: v * size / 1e6 for s, v in rates.items()}, True, started_load)

    def latency(self) -> None:
        for kind in ("ack", "e2e"):
            workload = f"latency {RATE:,} msg/s"
            started_load = load()
            p50, p99, cpu = {}, {}, {}
            for system in self.order():
                self.settle(f"{kind} latency {system.name}")
                endpoint = system.endpoint(f"lat-{kind}", linger_ms=LATENCY_LINGER_MS)
                if kind == "ack":
                    meter = system.meter()
                    meter.start()
                    values = asyncio.run(paced_acks(endpoint, LATENCY_SIZE, RATE, self.settings.latency_seconds))
                    meter.stop()
                    cpu[system.name] = meter.seconds / max(1, len(values)) * 1e6
                else:
                    values = asyncio.run(end_to_end(endpoint, LATENCY_SIZE, RATE, self.settings.latency_seconds,
                                                    push=system.name == "nats"))
                p50[system.name] = percentile(values, 0.5) * 1e3
                p99[system.name] = percentile(values, 0.99) * 1e3
                self.details[f"{kind} latency {system.name}"] = {"samples": len(values), "p50_ms": p50[system.name],
                                                                 "p99_ms": p99[system.name],
                                                                 "max_ms": values[-1] * 1e3 if values else None}
                self.say(f"{kind + ' latency':<22} {system.name:<6} p50 {p50[system.name]:6.2f} ms  "
                         f"p99 {p99[system.name]:6.2f} ms  ({len(values):,} samples)")
            self.add(workload, f"{kind} p50 ms", p50, False, started_load)
            self.add(workload, f"{kind} p99 ms", p99, False, started_load)
            if cpu:
                self.add(workload, "server CPU s / M msg", cpu, False, started_load)

    def profile_leader(self) -> None:
        """py-spy on the partition leader where raftka is weakest: 1 KiB x8 produce and the fixed-rate latency run."""
        from bench.compare_profile import PySpyMeter, summarize

        seconds = self.settings.profile_seconds
        summaries = []
        for name, label in (("tp-1024", "1 KiB x8 produce"), ("lat-ack", f"100 B at {RATE:,} msg/s, linger_ms=0")):
            pid = self.raftka.leader_pid(name)
            raw = RESULTS / f"raftka-leader-profile-{name}.raw.txt"
            meter = PySpyMeter(pid, raw, seconds, self.raftka.server_pids())
            self.say(f"py-spy on the raftka leader of {name} (pid {pid}) during {label} ...")
            if name == "tp-1024":
                result = produce(self.raftka.endpoint(name), 1024, seconds, IN_FLIGHT, 8, meter)
                outcome = f"{result.acked / result.elapsed:,.0f} msg/s"
            else:
                meter.start()
                values = asyncio.run(paced_acks(self.raftka.endpoint(name, linger_ms=LATENCY_LINGER_MS), LATENCY_SIZE,
                                                RATE, seconds))
                meter.stop()
                outcome = f"ack p50 {percentile(values, 0.5) * 1e3:.2f} ms, p99 {percentile(values, 0.99) * 1e3:.2f} ms"
            what = (f"raftka partition leader (pid {pid}) during {label}: {outcome}, "
                    f"server CPU {meter.cpu.seconds:.1f} s over {seconds:g} s (3 brokers)")
            summaries.append(summarize(raw, what))
            self.details[f"profile {label}"] = {"outcome": outcome, "server_cpu_s": meter.cpu.seconds,
                                                 "raw": str(raw.relative_to(RESULTS.parent.parent))}
        text = "\n".join(summaries)
        (RESULTS / "raftka-leader-profile.txt").write_text(text)
        self.console.print(text, highlight=False, markup=False)

    def failover_all(self) -> None:
        """kill -9 of the log's leader under load; raftka `failover_runs` times (the median is the figure)."""
        workload = "failover (kill -9 leader)"
        started_load = load()
        runs: dict[str, list[float | None]] = {}
        for system in self.order():
            # NATS is not restarted after its kill; the Kafka path shares raftka's cluster (one run in --quick)
            repeats = {"raftka": self.settings.failover_runs, "nats": 1}.get(
                system.name, self.settings.failover_runs if self.settings.repeats > 1 else 1)
            for run in range(repeats):
                name = f"failover-{run}"
                system.create_log(name)
                endpoint, kill, victim = system.kill_leader(name, linger_ms=LATENCY_LINGER_MS)
                result = asyncio.run(failover(endpoint, LATENCY_SIZE, RATE, self.settings.failover_before_s,
                                              self.settings.failover_max_wait_s, kill))
                runs.setdefault(system.name, []).append(result.recovery_s)
                system.recover()
                self.details[f"failover {system.name} {run}"] = {**asdict(result), "killed": victim}
                shown = "no recovery" if result.recovery_s is None else f"{result.recovery_s:.2f} s"
                self.say(f"{'failover':<22} {system.name:<6} {shown} after killing {victim}")
        seconds = {name: median_or_none(values) for name, values in runs.items()}
        self.details["failover runs"] = runs
        self.add(workload, "seconds", seconds, False, started_load)

    # ------------------------------------------------------------ run

    def run(self, profile: bool, failover_only: bool = False) -> None:
        self.say("starting 3 raftka brokers (HTTP and Kafka listeners) and 3 nats-servers ...")
        self.raftka.start()
        self.nats.start()
        if failover_only:
            self.failover_all()
            return
        names = [f"tp-{size}" for size in SIZES.values()] + ["lat-ack", "lat-e2e"]
        for system in (self.raftka, self.kafka, self.nats):
            for name in names:
                system.create_log(name)
        time.sleep(IDLE_SETTLE_SECONDS)
        idle = {s.name: s.meter() for s in (self.raftka, self.nats)}
        for meter in idle.values():
            meter.start()
        time.sleep(IDLE_SECONDS)
        for meter in idle.values():
            meter.stop()
        self.add("idle (after creating 4 logs per system)", "server CPU % of a core",
                 {n: 100 * m.seconds / IDLE_SECONDS for n, m in idle.items()}, False, load())
        self.say("idle servers, CPU share of one core summed over 3: "
                 + ", ".join(f"{n} {m.seconds / IDLE_SECONDS:.1%}" for n, m in idle.items()))
        written = self.produce_all()
        self.consume_all(written)
        self.latency()
        if profile:
            self.profile_leader()
        self.failover_all()

    def close(self) -> None:
        for system in (self.raftka, self.nats):
            try:
                system.close()
            except (OSError, subprocess.SubprocessError) as exc:  # keep closing the other one
                self.console.print(f"closing {system.name}: {exc!r}")


def notes(settings: Settings) -> list[str]:
    runs = (f"median of {settings.repeats} alternating runs of {settings.produce_seconds:g} s each"
            if settings.repeats > 1 else f"one run of {settings.produce_seconds:g} s per produce cell (--quick)")
    return [
        ("raftka acknowledges after Raft commit with the journal fsynced on a quorum (acks=all, the only mode); "
         "JetStream acknowledges once a quorum has the message in its file store WITHOUT fsync (default sync "
         "every 2 min) - its durability on power loss is weaker"),
        ("one log each: raftka topic with 1 partition, JetStream stream with 1 subject, 3 replicas, one Raft "
         "group; Python clients: raftka.client AIOProducer/AIOConsumer (binary batch fast path, "
         "leader-direct, 1 batch in flight per partition) and nats-py publish_async / pull fetch"),
        ("raftka (Kafka): confluent-kafka (librdkafka) Producer (acks=all, idempotent, linger.ms as raftka's; "
         "throughput cells in its produce()/poll() idiom with a counting delivery callback) and "
         "Consumer (the topic's metadata fetched, then assign; consume() batches; fetch.queue.backoff.ms=10) "
         "against raftka's Kafka listeners: the same cluster as raftka (HTTP), "
         "topics of its own; idle CPU is the raftka cluster's (counted once)"),
        (f"produce: <= {IN_FLIGHT} unacknowledged messages per producer; 8 producers = 8 processes (one Python "
         "process is CPU-bound); all clients share the 2 cores with the servers; raftka linger_ms=5 (default)"),
        runs,
        ("every cell starts once the machine's dirty pages are written back (sync: JetStream's unsynced writes "
         "of one cell would otherwise be written back during a later one, and fsyncs wait behind them) and no "
         f"follower of either cluster lags (at most {SETTLE_MAX_SECONDS:.0f} s; raftka's /raft, JetStream's "
         "stream info): no cell pays for what the one before it left behind"),
        "server CPU = user+system seconds of the 3 server processes during the run (client CPU not counted)",
        ("disk bytes per byte acked = /proc/PID/io write_bytes of the 3 servers during the run / (acknowledged "
         "payload bytes x 3 replicas): 1.0 is one copy of the payload per replica"),
        (f"latency: 100 B at {RATE:,} msg/s, raftka linger_ms=0; e2e consumer: raftka AIOConsumer long-poll "
         "fetch, NATS ordered push consumer (nats-py pull fetch waits for a full batch or its expiry)"),
        (f"failover: median of {settings.failover_runs} kills for raftka (HTTP; Kafka too in a full run), one for "
         "NATS (not restarted after it); "
         f"{RATE:,} msg/s, producer connected only to the survivors, each message retried until "
         "acknowledged (NATS: 1 s ack timeout per attempt); raftka election timeout "
         f"{DEFAULT_ELECTION_TIMEOUT_MS} ms (default), NATS defaults (election timeout 4-9 s, heartbeat 1 s)"),
        (f"idle: server CPU over {IDLE_SECONDS:.0f} s, {IDLE_SETTLE_SECONDS:.0f} s after the logs were created; raftka's "
         f"brokers heartbeat each other every {DEFAULT_HEARTBEAT_MS} ms (the price of its failover), NATS every 1 s"),
        "load = 1-minute load average when the workload started (2 cores shared with other work)",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one repeat (< 3 min)")
    parser.add_argument("--profile", action="store_true", help="py-spy profile of the raftka partition leader")
    parser.add_argument("--tls", action="store_true", help="both systems with TLS and authentication (client and "
                        "replication links; results in compare-tls.json/.png)")
    parser.add_argument("--failover-only", action="store_true",
                        help="only the failover workload (results in compare-failover.json/.png)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    console = Console(width=140)
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    console.print(f"machine: {info['cpu_model']}, {info['cores']} cores, Linux {info['kernel']}, Python "
                  f"{info['python']}, {info['nats_server']}, nats-py {info['nats_py']}; load average "
                  + " / ".join(f"{v:.2f}" for v in info["load_avg_at_start"]), highlight=False)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="raftka-bench-compare-") as root:
        bench = Bench(settings, console, Path(root), args.tls)
        try:
            bench.run(args.profile, args.failover_only)
        finally:
            bench.close()
    info["load_avg_at_end"] = list(os.getloadavg())
    info["duration_s"] = round(time.monotonic() - started, 1)
    stem = "compare-tls" if args.tls else "compare-failover" if args.failover_only else "compare"
    title = (f"raftka vs NATS JetStream {info['nats_server'].removeprefix('nats-server: ')} - 3 nodes on loopback, "
             + ("TLS + auth, " if args.tls else "") +
             f"R=3, {info['cores']} cores ({'quick' if args.quick else 'full'} run, {info['duration_s']:.0f} s)")
    print_table(console, bench.rows, title, notes(settings))
    console.print("load average at the end: " + " / ".join(f"{v:.2f}" for v in info["load_avg_at_end"]),
                  highlight=False)
    document = {"title": title, "mode": "quick" if args.quick else "full", "machine": info,
                "settings": asdict(settings), "in_flight": IN_FLIGHT, "rate": RATE, "notes": notes(settings),
                "details": bench.details, "argv": sys.argv[1:]}
    write_json(RESULTS / f"{stem}.json", document, bench.rows)
    footer = "\n".join(textwrap.fill(n, 70) for n in [
        f"machine: {info['cpu_model']}, {info['cores']} cores; load average at start "
        + " / ".join(f"{v:.1f}" for v in info["load_avg_at_start"]) + ", at end "
        + " / ".join(f"{v:.1f}" for v in info["load_avg_at_end"]), *notes(settings)[:3]])
    write_chart(RESULTS / f"{stem}.png", bench.rows, title, footer)
    console.print(f"wrote {RESULTS / f'{stem}.json'} and {RESULTS / f'{stem}.png'}")


if __name__ == "__main__":
    main()
