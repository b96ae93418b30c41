"""Choosing and opening a cluster of hosts: network namespaces when possible, else loopback.

``open_cluster(n)`` returns a NetnsCluster (netns.py) when this process is
root and namespaces with iptables work, else a LoopbackCluster (loopback.py);
``cluster.mode`` and ``detect_mode()`` say which and why. Both backends offer
the interface of ``Cluster`` below. ``cleanup_stale()`` removes what crashed
runs left behind (namespaces, links, orphaned child processes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from . import netns, processes
from .loopback import LoopbackCluster
from .netns import NetnsCluster
from .topology import Endpoint, Grudge

BROKER_PORTS = {"http": 9092, "raft": 9093, "kafka": 9094}  # per host in netns mode; loopback picks free ports
MODES = ("auto", "netns", "loopback")


class Cluster(Protocol):
    mode: str  # "netns" | "loopback"
    nodes: tuple[int, ...]
    run_token: str  # marks the run's child processes (see processes.py)
    client_host: str  # the address CLIENT's traffic comes from
    network_faults: frozenset[str]  # subset of {"partition", "packet-loss", "bandwidth"}
    services: frozenset[str]  # what every host serves (BROKER_PORTS' names)

    def bind_address(self, node: int, service: str) -> tuple[str, int]: ...
    def address(self, src: Endpoint, dst: int, service: str) -> tuple[str, int]: ...
    def command(self, node: int, argv: Sequence[str]) -> list[str]: ...
    def set_grudge(self, layer: str, grudge: Grudge) -> None: ...
    def clear_grudge(self, layer: str) -> None: ...
    def set_packet_loss(self, probabilities: Mapping[int, float]) -> None: ...
    def set_bandwidth(self, rates: Mapping[int, str]) -> None: ...
    def heal_network(self) -> None: ...
    def close(self) -> None: ...


def detect_mode() -> tuple[str, str]:
    """("netns" | "loopback", why)."""
    usable, reason = netns.availability()
    return ("netns", reason) if usable else ("loopback", f"network namespaces unavailable: {reason}")


def open_cluster(node_count: int, *, mode: str = "auto", ports: Mapping[str, int] = BROKER_PORTS) -> Cluster:
    """A new cluster of node_count hosts (nodes 1..node_count) whose hosts serve ``ports``'
    services. Close it (or use it as a context manager) to remove everything it made."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        mode = detect_mode()[0]
    elif mode == "netns" and not netns.availability()[0]:
        raise RuntimeError(f"netns mode unavailable: {netns.availability()[1]}")
    if mode == "netns":
        return NetnsCluster(node_count, ports)
    return LoopbackCluster(node_count, list(ports))


def cleanup_stale() -> dict[str, list]:
    """Remove leftovers of dead runs: orphaned processes first, then namespaces and links."""
    killed = processes.kill_stale_processes()
    removed = netns.cleanup_stale() if netns.availability()[0] else []
    return {"killed_pids": killed, "removed": removed}
