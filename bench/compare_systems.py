"""The systems of `bench.compare` as seen by the orchestrator: start, logs, server CPU, leader kill.

`RaftkaSystem` runs a 3-broker `LocalCluster` (its Python client over HTTP),
`KafkaSystem` is the same cluster reached by confluent-kafka through its Kafka
listeners (topics of its own, prefixed "k-"), `NatsSystem` a 3-server
`NatsCluster`; all under one temporary root. Each makes one-partition /
one-stream logs with three replicas and hands out endpoints
(`compare_clients`) for them, measures the CPU seconds its server processes
use (psutil, user + system, summed over the live servers) and the bytes they write to
disk (/proc/PID/io write_bytes), and kill -9s the
leader of a log, handing back an endpoint that only knows the survivors
(`recover` then brings the shared raftka cluster back to three brokers).
With ``tls`` both run with TLS on client and replication links and with authentication (raftka:
`DevSecurity`, a bootstrap admin; NATS: the same CA's certificate and a user with a password).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
from raftka.client.devcerts import DevSecurity, write_dev_certificates
from raftka.client.devcluster import LocalCluster

from bench.compare_clients import KafkaEndpoint, NatsEndpoint, RaftkaEndpoint
from bench.nats_cluster import USER as NATS_USER
from bench.nats_cluster import NatsCluster


class ServerMeter:
    """CPU seconds and bytes written to disk of a set of server processes between start() and stop().

    Bytes written are /proc/PID/io ``write_bytes``: what the process caused to be sent to the
    storage layer (page-cache pages it dirtied), whether or not it fsynced them yet.
    """

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.before: dict[int, tuple[float, int]] = {}
        self.seconds = 0.0
        self.written = 0

    @staticmethod
    def _sample(proc: psutil.Process) -> tuple[float, int]:
        try:
            t = proc.cpu_times()
            return t.user + t.system, proc.io_counters().write_bytes
        except psutil.NoSuchProcess:
            return 0.0, 0

    def start(self) -> None:
        self.before = {p.pid: self._sample(p) for p in self.procs}

    def stop(self) -> None:
        after = {p.pid: self._sample(p) for p in self.procs}
        self.seconds = sum(max(0.0, after[pid][0] - cpu) for pid, (cpu, _) in self.before.items())
        self.written = sum(max(0, after[pid][1] - written) for pid, (_, written) in self.before.items())


class RaftkaSystem:
    name = "raftka"

    def __init__(self, root: Path, tls: bool = False) -> None:
        self.cluster = LocalCluster(brokers=3, data_dir=root / "raftka",
                                    security=DevSecurity(root / "raftka") if tls else None)
        self.security = tuple(self.cluster.client_kwargs().items())
        self.killed: int | None = None

    def start(self) -> None:
        self.cluster.start(timeout=60)
        self.cluster.wait_kafka_registered()

    def close(self) -> None:
        self.cluster.close()

    def create_log(self, name: str) -> None:
        self.cluster.create_topic(name, partitions=1, replication_factor=3)
        self.cluster.leader_of(name, 0, timeout=30)

    def endpoint(self, name: str, linger_ms: float = 5.0) -> RaftkaEndpoint:
        return RaftkaEndpoint(tuple(self.cluster.bootstrap), name, linger_ms, security=self.security)

    def server_pids(self) -> list[int]:
        return [p.pid for p in self.cluster.procs.values()]

    def meter(self) -> ServerMeter:
        return ServerMeter(self.server_pids())

    def leader_pid(self, name: str) -> int:
        return self.cluster.procs[self.cluster.leader_of(name, 0)].pid

    def kill_leader(self, name: str, linger_ms: float = 5.0) -> tuple[RaftkaEndpoint, Callable[[], None], str]:
        """(endpoint on the survivors, kill callback, description of the victim)."""
        leader = self.cluster.leader_of(name, 0)
        survivors = tuple(self.cluster.url(b) for b in self.cluster.ids if b != leader)
        meta = self._metadata_leader()
        what = f"broker {leader}" + (" (also the metadata leader)" if meta == leader else "")
        return RaftkaEndpoint(survivors, name, linger_ms, security=self.security), lambda: self._kill(leader), what

    def _kill(self, broker: int) -> None:
        self.cluster.kill(broker)
        self.killed = broker

    def recover(self) -> None:
        """Restart the broker a failover killed (the Kafka system shares this cluster)."""
        if self.killed is not None:
            self.cluster.restart(self.killed, timeout=60)
            self.cluster.wait_kafka_registered()
            self.killed = None

    def replica_backlog(self) -> int:
        """Raft entries the followers of every group still lack, as the leaders that answer see it."""
        backlog = 0
        for broker in self.cluster.procs:
            try:
                groups = self.cluster.http_json(self.cluster.url(broker) + "/raft", timeout=2)["groups"]
            except OSError:  # a stopped broker leads nothing
                continue
            backlog += sum(f["lag"] for group in groups for f in group["followers"].values())
        return backlog

    def _metadata_leader(self) -> int | None:
        for broker in self.cluster.procs:
            try:
                return self.cluster.http_json(self.cluster.url(broker) + "/health", timeout=2).get("metadata_leader")
            except OSError:
                continue
        return None


class KafkaSystem:
    """raftka's cluster of `RaftkaSystem`, through its Kafka listeners (confluent-kafka); logs of its own."""

    name = "kafka"
    PREFIX = "k-"

    def __init__(self, raftka: RaftkaSystem) -> None:
        self.raftka = raftka
        self.cluster = raftka.cluster
        security = raftka.cluster.security
        self.security = () if security is None else (
            ("security.protocol", "SASL_SSL"), ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", security.admin_user), ("sasl.password", security.admin_password),
            ("ssl.ca.location", str(security.ca_file)))

    def start(self) -> None:
        """The cluster is the raftka system's: started there."""

    def close(self) -> None:
        """The cluster is the raftka system's: closed there."""

    def create_log(self, name: str) -> None:
        self.raftka.create_log(self.PREFIX + name)

    def endpoint(self, name: str, linger_ms: float = 5.0) -> KafkaEndpoint:
        return KafkaEndpoint(self.cluster.kafka_bootstrap, self.PREFIX + name, linger_ms, self.security)

    def server_pids(self) -> list[int]:
        return self.raftka.server_pids()

    def meter(self) -> ServerMeter:
        return self.raftka.meter()

    def leader_pid(self, name: str) -> int:
        return self.raftka.leader_pid(self.PREFIX + name)

    def kill_leader(self, name: str, linger_ms: float = 5.0) -> tuple[KafkaEndpoint, Callable[[], None], str]:
        _, kill, what = self.raftka.kill_leader(self.PREFIX + name, linger_ms)
        leader = self.cluster.leader_of(self.PREFIX + name, 0)
        survivors = ",".join(self.cluster.kafka_address(b) for b in self.cluster.ids if b != leader)
        return KafkaEndpoint(survivors, self.PREFIX + name, linger_ms, self.security), kill, what

    def recover(self) -> None:
        self.raftka.recover()


