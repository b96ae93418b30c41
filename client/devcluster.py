"""A local cluster of real broker processes on loopback: `raftka dev`, tests and benchmarks.

`LocalCluster` starts N `raftka-node` processes (one data directory each under
a root directory, a generated cluster secret, free loopback ports, a Kafka
listener on each), waits for them to be healthy, and can kill -9, stop, pause,
resume and restart any of them, and add brokers to the running cluster
(`add_broker`: ``--join``).  It talks to the brokers over HTTP only.  Ports it
picks itself are free when picked, not when a broker binds them a second later:
a first start that loses one to another process starts afresh on new ports
(`start`).  With
`security` (a `DevSecurity`) the brokers serve TLS and require authentication;
the cluster then speaks https and logs in as the bootstrap admin.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from raftka.client.devcerts import DevSecurity

SECRET_FILE = "cluster.secret"
PORT_ATTEMPTS = 3  # first starts on freshly picked ports (see LocalCluster.start)


PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range: no outgoing connection takes these meanwhile


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on loopback now (not bind-to-0 ones: clients reuse those)."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(*PORT_RANGE)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


class BrokerExitedError(RuntimeError):
    """A broker process ended while the cluster waited for it to become healthy."""

    def __init__(self, broker: int, returncode: int, log: Path):
        super().__init__(f"broker {broker} exited with {returncode}; see {log}")
        self.broker = broker
        self.log = log


def http_json(url: str, method: str = "GET", body: dict | None = None, timeout: float = 5.0,
              security: DevSecurity | None = None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if security is not None:
        headers["Authorization"] = security.authorization()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = security.ssl_context() if security is not None else None
    with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


class LocalCluster:
    def __init__(self, brokers: int = 3, data_dir: str | os.PathLike = ".raftka-data", *,
                 http_ports: list[int] | None = None, raft_ports: list[int] | None = None,
                 kafka_ports: list[int] | None = None, env: dict[str, str] | None = None, extra_args: list[str] | None = None,
                 election_timeout_ms: int | None = None, log_to_files: bool = True,
                 racks: dict[int, str] | None = None, security: DevSecurity | None = None):
        self.root = Path(data_dir)
        self.security = security.prepare() if security is not None else None
        self.ids = list(range(1, brokers + 1))
        self._given_ports = (http_ports, raft_ports, kafka_ports)
        self._ports_picked = None in self._given_ports  # start() may pick others
        self._assign_ports()
        self.env = env or {}
        self.extra_args = list(extra_args or [])
        if election_timeout_ms is not None:
            self.extra_args += ["--election-timeout-ms", str(election_timeout_ms),
                                "--heartbeat-ms", str(max(10, election_timeout_ms // 10))]
        self.log_to_files = log_to_files
        self.racks = dict(racks or {})
        self.joined: dict[int, str] = {}  # brokers added with --join -> the URL they joined through
        self.bootstrap_ids = list(self.ids)
        self.procs: dict[int, subprocess.Popen] = {}
        self._lifeline: tuple[int, int] | None = None  # pipe (read, write); brokers stop when the write end closes

    # ----------------------------------------------------------- addresses

    @property
    def bootstrap(self) -> list[str]:
        return [self.url(i) for i in self.ids]

    def url(self, broker: int) -> str:
        scheme = "https" if self.security is not None and self.security.tls else "http"
        return f"{scheme}://127.0.0.1:{self.http_ports[broker]}"

    def http_json(self, url: str, method: str = "GET", body: dict | None = None, timeout: float = 5.0):
        """`http_json` with this cluster's CA and admin credentials."""
        return http_json(url, method, body, timeout, security=self.security)

    def client_kwargs(self) -> dict:
        """Keyword arguments for the Python client (credentials and CA when secured)."""
        return self.security.client_kwargs() if self.security is not None else {}

    @property
    def kafka_bootstrap(self) -> str:
        """bootstrap.servers for Kafka clients: every broker's Kafka listener."""
        return ",".join(self.kafka_address(i) for i in self.ids)

    def kafka_address(self, broker: int) -> str:
        return f"127.0.0.1:{self.kafka_ports[broker]}"

    def peers_arg(self) -> str:
        return ",".join(f"{i}=127.0.0.1:{self.http_ports[i]}:{self.raft_ports[i]}" for i in self.bootstrap_ids)

    def secret_file(self) -> Path:
        path = self.root / SECRET_FILE
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path

    # ----------------------------------------------------------- processes

    def command(self, broker: int) -> list[str]:
        if broker in self.joined:
            where = ["--join", self.joined[broker], "--listen", f"127.0.0.1:{self.http_ports[broker]}",
                     "--raft-listen", f"127.0.0.1:{self.raft_ports[broker]}"]
        else:
            where = ["--peers", self.peers_arg()]
        rack = ["--rack", self.racks[broker]] if broker in self.racks else []
        return [sys.executable, "-m", "raftka.node.main", "--id", str(broker),
                "--data-dir", str(self.root / f"broker-{broker}"), *where, *rack,
                "--cluster-secret-file", str(self.secret_file()), "--kafka-listen", self.kafka_address(broker),
                *(self.security.broker_args() if self.security is not None else []), *self.extra_args]

    def lifeline(self) -> int:
        """The read end of a pipe whose write end only this process holds (not inheritable). Each broker watches it
        (--stop-when-fd-closes) and stops when it reaches end of file, which the kernel guarantees however this
        process ends, kill -9 included: brokers never outlive the cluster's owner. (A pipe rather than Linux's
        parent-death signal: that one fires when the forking *thread* ends, and needs preexec_fn, which is unsafe
        with threads; tests and the fault harness start brokers from threads.)"""
        if self._lifeline is None:
            self._lifeline = os.pipe()
        return self._lifeline[0]

    def add_broker(self, broker: int | None = None, *, rack: str | None = None, via: int | None = None,
                   timeout: float = 60.0) -> int:
        """Start a new broker that joins the running cluster (``--join`` through broker `via`, default the first
        running one); returns its id once it is healthy."""
        broker = broker if broker is not None else max(self.ids) + 1
        if broker not in self.ids:
            self.ids.append(broker)
            self.http_ports[broker], self.raft_ports[broker], self.kafka_ports[broker] = free_ports(3)
        if rack is not None:
            self.racks[broker] = rack
        self.joined[broker] = self.url(via if via is not None else next(iter(self.procs)))
        self.start_broker(broker)
        self.wait_healthy(timeout, [broker])
        return broker

    def start_broker(self, broker: int) -> None:
        env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": str(64 << 20), "MALLOC_TOP_PAD_": str(64 << 20), **self.env}
        if self.log_to_files:
            self.root.mkdir(parents=True, exist_ok=True)
            out = open(self.root / f"broker-{broker}.log", "ab")
        else:
            out = None
        lifeline = self.lifeline()
        self.procs[broker] = subprocess.Popen([*self.command(broker), "--stop-when-fd-closes", str(lifeline)],
                                              env=env, stdout=out, stderr=out, start_new_session=True,
                                              pass_fds=(lifeline,))
        if out is not None:
            out.close()

    def start(self, timeout: float = 30.0) -> "LocalCluster":
        """Start every broker and wait until all are healthy.  On a first start (no data directory yet) on ports
        picked here, a broker that exits because another process bound one of its ports in the meantime ("address
        already in use") has the whole cluster start again on newly picked ports, up to `PORT_ATTEMPTS` times."""
        fresh = self._ports_picked and not any((self.root / f"broker-{b}").exists() for b in self.ids)
        attempt = 1
        while True:
            for broker in self.ids:
                self.start_broker(broker)
            try:
                self.wait_healthy(timeout)
                return self
            except BrokerExitedError as exc:
                if not fresh or attempt == PORT_ATTEMPTS or b"address already in use" not in exc.log.read_bytes():
                    raise
            attempt += 1
            self._start_over_on_new_ports()

    def _start_over_on_new_ports(self) -> None:
        """Kill the brokers of a failed first start, delete what they wrote, and pick new ports for them."""
        for broker, proc in list(self.procs.items()):
            if proc.poll() is None:
                self.kill(broker)
            else:
                del self.procs[broker]
        for broker in self.ids:
            shutil.rmtree(self.root / f"broker-{broker}", ignore_errors=True)
        self._assign_ports()

    def _assign_ports(self) -> None:
        """Each broker's HTTP, Raft and Kafka port: those given to the constructor, the others picked now."""
        count = len(self.ids)
        http_ports, raft_ports, kafka_ports = self._given_ports
        ports = free_ports(3 * count) if self._ports_picked else []
        self.http_ports = dict(zip(self.ids, http_ports or ports[:count]))
        self.raft_ports = dict(zip(self.ids, raft_ports or ports[count:2 * count]))
        self.kafka_ports = dict(zip(self.ids, kafka_ports or ports[2 * count:]))

    def wait_healthy(self, timeout: float = 30.0, brokers: list[int] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = set(brokers or [b for b in self.ids if b in self.procs])
        while pending:
            for broker in list(pending):
                proc = self.procs[broker]
                if proc.poll() is not None:
                    raise BrokerExitedError(broker, proc.returncode, self.root / f"broker-{broker}.log")
                try:
                    self.http_json(self.url(broker) + "/health", timeout=1)
                    pending.discard(broker)
                except (urllib.error.URLError, OSError, ValueError):
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"brokers {sorted(pending)} not healthy after {timeout} s")
            if pending:
                time.sleep(0.1)
        if self.security is not None:
            self._wait_logged_in(deadline, brokers or [b for b in self.ids if b in self.procs])

    def _wait_logged_in(self, deadline: float, brokers: list[int]) -> None:
        """Until the admin can log in everywhere (the bootstrap users are created once a leader is elected).
        Slowly: every refused attempt counts against the brokers' failed-login limit."""
        for broker in brokers:
            delay = 0.2
            while True:
                try:
                    self.http_json(self.url(broker) + "/whoami", timeout=2)
                    break
                except (urllib.error.URLError, OSError, ValueError):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"broker {broker}: the admin cannot log in") from None
                    time.sleep(delay)
                    delay = min(1.0, delay * 2)

    def wait_kafka_registered(self, timeout: float = 30.0) -> None:
        """Wait until the metadata names every running broker's Kafka listener (Kafka clients then see them all)."""
        deadline = time.monotonic() + timeout
        wanted = {b: self.kafka_address(b) for b in self.procs}
        while True:
            for broker in list(self.procs):
                try:
                    doc = self.http_json(self.url(broker) + "/brokers", timeout=2)
                except (urllib.error.URLError, OSError, ValueError):
                    continue
                if all(d.get("kafka") == wanted.get(d["id"]) for d in doc["details"] if d["id"] in wanted):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka listeners not registered after {timeout} s")
            time.sleep(0.1)

    def kill(self, broker: int) -> None:
        """kill -9: no flush, no leadership hand-over."""
        proc = self.procs.pop(broker)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_broker(self, broker: int, timeout: float = 15.0) -> int:
        proc = self.procs.pop(broker)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()

    def pause(self, broker: int) -> None:
        os.killpg(self.procs[broker].pid, signal.SIGSTOP)

    def resume(self, broker: int) -> None:
        os.killpg(self.procs[broker].pid, signal.SIGCONT)

    def restart(self, broker: int, timeout: float = 30.0) -> None:
        if broker in self.procs:
            self.stop_broker(broker)
        self.start_broker(broker)
        self.wait_healthy(timeout, [broker])

    def close(self) -> None:
        for broker in list(self.procs):
            try:
                self.resume(broker)
            except ProcessLookupError:
                pass  # it already exited
            self.stop_broker(broker)
        if self._lifeline is not None:
            for fd in self._lifeline:
                os.close(fd)
            self._lifeline = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------- queries

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int | None = None,
                     configs: dict | None = None) -> dict:
        body = {"name": name, "partitions": partitions, "configs": configs or {}}
        if replication_factor is not None:
            body["replication_factor"] = replication_factor
        return self.http_json(self.bootstrap[0] + "/topics", "POST", body, timeout=30)

    def leader_of(self, topic: str, partition: int, timeout: float = 10.0) -> int:
        """The broker that currently leads the partition (asks the live brokers)."""
        deadline = time.monotonic() + timeout
        while True:
            for broker in list(self.procs):
                try:
                    doc = self.http_json(self.url(broker) + f"/topics/{topic}/partitions/{partition}", timeout=2)
                except (urllib.error.URLError, OSError, ValueError):
                    continue
                if doc.get("leader") in self.procs and doc.get("high_watermark") is not None:
                    return doc["leader"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader for {topic}/{partition}")
            time.sleep(0.1)


def _cli_path() -> str:
    """Where the `raftka` command is: next to this Python (a virtualenv's bin/, after `make run`)."""
    beside = Path(sys.executable).with_name("raftka")
    if beside.exists():
        return f"{beside} (on PATH after `source {beside.parent / 'activate'}`)" \
            if (beside.parent / "activate").exists() else str(beside)
    return "raftka"


class _StopRequested(Exception):
    """SIGTERM or SIGHUP reached `raftka dev`: stop the brokers as on Ctrl-C."""


def _stop_requested(signum, frame) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def run_dev(brokers: int = 3, data_dir: str = ".raftka-data", base_port: int = 9091, tls: bool = False) -> None:
    """Start a local cluster, show it working with curl-able requests, run until Ctrl-C, SIGTERM or SIGHUP (then
    stop the brokers). If `raftka dev` itself is killed, its brokers stop on their own (see `LocalCluster.lifeline`).
    With `tls`: a throwaway CA and broker certificate, authentication required, and a bootstrap admin user (see
    `DevSecurity`)."""
    http_ports = [base_port + i for i in range(brokers)]
    raft_ports = [base_port + 100 + i for i in range(brokers)]
    kafka_ports = [base_port + 10000 + i for i in range(brokers)]
    security = DevSecurity(Path(data_dir)) if tls else None
    cluster = LocalCluster(brokers, data_dir, http_ports=http_ports, raft_ports=raft_ports, kafka_ports=kafka_ports,
                           security=security)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_requested)
    # Started in the background by a script, SIGINT arrives ignored (POSIX shells do that to background jobs
    # without job control) and Ctrl-C, or `kill -INT`, would not stop the brokers: it always does here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"raftka: starting {brokers} brokers (data in {Path(data_dir).resolve()})", flush=True)
    curl = "curl"
    if security is not None:
        print(f"TLS: CA certificate {security.ca_file.resolve()}; authentication required; the superuser "
              f"'{security.admin_user}' has the password in {security.users_file.resolve()}\n"
              f"$ export RAFTKA_USER={security.admin_user} RAFTKA_PASSWORD=$(cut -d: -f2- "
              f"{security.users_file.resolve()}) RAFTKA_CA_FILE={security.ca_file.resolve()}", flush=True)
        curl = f'curl --cacert {security.ca_file.resolve()} -u "$RAFTKA_USER:$RAFTKA_PASSWORD"'
    try:
        cluster.start(timeout=60)
        first = cluster.bootstrap[0]
        topics = cluster.http_json(first + "/topics")
        if "demo" not in topics:
            cluster.create_topic("demo", partitions=3)
            print(f"$ {curl} -X POST {first}/topics -H 'Content-Type: application/json' "
                  "-d '{\"name\":\"demo\",\"partitions\":3}'", flush=True)
        body = {"records": [{"key": "user-1", "value": {"clicks": 1}}, {"key": "user-2", "value": {"clicks": 7}},
                            {"value": "hello raftka"}]}
        headers = {"Content-Type": "application/vnd.kafka.json.v2+json"}
        if security is not None:
            headers["Authorization"] = security.authorization()
        context = security.ssl_context() if security is not None else None
        request = urllib.request.Request(first + "/topics/demo", data=json.dumps(body).encode(), method="POST",
                                         headers=headers)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=15, context=context) as resp:
                    produced = json.loads(resp.read())
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        print(f"$ {curl} -X POST {first}/topics/demo -H 'Content-Type: application/vnd.kafka.json.v2+json' "
              f"-d '{json.dumps(body)}'\n{json.dumps(produced)}", flush=True)
        p = produced["offsets"][0]["partition"]
        fetch = f"{cluster.bootstrap[-1]}/topics/demo/partitions/{p}/records?offset=0"
        headers = {"Accept": "application/vnd.kafka.json.v2+json"}
        if security is not None:
            headers["Authorization"] = security.authorization()
        request = urllib.request.Request(fetch, headers=headers)
        with urllib.request.urlopen(request, timeout=15, context=context) as resp:
            print(f"$ {curl} -H 'Accept: application/vnd.kafka.json.v2+json' '{fetch}'\n{resp.read().decode()}",
                  flush=True)
        print("\nraftka is running:")
        for broker in cluster.ids:
            print(f"  broker {broker}: {cluster.url(broker)}   (health: {cluster.url(broker)}/health, "
                  f"raft state: {cluster.url(broker)}/raft, metrics: {cluster.url(broker)}/metrics)")
        print(f"  web console: {first}/ui   (every broker serves it)")
        print(f"  bootstrap for the CLI: export RAFTKA_BOOTSTRAP={','.join(cluster.bootstrap)}")
        print(f"  Kafka clients (kafka-python, aiokafka, confluent-kafka, kcat): "
              f"bootstrap.servers={cluster.kafka_bootstrap}")
        if security is None:
            print(f"    e.g. kcat -b {cluster.kafka_bootstrap} -L")
        else:
            print(f"    over SASL_SSL: security.protocol=SASL_SSL sasl.mechanism=SCRAM-SHA-512 sasl.username=admin "
                  f"sasl.password=$RAFTKA_PASSWORD ssl.ca.location={security.ca_file.resolve()}")
            print(f"    e.g. kcat -b {cluster.kafka_bootstrap} -X security.protocol=SASL_SSL -X "
                  f"sasl.mechanism=SCRAM-SHA-512 -X sasl.username=admin -X \"sasl.password=$RAFTKA_PASSWORD\" "
                  f"-X ssl.ca.location={security.ca_file.resolve()} -L")
        print(f"  the CLI: {_cli_path()}")
        print(f"  broker logs: {cluster.root.resolve() / 'broker-N.log'} (N = 1..{brokers})")
        print(f"  to start again from scratch: stop, then rm -rf {cluster.root.resolve()}")
        if security is not None:
            print("  (the CLI and the Python client read RAFTKA_USER, RAFTKA_PASSWORD and RAFTKA_CA_FILE: "
                  "`raftka --ca-file ... --user ...`, `Producer(..., username=, password=, ssl_cafile=)`)")
        print("Press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _StopRequested):
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the orderly stop short
        print("\nraftka: stopping brokers", flush=True)
        cluster.close()
