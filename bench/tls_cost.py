"""What TLS and authentication cost raftka, side by side: `python -m bench.tls_cost [--runs N] [--seconds S]`.

Two 3-broker raftka clusters on loopback, both up for the whole run: "plain" (HTTP, no authentication) and
"tls" (HTTPS for clients and between brokers, HTTP Basic on every request, ACL decisions on every request by
a superuser). Raft replication is authenticated and encrypted (AES-GCM) in both, so the difference is the
client-facing TLS and authentication only. Each cell runs on both clusters, the order alternating, `--runs`
times (default 3), with `bench.compare`'s workload code: produce 100 B and 1 KiB with 1 and 8 producers
(<= 1000 messages in flight each, acks=all; with the brokers' CPU seconds per million messages, the figure
that moves least with the machine's load), consume 1 KiB from the start, and acknowledgement latency at a
fixed 2,000 msg/s (100 B, linger_ms=0). Prints, per cell, the range over the runs on each cluster, the
median of tls / plain, and the 1-minute load average when the cell started; writes
bench/results/tls-cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from bench.compare_systems import RaftkaSystem
from bench.compare_workloads import consume, paced_acks, percentile, produce
from bench.machine import cpu_model

RESULTS = Path(__file__).parent / "results"
IN_FLIGHT = 1000
RATE = 2000


def load() -> float:
    return os.getloadavg()[0]


class Cost:
    def __init__(self, root: Path, seconds: float, console: Console) -> None:
        self.systems = {"plain": RaftkaSystem(root / "plain"), "tls": RaftkaSystem(root / "tls", tls=True)}
        self.seconds = seconds
        self.console = console
        self.cells: dict[str, dict] = {}  # cell -> {"unit", "higher_is_better", "load": [..], "plain": [..], ...}
        self.turn = 0

    def order(self) -> list[str]:
        self.turn += 1
        return ["plain", "tls"] if self.turn % 2 else ["tls", "plain"]

    def record(self, cell: str, unit: str, higher: bool, values: dict[str, float], started_load: float) -> None:
        entry = self.cells.setdefault(cell, {"unit": unit, "higher_is_better": higher, "load": [], "plain": [],
                                             "tls": []})
        entry["load"].append(started_load)
        for name, value in values.items():
            entry[name].append(value)
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')} load {started_load:.1f}[/dim] {cell:<24} "
                           + "  ".join(f"{n} {v:,.2f} {unit}" for n, v in values.items()), highlight=False)

    def one_run(self) -> None:
        for size, producers in ((100, 1), (100, 8), (1024, 1), (1024, 8)):
            started, rates, cpu = load(), {}, {}
            for name in self.order():
                system = self.systems[name]
                meter = system.meter()
                result = produce(system.endpoint(f"tp-{size}"), size, self.seconds, IN_FLIGHT, producers, meter)
                rates[name] = result.acked / result.elapsed
                cpu[name] = meter.seconds / result.acked * 1e6 if result.acked else float("nan")
            label = "1 KiB" if size == 1024 else "100 B"
            self.record(f"produce {label} x{producers}", "msg/s", True, rates, started)
            self.record(f"  server CPU, {label} x{producers}", "s/M msg", False, cpu, started)
        started, rates = load(), {}
        for name in self.order():
            count, _, elapsed = asyncio.run(consume(self.systems[name].endpoint("tp-1024"), 100_000, 30))
            rates[name] = count / elapsed
        self.record("consume 1 KiB", "msg/s", True, rates, started)
        started, p50, p99 = load(), {}, {}
        for name in self.order():
            values = asyncio.run(paced_acks(self.systems[name].endpoint("lat-ack", linger_ms=0.0), 100, RATE,
                                            self.seconds))
            p50[name], p99[name] = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
        self.record(f"ack latency p50 @{RATE:,}/s", "ms", False, p50, started)
        self.record(f"ack latency p99 @{RATE:,}/s", "ms", False, p99, started)

    def run(self, runs: int) -> None:
        for system in self.systems.values():
            system.start()
            for name in ("tp-100", "tp-1024", "lat-ack"):
                system.create_log(name)
        for number in range(1, runs + 1):
            self.console.print(f"run {number} of {runs}")
            self.one_run()

    def close(self) -> None:
        for system in self.systems.values():
            system.close()

    def table(self, title: str) -> Table:
        table = Table("cell", "plain (range)", "TLS + auth (range)", "TLS / plain (median)", "load avg", title=title)
        for cell, entry in self.cells.items():
            unit = entry["unit"]
            ratio = statistics.median(entry["tls"]) / statistics.median(entry["plain"])
            table.add_row(cell, _range(entry["plain"], unit), _range(entry["tls"], unit), f"{ratio:.2f}",
                          _range(entry["load"], ""))
        return table


def _range(values: list[float], unit: str) -> str:
    low, high = min(values), max(values)
    digits = 0 if high >= 100 else 2 if high < 10 else 1
    return f"{low:,.{digits}f}-{high:,.{digits}f} {unit}".strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per cell (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each produce / latency run")
    args = parser.parse_args(argv)
    console = Console(width=140)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="raftka-bench-tls-") as root:
        cost = Cost(Path(root), args.seconds, console)
        try:
            cost.run(args.runs)
        finally:
            cost.close()
    title = (f"raftka with and without TLS + auth - 3 brokers on loopback, R=3, {os.cpu_count()} cores "
             f"({cpu_model('unknown')}), {args.runs} runs, {time.monotonic() - started:.0f} s")
    console.print(cost.table(title))
    (RESULTS / "tls-cost.json").write_bytes(orjson.dumps(
        {"title": title, "runs": args.runs, "seconds": args.seconds, "cells": cost.cells}, option=orjson.OPT_INDENT_2))
    console.print(f"wrote {RESULTS / 'tls-cost.json'}")


if __name__ == "__main__":
    main()
