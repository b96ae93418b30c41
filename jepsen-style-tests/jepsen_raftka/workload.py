"""The workload: worker OS processes running client threads (client.py) at a rate.

``Workload`` (runner side) starts ``processes`` workers as ``python -m
jepsen_raftka.workload CONFIG INDEX`` (managed like the brokers: own process
group, log file, the run's marker for stale-process cleanup) and stops them
with SIGTERM (clients finish their current op first; SIGKILL after a grace
period). Worker w runs the client slots w, w + processes, ... of the
``concurrency`` slots, one thread each: requests block on the network, so
threads give the concurrency and the worker processes spread the JSON work
over cores. Each slot writes its own history file (``HistoryRecorder``, every
event stamped with the machine-wide monotonic clock, so each file is in time
order), and ``merge_histories`` joins them with the runner's (nemesis, final
polls) into one history ordered by time.

A slot runs one client process at a time, sequentially, paced to
``rate / concurrency`` ops per second: it picks an op by weight (``send``,
``poll``, ``assign``, ``crash``, and ``commit`` / ``list_committed`` when the
run has consumer groups); the client adapts consumer ops to its mode
(``ClientProcess.consumer_op``: a consumer that is not ready assigns or
subscribes first).
Process ids of slot j are j, j + concurrency, j + 2 * concurrency, ...: an
info completion retires the id and the next one starts with a fresh client.
Send values are unique per run: slot j sends j, j + concurrency, ...
"""

from __future__ import annotations

import heapq
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import teardown
from .api import BrokerApi
from .client import ClientProcess, ClientSettings
from .history import HistoryRecorder
from .processes import ManagedProcess, child_environment
from .security import ApiSecurity

PACKAGE_PARENT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = {"send": 0.55, "poll": 0.30, "assign": 0.05, "crash": 0.02,
                   "commit": 0.04, "list_committed": 0.04}
GROUP_OPS = frozenset({"commit", "list_committed"})
MAX_LAG_S = 1.0  # a slot that falls this far behind its pace stops catching up


@dataclass(frozen=True)
class WorkloadConfig:
    settings: ClientSettings
    brokers: Mapping[int, tuple[str, int]]  # node -> address as CLIENT reaches it
    rate: float = 200.0  # ops per second, all clients together
    concurrency: int = 32  # client slots (threads)
    processes: int = 4  # worker OS processes the slots are spread over
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    seed: int = 0
    kafka_brokers: Mapping[int, tuple[str, int]] = field(default_factory=dict)  # node -> Kafka listener address
    security: ApiSecurity | None = None  # a --tls run: TLS and the admin's credentials (from a file)

    def __post_init__(self) -> None:
        if self.settings.protocol == "kafka" and not self.kafka_brokers:
            raise ValueError("Kafka-protocol clients need the brokers' Kafka addresses")
        if self.rate <= 0 or self.concurrency < 1 or self.processes < 1:
            raise ValueError("a workload needs rate > 0, concurrency >= 1 and processes >= 1")
        unknown = set(self.weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown ops in weights: {sorted(unknown)}")

    @property
    def worker_count(self) -> int:
        return min(self.processes, self.concurrency)

    def slots_of(self, worker: int) -> range:
        return range(worker, self.concurrency, self.worker_count)

    def ops(self) -> dict[str, float]:
        """The weighted ops this run does (group ops only with a group)."""
        return {f: w for f, w in self.weights.items()
                if w > 0 and (self.settings.group is not None or f not in GROUP_OPS)}

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings.to_json(), "brokers": {str(n): list(a) for n, a in self.brokers.items()},
                "rate": self.rate, "concurrency": self.concurrency, "processes": self.processes,
                "weights": dict(self.weights), "seed": self.seed,
                "kafka_brokers": {str(n): list(a) for n, a in self.kafka_brokers.items()},
                "security": None if self.security is None else self.security.to_json()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> WorkloadConfig:
        return cls(ClientSettings.from_json(doc["settings"]),
                   {int(n): (a[0], int(a[1])) for n, a in doc["brokers"].items()},
                   doc["rate"], doc["concurrency"], doc["processes"], doc["weights"], doc["seed"],
                   {int(n): (a[0], int(a[1])) for n, a in doc.get("kafka_brokers", {}).items()},
                   ApiSecurity.from_json(doc.get("security")))


def history_path(directory: Path, slot: int) -> Path:
    return directory / f"history-{slot}.jsonl"


# --------------------------------------------------------------------- worker side


def client_factory(config: WorkloadConfig, rng: random.Random,
                   recorder: HistoryRecorder) -> Callable[[int], ClientProcess]:
    """process id -> a fresh client of the run's protocol (HTTP, or Kafka via confluent-kafka)."""
    if config.settings.protocol == "kafka":
        from .kafka_client import KafkaClientProcess  # confluent-kafka is needed by Kafka runs only

        bootstrap = ",".join(f"{host}:{port}" for host, port in config.kafka_brokers.values())
        kafka_security = config.security.kafka_config() if config.security is not None else None
        return lambda process: KafkaClientProcess(process, bootstrap, recorder, config.settings, rng, kafka_security)
    api = BrokerApi(config.brokers, rng, config.security)
    return lambda process: ClientProcess(process, api, recorder, config.settings, rng)


def run_slot(config: WorkloadConfig, slot: int, path: str | os.PathLike[str],
             should_stop: Callable[[], bool]) -> None:
    """Run client processes in one slot until should_stop() is true (checked between ops)."""
    rng = random.Random(config.seed * 7919 + slot)
    ops = config.ops()
    names, weights = list(ops), list(ops.values())
    interval = config.concurrency / config.rate
    sent = 0
    with HistoryRecorder(path) as recorder:
        new_client = client_factory(config, rng, recorder)
        process = slot
        client = new_client(process)
        next_at = time.monotonic() + rng.uniform(0, interval)
        while not should_stop():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -MAX_LAG_S:
                next_at = time.monotonic()
            next_at += interval * rng.uniform(0.5, 1.5)
            f = client.consumer_op(rng.choices(names, weights)[0])
            if f == "send":
                retired = client.send(sent * config.concurrency + slot)
                sent += 1
            else:
                retired = getattr(client, f)()
            if retired:
                client.close()
                process += config.concurrency
                client = new_client(process)
        client.close()


def main(argv: list[str]) -> int:
    """``python -m jepsen_raftka.workload CONFIG.json WORKER``: the worker's slots, one thread each,
    history files next to the config."""
    config_path = Path(argv[0])
    config = WorkloadConfig.from_json(orjson.loads(config_path.read_bytes()))
    stop = threading.Event()
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    threads = [threading.Thread(target=run_slot, name=f"slot-{slot}",
                                args=(config, slot, history_path(config_path.parent, slot),
                                      lambda: stop.is_set() or os.getppid() != parent))
               for slot in config.slots_of(int(argv[1]))]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) and not stop.wait(0.5):
        if os.getppid() != parent:  # the runner died: do not outlive it
            stop.set()
    for t in threads:
        t.join()
    return 0


