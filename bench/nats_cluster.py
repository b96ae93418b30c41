"""A local NATS JetStream cluster for side-by-side benchmarks: N `nats-server` processes on loopback.

`NatsCluster` writes one config file per server into a directory (client,
cluster-route and monitoring ports on 127.0.0.1, JetStream with file storage
in a per-server store directory), starts the servers, waits until every one
answers its `/healthz` monitoring endpoint with JetStream enabled, and can
kill -9 any of them. It knows nothing about streams: clients (nats-py) do that.
With `tls` (a `raftka.client.devcerts.DevCertificates` and a password) the client and route
ports speak TLS with that CA's certificate (routes verify each other) and clients must log in as
user `bench`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from raftka.client.devcerts import DevCertificates
from raftka.client.devcluster import free_ports

CLUSTER_NAME = "raftka-bench"
USER = "bench"


def nats_server_binary() -> str:
    path = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
    if path is None:
        raise FileNotFoundError("nats-server not found: `apt-get install nats-server` (Debian/Ubuntu)")
    return path


def nats_server_version() -> str:
    out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10,
                         check=False)
    return out.stdout.strip() or out.stderr.strip()


class NatsCluster:
    def __init__(self, servers: int = 3, root: str | os.PathLike = ".nats-bench",
                 tls: tuple[DevCertificates, str] | None = None) -> None:
        self.root = Path(root)
        self.tls = tls
        self.names = [f"n{i}" for i in range(1, servers + 1)]
        ports = free_ports(3 * servers)
        self.client_ports = dict(zip(self.names, ports[:servers]))
        self.route_ports = dict(zip(self.names, ports[servers : 2 * servers]))
        self.monitor_ports = dict(zip(self.names, ports[2 * servers :]))
        self.procs: dict[str, subprocess.Popen] = {}

    def url(self, name: str) -> str:
        return f"nats://127.0.0.1:{self.client_ports[name]}"

    @property
    def urls(self) -> list[str]:
        return [self.url(n) for n in self.names]

    def config(self, name: str) -> str:
        routes = ", ".join(f'"nats-route://127.0.0.1:{self.route_ports[n]}"' for n in self.names)
        store = (self.root / name).resolve()
        tls, auth = "", ""
        if self.tls is not None:
            certs, password = self.tls
            tls = (f'  tls {{ cert_file: "{certs.broker_cert}", key_file: "{certs.broker_key}", '
                   f'ca_file: "{certs.ca_cert}" }}\n')
            auth = f'authorization {{ user: "{USER}", password: "{password}" }}\n' + tls.strip() + "\n"
        return (
            f'server_name: "{name}"\n'
            f'listen: "127.0.0.1:{self.client_ports[name]}"\n'
            f'http: "127.0.0.1:{self.monitor_ports[name]}"\n'
            "max_payload: 8MB\n"
            f"{auth}"
            "jetstream {\n"
            f'  store_dir: "{store}"\n'
            "  max_memory_store: 256MB\n"
            "  max_file_store: 64GB\n"
            "}\n"
            "cluster {\n"
            f'  name: "{CLUSTER_NAME}"\n'
            f'  listen: "127.0.0.1:{self.route_ports[name]}"\n'
            f"  routes: [{routes}]\n"
            f"{tls}"
            "}\n"
        )

    def start(self, timeout: float = 30.0) -> NatsCluster:
        binary = nats_server_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            conf = self.root / f"{name}.conf"
            conf.write_text(self.config(name))
            with open(self.root / f"{name}.log", "ab") as out:
                self.procs[name] = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out,
                                                    start_new_session=True)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.procs)
        while pending:
            for name in list(pending):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"nats-server {name} exited with {self.procs[name].returncode}; "
                                       f"see {self.root / f'{name}.log'}")
                url = f"http://127.0.0.1:{self.monitor_ports[name]}/healthz?js-enabled-only=true"
                try:
                    with urllib.request.urlopen(url, timeout=1) as resp:
                        if resp.status == 200:
                            pending.discard(name)
                except (urllib.error.URLError, OSError):
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"nats-servers {sorted(pending)} not healthy after {timeout} s")
            if pending:
                time.sleep(0.1)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def kill(self, name: str) -> None:
        """kill -9: no flush, no leadership hand-over."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
