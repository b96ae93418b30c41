"""Output of `bench.compare`: the side-by-side table (rich), the JSON document and the PNG bar chart.

A result row is one metric of one workload measured on every system:
``Row(workload, metric, raftka, nats, higher_is_better, load, kafka)`` (raftka:
its Python client over HTTP; kafka: confluent-kafka over raftka's Kafka
listener); the ratios printed are raftka / NATS, with the direction that wins
beside it, and Kafka / HTTP (raftka's two front ends).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table


@dataclass
class Row:
    workload: str
    metric: str
    raftka: float | None
    nats: float | None
    higher_is_better: bool
    load: float  # 1-minute load average when the workload started
    kafka: float | None = None  # raftka through its Kafka listener (confluent-kafka)

    @property
    def ratio(self) -> float | None:
        if self.raftka is None or self.nats is None or self.nats == 0:
            return None
        return self.raftka / self.nats

    @property
    def winner(self) -> str:
        ratio = self.ratio
        if ratio is None or math.isnan(ratio):
            return "?"
        if abs(ratio - 1) < 0.05:
            return "tie"
        return "raftka" if (ratio > 1) == self.higher_is_better else "NATS"

    @property
    def kafka_over_http(self) -> float | None:
        if self.kafka is None or not self.raftka:
            return None
        return self.kafka / self.raftka


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(console: Console, rows: list[Row], title: str, notes: list[str]) -> None:
    table = Table("workload", "metric", "raftka (HTTP)", "raftka (Kafka)", "NATS", "raftka/NATS", "better",
                  "Kafka/HTTP", "load", title=title)
    previous = None
    for row in rows:
        ratio, kafka = row.ratio, row.kafka_over_http
        table.add_row("" if row.workload == previous else row.workload, row.metric, _fmt(row.raftka),
                      _fmt(row.kafka), _fmt(row.nats), "-" if ratio is None else f"{ratio:.2f}x", row.winner,
                      "-" if kafka is None else f"{kafka:.2f}x", f"{row.load:.1f}")
        previous = row.workload
    console.print(table)
    for note in notes:
        console.print(f"  * {note}", highlight=False)


def write_json(path: Path, document: dict, rows: list[Row]) -> None:
    body = {**document, "rows": [{**asdict(r), "ratio_raftka_over_nats": r.ratio, "better": r.winner,
                                  "ratio_kafka_over_http": r.kafka_over_http} for r in rows]}
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


PANELS = (  # (title, y label, metric names as in the rows, workload prefix dropped from the bar labels)
    ("produce throughput (higher is better)", "msg/s", ("msg/s",), "produce"),
    ("consume throughput (higher is better)", "msg/s", ("msg/s",), "consume"),
    ("server CPU per million messages produced", "CPU s", ("server CPU s / M msg",), "produce"),
    ("latency at a fixed rate (lower is better)", "ms", ("ack p50 ms", "ack p99 ms", "e2e p50 ms", "e2e p99 ms"),
     "latency"),
    ("leader kill -9 -> writes again", "s", ("seconds",), "failover"),
)


def _label(row: Row, prefix: str) -> str:
    return row.metric.removesuffix(" ms") if prefix == "latency" else row.workload.removeprefix(prefix).strip(" ()")


def write_chart(path: Path, rows: list[Row], title: str, footer: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 3, figsize=(15, 8.5))
    axes = grid.flat
    for ax, (panel, ylabel, metrics, prefix) in zip(axes, PANELS):
        chosen = [r for r in rows if r.metric in metrics and r.workload.startswith(prefix)]
        xs = range(len(chosen))
        width = 0.28
        for offset, system, label, color in ((-width, "raftka", "raftka (HTTP client)", "#1f77b4"),
                                             (0.0, "kafka", "raftka (confluent-kafka)", "#2ca02c"),
                                             (width, "nats", "NATS JetStream", "#ff7f0e")):
            values = [getattr(r, system) or 0 for r in chosen]
            bars = ax.bar([x + offset for x in xs], values, width, label=label, color=color)
            ax.bar_label(bars, [_fmt(v) for v in values], fontsize=7)
        ax.set_xticks(list(xs), [_label(r, prefix) for r in chosen], fontsize=8)
        ax.set_title(panel, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    notes_ax = axes[len(PANELS)]
    notes_ax.axis("off")
    notes_ax.text(0, 1, footer, fontsize=7.5, va="top", wrap=True, family="monospace")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