# --------------------------------------------------------------------- runner side


class Workload:
    """The worker processes of one run; files under ``<run_dir>/workload/``."""

    def __init__(self, config: WorkloadConfig, run_dir: str | os.PathLike[str], run_token: str) -> None:
        self.config = config
        self.dir = Path(run_dir) / "workload"
        self.dir.mkdir(parents=True, exist_ok=True)
        config_path = self.dir / "config.json"
        config_path.write_bytes(orjson.dumps(config.to_json(), option=orjson.OPT_INDENT_2))
        pythonpath = os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")) if p)
        env = child_environment(run_token, {"PYTHONPATH": pythonpath})
        self.history_paths = [history_path(self.dir, slot) for slot in range(config.concurrency)]
        self.workers = [
            ManagedProcess(f"worker {w}", [sys.executable, "-m", "jepsen_raftka.workload", str(config_path), str(w)],
                           env, self.dir / f"worker-{w}.log")
            for w in range(config.worker_count)
        ]
        self._read_upto = [0] * config.concurrency
        self._teardown_key = teardown.register(self.stop)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every worker, wait for their current ops (request timeout + margin), then SIGKILL."""
        if grace_s is None:
            grace_s = self.config.settings.request_timeout_ms / 1000 + 4.0
        for worker in self.workers:
            if worker.running:
                worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(w.running for w in self.workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for worker in self.workers:
            worker.kill()  # reaps; SIGKILL only reaches a worker still running
        teardown.unregister(self._teardown_key)

    def dead_workers(self) -> list[str]:
        """Workers that exited on their own (a crash of the harness, not of the system under test)."""
        return [f"{w.name} exited with {w.returncode}" for w in self.workers
                if w.returncode is not None and w.returncode != 0 and w.returncode != -signal.SIGKILL]

    def new_events(self) -> Iterator[dict[str, Any]]:
        """Events the clients wrote since the last call (complete lines only)."""
        for i, path in enumerate(self.history_paths):
            try:
                with open(path, "rb") as f:
                    f.seek(self._read_upto[i])
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            self._read_upto[i] += end
            for line in data[:end].splitlines():
                if line.strip():
                    yield orjson.loads(line)

    def wait_for_ok_send(self, after_ns: int, timeout_s: float, poll_s: float = 0.2) -> bool:
        """Until some send invoked at or after after_ns (monotonic ns) is acknowledged."""
        invoked: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            for e in self.new_events():
                if e.get("f") != "send":
                    continue
                if e["type"] == "invoke":
                    invoked[e["process"]] = e["time"]
                elif e["type"] == "ok" and invoked.get(e["process"], -1) >= after_ns:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)


def _events(path: Path, rank: int) -> Iterator[tuple[int, int, int, bytes]]:
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if line.strip() and line.endswith(b"\n"):  # a worker killed mid-line leaves a torn last line
                yield orjson.loads(line)["time"], rank, i, line


def merge_histories(parts: Iterable[Path], out: Path) -> int:
    """Merge history files (each in time order) into one by time; returns the event count."""
    streams = [_events(p, rank) for rank, p in enumerate(parts) if p.exists()]
    count = 0
    with open(out, "wb") as f:
        for _, _, _, line in heapq.merge(*streams):
            f.write(line)
            count += 1
    return count


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