class NatsSystem:
    name = "nats"

    def __init__(self, root: Path, tls: bool = False) -> None:
        self.tls = None
        if tls:
            self.tls = (write_dev_certificates(root / "nats-tls"), secrets.token_urlsafe(18))
        self.cluster = NatsCluster(servers=3, root=root / "nats", tls=self.tls)
        self.logs: list[str] = []

    def _endpoint(self, servers: tuple[str, ...], stream: str) -> NatsEndpoint:
        if self.tls is None:
            return NatsEndpoint(servers, stream)
        certs, password = self.tls
        return NatsEndpoint(servers, stream, str(certs.ca_cert), NATS_USER, password)

    def start(self) -> None:
        self.cluster.start(timeout=60)

    def close(self) -> None:
        self.cluster.close()

    def create_log(self, name: str) -> None:
        asyncio.run(self.endpoint(name).create_stream())
        self.logs.append(name)

    def replica_backlog(self) -> int:
        """Messages the followers of every stream created here still lack."""
        return sum(asyncio.run(self.endpoint(name).replica_backlog()) for name in self.logs)

    def endpoint(self, name: str, linger_ms: float = 5.0) -> NatsEndpoint:
        """``linger_ms`` is a raftka producer setting: accepted so both systems take the same calls."""
        return self._endpoint(tuple(self.cluster.urls), name.upper().replace("-", "_"))

    def server_pids(self) -> list[int]:
        return [p.pid for p in self.cluster.procs.values()]

    def meter(self) -> ServerMeter:
        return ServerMeter(self.server_pids())

    def kill_leader(self, name: str, linger_ms: float = 5.0) -> tuple[NatsEndpoint, Callable[[], None], str]:
        endpoint = self.endpoint(name)
        leader = asyncio.run(endpoint.stream_leader())
        survivors = tuple(self.cluster.url(n) for n in self.cluster.names if n != leader and n in self.cluster.procs)
        what = f"server {leader}" + (" (also the JetStream meta leader)" if self._meta_leader() == leader else "")
        return self._endpoint(survivors, endpoint.stream), lambda: self.cluster.kill(leader), what

    def recover(self) -> None:
        """Nothing runs on NATS after its failover."""

    def _meta_leader(self) -> str | None:
        for name in self.cluster.procs:
            try:
                url = f"http://127.0.0.1:{self.cluster.monitor_ports[name]}/jsz"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return json.loads(resp.read()).get("meta_cluster", {}).get("leader")
            except OSError:
                continue
        return None
