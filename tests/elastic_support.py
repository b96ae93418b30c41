"""Test support for the elastic cluster: a producer that keeps writing during moves, waiting for moves, and
checks that nothing acknowledged was lost or duplicated and that every replica holds the same bytes; `slow`
for the longer scenarios (run with RAFTKA_SLOW=1; the default run keeps one per capability)."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cluster import request, retry, wait_until
from raftka.client.blocking import Producer
from raftka.client.cli import main as cli_main

BINARY = "application/vnd.kafka.binary.v2+json"


def slow(test):
    """Marks a long scenario: skipped unless RAFTKA_SLOW=1 (the default `make test` stays short)."""
    return pytest.mark.slow(pytest.mark.skipif(os.environ.get("RAFTKA_SLOW") != "1",
                                               reason="slow elastic scenario: set RAFTKA_SLOW=1")(test))


def any_url(cluster) -> str:
    return cluster.url(next(iter(cluster.procs)))


def get_json(cluster, path: str, timeout: float = 20.0):
    """GET through any running broker, retrying retriable answers; the document of the 200."""
    deadline = time.monotonic() + timeout
    while True:
        for broker in list(cluster.procs):
            try:
                resp = request(cluster.url(broker) + path, timeout=5)
            except OSError:
                continue
            if resp.status == 200:
                return resp.json()
        assert time.monotonic() < deadline, f"GET {path} did not succeed"
        time.sleep(0.2)


def raftka(cluster, *args: str) -> str:
    """Run the `raftka` CLI against the cluster; its output (it must succeed)."""
    result = CliRunner().invoke(cli_main, ["--bootstrap", ",".join(cluster.bootstrap), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def reassignments(cluster) -> list[dict]:
    return get_json(cluster, "/reassignments")["reassignments"]


def wait_moves_done(cluster, timeout: float = 90.0) -> None:
    last = []

    def done() -> bool:
        nonlocal last
        last = reassignments(cluster)
        return not last

    try:
        wait_until(done, timeout, "the reassignments to finish")
    except AssertionError:
        raise AssertionError(f"reassignments still running after {timeout} s: {last}") from None


def brokers(cluster, via: int | None = None) -> dict[int, dict]:
    """GET /brokers through any running broker, or through `via` (it answers from its own view of the metadata)."""
    if via is not None:
        return {d["id"]: d for d in retry(lambda: request(cluster.url(via) + "/brokers")).json()["details"]}
    return {d["id"]: d for d in get_json(cluster, "/brokers")["details"]}


def replicas_of(cluster, topic: str) -> list[list[int]]:
    return [p["replicas"] for p in get_json(cluster, "/metadata")["topics"][topic]["partitions"]]


def produce_values(url: str, topic: str, partition: int, values: list[bytes]) -> list[tuple[int, bytes]]:
    body = {"records": [{"value": base64.b64encode(v).decode()} for v in values]}
    resp = retry(lambda: request(f"{url}/topics/{topic}/partitions/{partition}", "POST", body, content_type=BINARY),
                 timeout=30)
    assert resp.status == 200, resp.body
    return [(o["offset"], v) for o, v in zip(resp.json()["offsets"], values)]


def read_partition(cluster, topic: str, partition: int) -> list[tuple[int, bytes]]:
    """(offset, value) of every committed record, through any broker (forwarded to the leader)."""
    out, offset = [], 0
    while True:
        resp = retry(lambda: request(f"{any_url(cluster)}/topics/{topic}/partitions/{partition}/records?"
                                     f"offset={offset}&max_bytes=1048576", accept=BINARY), timeout=30)
        assert resp.status == 200, resp.body
        batch = resp.json()
        out += [(r["offset"], base64.b64decode(r["value"])) for r in batch]
        if not batch or int(resp.headers["X-Raftka-High-Watermark"]) <= batch[-1]["offset"] + 1:
            return out
        offset = batch[-1]["offset"] + 1


class KeepProducing(threading.Thread):
    """The raftka client's idempotent Producer sending numbered values to a topic until stopped; remembers what
    was acknowledged (partition, offset, value) and any failure."""

    def __init__(self, cluster, topic: str, *, pause_s: float = 0.002):
        super().__init__(daemon=True)
        self.cluster, self.topic, self.pause_s = cluster, topic, pause_s
        self.halt = threading.Event()
        self.acked: list[tuple[int, int, bytes]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        with Producer(self.cluster.bootstrap, linger_ms=5, delivery_timeout_ms=60_000) as producer:
            futures = []
            n = 0
            while not self.halt.is_set():
                value = b"v-%07d" % n
                futures.append((value, producer.send(self.topic, value, key=b"k-%d" % n)))
                n += 1
                if len(futures) >= 200:
                    self._settle(futures[:100])
                    futures = futures[100:]
                time.sleep(self.pause_s)
            producer.flush()
            self._settle(futures)

    def _settle(self, futures) -> None:
        for value, future in futures:
            try:
                meta = future.result(timeout=90)
                self.acked.append((meta.partition, meta.offset, value))
            except Exception as exc:  # noqa: BLE001 - recorded and asserted on by the test
                self.failures.append(f"{value!r}: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.halt.set()
        self.join(120)
        assert not self.is_alive(), "the producer did not stop"


def assert_nothing_lost_or_duplicated(cluster, topic: str, acked: list[tuple[int, int, bytes]]) -> None:
    partitions = {p for p, _, _ in acked}
    logs = {p: read_partition(cluster, topic, p) for p in partitions}
    for p, log in logs.items():
        offsets = [o for o, _ in log]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), f"{topic}/{p}: offsets not dense"
        values = [v for _, v in log]
        duplicates = {v for v in values if values.count(v) > 1} if len(values) != len(set(values)) else set()
        assert not duplicates, f"{topic}/{p}: values written twice: {sorted(duplicates)[:5]}"
    by_offset = {p: dict(log) for p, log in logs.items()}
    lost = [(p, o, v) for p, o, v in acked if by_offset[p].get(o) != v]
    assert not lost, f"{len(lost)} acknowledged records lost or moved, e.g. {lost[:5]}"


def group_name(cluster, topic: str, partition: int) -> str:
    """The partition's Raft group name, from the /raft of a broker that hosts it."""
    for broker in list(cluster.procs):
        for g in request(cluster.url(broker) + "/raft").json()["groups"]:
            if g.get("partition") == f"{topic}/{partition}":
                return g["group"]
    raise AssertionError(f"no broker hosts {topic}/{partition}")


