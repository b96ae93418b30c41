"""Produce and fetch traffic counters of one broker, for `/metrics` (and the web console's charts).

Counted by the services (`ProduceService.append`, `FetchService.read`), so
traffic of every front end, HTTP and Kafka, is counted in one place, and
where the partition leader serves it: a forwarded request is counted once,
by the broker that did the work. Records and RecordBatch bytes committed per
topic (an idempotent retry answered from the producer table is not counted
again), records and bytes fetched per topic, and the time a produce took on
the leader, from the service taking the batch to the batch committed and
applied.
"""

from __future__ import annotations

from raftka.node.metrics import MetricsRegistry

PRODUCE_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class TrafficMetrics:
    def __init__(self, registry: MetricsRegistry) -> None:
        self._produced_records = registry.counter(
            "raftka_produced_records_total", "Records committed by this broker as partition leader.", ("topic",))
        self._produced_bytes = registry.counter(
            "raftka_produced_bytes_total", "RecordBatch bytes committed by this broker as partition leader.",
            ("topic",))
        self._fetched_records = registry.counter(
            "raftka_fetched_records_total", "Records served by this broker as partition leader.", ("topic",))
        self._fetched_bytes = registry.counter(
            "raftka_fetched_bytes_total", "RecordBatch bytes served by this broker as partition leader.", ("topic",))
        self._produce_seconds = registry.histogram(
            "raftka_produce_seconds", "Produce latency on the leader: request in to batch committed and applied.",
            buckets=PRODUCE_LATENCY_BUCKETS)

    def produced(self, topic: str, records: int, size: int, seconds: float) -> None:
        self._produced_records.labels(topic).inc(records)
        self._produced_bytes.labels(topic).inc(size)
        self._produce_seconds.observe(seconds)

    def fetched(self, topic: str, records: int, size: int) -> None:
        if records:
            self._fetched_records.labels(topic).inc(records)
            self._fetched_bytes.labels(topic).inc(size)


__all__ = ["TrafficMetrics"]
