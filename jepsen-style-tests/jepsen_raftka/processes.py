"""Processes of the cluster's hosts: start, stop, kill -9, pause, power failure, disk loss, rejoin, health.

``ManagedProcess`` is one OS process in its own process group (signals go to
the whole group), its stdout+stderr appended to a log file. ``Brokers`` runs
one such process per node of a cluster (netns.py / loopback.py), by default
``python -m raftka.node.main`` with the cluster's addresses, and owns each
node's directory under the run directory::

    <run_dir>/nodes/n<id>/data          --data-dir
    <run_dir>/nodes/n<id>/fsync.ledger  RAFTKA_FSYNC_LEDGER (power-failure simulation)
    <run_dir>/nodes/n<id>/broker.log    stdout+stderr of every incarnation, delimited
    <run_dir>/nodes/n<id>/faketime      FAKETIME_TIMESTAMP_FILE (only with clock_faults)

Environment of every child: the harness's own minus proxy settings and
inherited RAFTKA_* variables, plus RAFTKA_JEPSEN_RUN=<run token> (lets
``kill_stale_processes`` find orphans of crashed runs), the ledger, the
cluster secret (RAFTKA_CLUSTER_SECRET, kept out of ps) and RAFTKA_CANARY
when a canary bug is switched on.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from raftka.storage.powerloss import PowerLossReport, apply_ledger

from . import runslot, teardown
from .topology import CLIENT

RUN_MARKER_ENV = "RAFTKA_JEPSEN_RUN"
CANARIES = ("ack-before-commit", "no-fsync", "follower-reads", "no-dedup", "commit-offset-lww", "skip-truncate",
            "wiped-node-votes", "full-disk-keeps-leadership", "new-replica-votes")
HARNESS_LINE = "--- harness: "  # how the harness marks its own lines in a broker log
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ProcessFailed(RuntimeError):
    """A managed process exited or never became healthy; the message carries its log tail."""


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One process (group) with a log file; restartable."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.paused = False
        self._popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            log.write(f"{HARNESS_LINE}starting {self.name} at {stamp}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self.paused = False

    def signal(self, sig: int) -> None:
        """Send sig to the process group (a no-op once the group is gone)."""
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def kill(self) -> None:
        """kill -9 the group and reap the process."""
        self.signal(signal.SIGKILL)
        if self._popen is not None:
            self._popen.wait(timeout=10)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP the group; returns once the process is stopped (signals are asynchronous)."""
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 2.0
        while self.running and self.state() not in ("T", None) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.paused = self.running

    def state(self) -> str | None:
        """The kernel's one-letter state of the process (R, S, T, Z, ...), None if gone."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                return stat.read().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return None

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (after SIGCONT, should it be paused), then SIGKILL after timeout_s."""
        if not self.running:
            self.kill()  # reap a dead leader and any stragglers of its group
            return
        self.resume()
        self.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=timeout_s)
        self.kill()


def child_environment(run_token: str, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in _PROXY_VARS and not k.startswith("RAFTKA_")}
    env["PYTHONUNBUFFERED"] = "1"
    env[RUN_MARKER_ENV] = run_token
    env.update(extra)
    return env


def libfaketime_path() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    return found[0] if found else None


def http_ok(url: str, timeout_s: float = 1.0, context: ssl.SSLContext | None = None) -> bool:
    """GET url (never through a proxy; https trusting `context`); True on a 2xx answer."""
    opener = _NO_PROXY if context is None else urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


Command = Callable[["Brokers", int], list[str]]


def raftka_node_command(brokers: Brokers, node: int) -> list[str]:
    """``python -m raftka.node.main`` with node's id, data dir and the addresses it uses: ``--peers`` (the
    bootstrap nodes) for a node that bootstraps the cluster, ``--join`` (every bootstrap node) and its own
    address as ``--advertised-host`` for a node that joins it; with a Kafka listener, advertised at the address
    CLIENT reaches it by, when the cluster has a "kafka" service; and the run's security flags
    (``Brokers.node_args``)."""
    cluster = brokers.cluster
    http_host, http_port = cluster.bind_address(node, "http")
    raft_host, raft_port = cluster.bind_address(node, "raft")
    common = [sys.executable, "-m", "raftka.node.main", "--id", str(node), "--data-dir", str(brokers.data_dir(node)),
              "--listen", f"{http_host}:{http_port}", "--raft-listen", f"{raft_host}:{raft_port}", *brokers.node_args]
    if "kafka" in cluster.services:
        kafka_host, kafka_port = cluster.bind_address(node, "kafka")
        advertised_host, advertised_port = cluster.address(CLIENT, node, "kafka")
        common += ["--kafka-listen", f"{kafka_host}:{kafka_port}",
                   "--kafka-advertise", f"{advertised_host}:{advertised_port}"]
    if node in brokers.joiners:
        scheme = "https" if brokers.health_context is not None else "http"
        urls = ",".join("{}://{}:{}".format(scheme, *cluster.address(node, peer, "http"))
                        for peer in brokers.bootstrap if peer != node)
        return [*common, "--join", urls, "--advertised-host", http_host]
    peers = []
    for peer in brokers.bootstrap:
        host, peer_http = cluster.address(node, peer, "http")
        raft_peer_host, peer_raft = cluster.address(node, peer, "raft")
        if host != raft_peer_host:
            raise ValueError(f"node {peer}: HTTP and Raft hosts differ ({host}, {raft_peer_host})")
        peers.append(f"{peer}={host}:{peer_http}:{peer_raft}")
    return [*common, "--peers", ",".join(peers)]