def segment_bytes(cluster, broker: int, group: str) -> bytes:
    topic_id, partition = group.split("/")
    roots = list((Path(cluster.root) / f"broker-{broker}" / "partitions").glob(f"*-{partition}-{topic_id}"))
    assert len(roots) == 1, f"broker {broker} has {roots} for group {group}"
    return b"".join(p.read_bytes() for p in sorted((roots[0] / "log").glob("*.log")))


def assert_replicas_identical(cluster, topic: str, timeout: float = 30.0) -> None:
    """Every replica of every partition of `topic` applied the same log, byte for byte on disk."""
    for p, replicas in enumerate(replicas_of(cluster, topic)):
        group = group_name(cluster, topic, p)

        def same_watermarks():
            marks = set()
            for b in replicas:
                g = next((g for g in request(cluster.url(b) + "/raft").json()["groups"] if g["group"] == group), None)
                if g is None:
                    return False
                marks.add((g["high_watermark"], g["applied_index"]))
            return len({m[0] for m in marks}) == 1

        wait_until(same_watermarks, timeout, f"every replica of {topic}/{p} to apply the same entries")
        logs = {b: segment_bytes(cluster, b, group) for b in replicas}
        first = logs[replicas[0]]
        assert first, f"{topic}/{p}: empty log"
        for b, data in logs.items():
            assert data == first, f"{topic}/{p}: broker {b}'s log differs from broker {replicas[0]}'s"