class Brokers:
    """One managed process per node of a cluster, with the node's files and faults.

    command(brokers, node) gives the argv (run on the node's host); ``bootstrap`` names the nodes that
    bootstrap the cluster (default: all), the others join it (``--join``) when first started, and so does
    a node after ``rejoin``; secret defaults to
    a random one per run; health_service names the cluster service whose
    ``GET /health`` says a node is ready (None: running is ready); clock_faults
    preloads libfaketime so that ClockJump can shift the node's clocks. node_args are
    added to every broker's command line: by default ``--auth none`` (netns brokers bind
    to non-loopback addresses, where raftka requires authentication unless told
    otherwise); a ``--tls`` run gives its TLS and auth flags and ``tls_ca``, the CA the
    health checks trust (then over https).
    """

    def __init__(self, cluster, run_dir: str | os.PathLike[str], *, command: Command = raftka_node_command,
                 secret: str | None = None, canary: str | None = None, env: Mapping[str, str] | None = None,
                 health_service: str | None = "http", clock_faults: bool = False,
                 bootstrap: Iterable[int] | None = None, node_args: Sequence[str] = ("--auth", "none"),
                 tls_ca: str | None = None) -> None:
        if canary is not None and canary not in CANARIES:
            raise ValueError(f"unknown canary {canary!r}; known: {', '.join(CANARIES)}")
        self.cluster = cluster
        self.bootstrap = tuple(cluster.nodes if bootstrap is None else sorted(bootstrap))
        self.joiners = {n for n in cluster.nodes if n not in self.bootstrap}
        self._command = command
        self.run_dir = Path(run_dir).resolve()
        self.secret = secret or secrets.token_hex(16)
        self.canary = canary
        self.health_service = health_service
        self.clock_faults = clock_faults
        self.node_args = tuple(node_args)
        self.health_context = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
        preload = libfaketime_path() if clock_faults else None
        if clock_faults and preload is None:
            raise RuntimeError("clock faults need libfaketime (Debian package faketime: make deb-packages)")
        self.processes: dict[int, ManagedProcess] = {}
        for node in cluster.nodes:
            self.data_dir(node).mkdir(parents=True, exist_ok=True)
            extra = {"RAFTKA_FSYNC_LEDGER": str(self.ledger_path(node)), "RAFTKA_CLUSTER_SECRET": self.secret}
            if canary is not None:
                extra["RAFTKA_CANARY"] = canary
            if preload is not None:
                self.set_clock_offset(node, 0)
                extra.update(LD_PRELOAD=preload, FAKETIME_TIMESTAMP_FILE=str(self.faketime_path(node)),
                             FAKETIME_CACHE_DURATION="1")
            extra.update(env or {})
            argv = cluster.command(node, command(self, node))
            self.processes[node] = ManagedProcess(f"node {node}", argv, child_environment(cluster.run_token, extra),
                                                  self.log_path(node))
        self._teardown_key = teardown.register(self.close)

    # ----------------------------------------------------------------- layout

    def node_dir(self, node: int) -> Path:
        return self.run_dir / "nodes" / f"n{node}"

    def data_dir(self, node: int) -> Path:
        return self.node_dir(node) / "data"

    @staticmethod
    def data_dir_in(run_dir: str | os.PathLike[str], node: int) -> Path:
        """data_dir(node) of the Brokers a run in run_dir will have (known before they exist)."""
        return Path(run_dir).resolve() / "nodes" / f"n{node}" / "data"

    def ledger_path(self, node: int) -> Path:
        return self.node_dir(node) / "fsync.ledger"

    def log_path(self, node: int) -> Path:
        return self.node_dir(node) / "broker.log"

    def faketime_path(self, node: int) -> Path:
        return self.node_dir(node) / "faketime"

    def health_url(self, node: int) -> str | None:
        if self.health_service is None:
            return None
        host, port = self.cluster.address(CLIENT, node, self.health_service)
        return f"{'https' if self.health_context else 'http'}://{host}:{port}/health"

    # ----------------------------------------------------------------- control

    def _each(self, nodes: Iterable[int] | None) -> list[ManagedProcess]:
        return [self.processes[n] for n in (self.cluster.nodes if nodes is None else nodes)]

    def start(self, nodes: Iterable[int] | None = None) -> None:
        """Start the given (default: all) nodes that are not running."""
        for process in self._each(nodes):
            if not process.running:
                process.start()

    def kill(self, nodes: Iterable[int] | None = None) -> None:
        for process in self._each(nodes):
            process.kill()

    def pause(self, nodes: Iterable[int] | None = None) -> None:
        for process in self._each(nodes):
            process.pause()

    def resume(self, nodes: Iterable[int] | None = None) -> None:
        for process in self._each(nodes):
            process.resume()

    def stop(self, nodes: Iterable[int] | None = None) -> None:
        for process in self._each(nodes):
            process.stop()

    def running(self, node: int) -> bool:
        return self.processes[node].running

    def paused(self, node: int) -> bool:
        return self.processes[node].paused

    def rejoin(self, node: int) -> None:
        """Stop node, empty its data directory and start it again with ``--join``: the same machine added back
        to the cluster as a new broker (after a decommission)."""
        process = self.processes[node]
        process.stop()
        shutil.rmtree(self.data_dir(node))
        self.data_dir(node).mkdir()
        self._rewrite_ledger(node)
        self.joiners.add(node)
        process.argv = self.cluster.command(node, self._command(self, node))
        with open(self.log_path(node), "ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            log.write(f"{HARNESS_LINE}node {node} rejoins with an empty data directory at {stamp}\n".encode())
        process.start()

    def power_failure(self, node: int, keep_unsynced=None) -> PowerLossReport:
        """kill -9 node, then cut its files back to what it had fsynced (see
        raftka.storage.powerloss; keep_unsynced, a random.Random, keeps random parts of
        unsynced tails as torn writes). The node stays down until start()."""
        self.processes[node].kill()
        report = apply_ledger(self.ledger_path(node), self.data_dir(node), keep_unsynced=keep_unsynced)
        self._rewrite_ledger(node)
        return report

    def disk_loss(self, node: int) -> None:
        """kill -9 node, then its disk is gone: the data directory is deleted and an empty one takes
        its place (a new disk mounted there), the fsync ledger starts empty. The node stays down
        until start(), which starts it under the same id on the empty directory."""
        self.processes[node].kill()
        shutil.rmtree(self.data_dir(node))
        self.data_dir(node).mkdir()
        self._rewrite_ledger(node)
        with open(self.log_path(node), "ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            log.write(f"{HARNESS_LINE}node {node} lost its data directory at {stamp}\n".encode())

    def log_since_start(self, node: int) -> str:
        """What node's current (or last) process wrote to its log so far."""
        try:
            text = self.log_path(node).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text.rpartition(f"{HARNESS_LINE}starting ")[2]

    def _rewrite_ledger(self, node: int) -> None:
        """After a power loss every surviving file is durable at its size: start a fresh ledger
        with exactly those (stale entries of deleted files must not outlive them)."""
        lines = []
        for directory, _, files in os.walk(self.data_dir(node)):
            for name in files:
                path = os.path.abspath(os.path.join(directory, name))
                lines.append(f"{path} {os.path.getsize(path)}\n")
        tmp = self.ledger_path(node).with_suffix(".tmp")
        tmp.write_text("".join(sorted(lines)))
        os.replace(tmp, self.ledger_path(node))

    def set_clock_offset(self, node: int, seconds: int) -> None:
        """Shift node's clocks by seconds (libfaketime, seen within ~2 s); 0 resets.

        Monotonic clocks jump too: libfaketime 0.9.10's DONT_FAKE_MONOTONIC makes sleeps
        fail with EINVAL, so a jump here is a process-wide time warp, harsher than an NTP step.
        """
        path = self.faketime_path(node)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{int(seconds):+d}\n")
        os.replace(tmp, path)

    def healthy(self, node: int) -> bool:
        url = self.health_url(node)
        return self.running(node) and not self.processes[node].paused and (
            url is None or http_ok(url, context=self.health_context))

    def wait_healthy(self, nodes: Iterable[int] | None = None, timeout_s: float = 30.0) -> None:
        """Until every given node answers /health (or just runs, without a health service).

        Raises ProcessFailed at once if one exits, and on timeout; both name the node and
        show its log tail.
        """
        waiting = list(self.cluster.nodes if nodes is None else nodes)
        deadline = time.monotonic() + timeout_s
        while waiting:
            for node in list(waiting):
                process = self.processes[node]
                if not process.running:
                    raise ProcessFailed(
                        f"{process.name} exited with {process.returncode}:\n{log_tail(process.log_path)}")
                if self.healthy(node):
                    waiting.remove(node)
            if not waiting:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"node {n}:\n{log_tail(self.log_path(n))}" for n in waiting)
                raise ProcessFailed(f"not healthy after {timeout_s:g} s: nodes {waiting}\n{tails}")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop every process (idempotent)."""
        try:
            for process in self.processes.values():
                process.stop(timeout_s=3.0)
        finally:
            teardown.unregister(self._teardown_key)

    def __enter__(self) -> Brokers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kill_stale_processes() -> list[int]:
    """SIGKILL processes carrying the marker of a harness run that is no longer alive
    (orphans of a SIGKILLed harness; runs of other lock dirs are left alone); returns their pids."""
    live = runslot.live_tokens()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        marker = RUN_MARKER_ENV.encode() + b"="
        token = next((v[len(marker):].decode() for v in environ if v.startswith(marker)), None)
        if token is not None and runslot.ours(token) and token not in live:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed
