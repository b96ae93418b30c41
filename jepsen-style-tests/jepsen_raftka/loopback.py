"""A cluster of "hosts" that are plain processes on 127.0.0.1, partitioned by a fault proxy.

The fallback when network namespaces are not available (not root, no
iproute2/iptables). Every node's services listen on their own free port of
127.0.0.1; every (src, dst, service) pair, src a node or CLIENT, gets its own
FaultProxy link port, and ``address(src, dst, service)`` hands that port to
src (a broker's ``--peers`` lists, for each other broker, the port of its own
link). So the proxy knows who talks to whom and enforces the combined
grudge per direction. What it cannot do: packet loss and bandwidth limits
(raise UnsupportedFault), and it cannot stop traffic to an address a node
learns at run time from a peer (e.g. a broker advertising its bind address):
such traffic bypasses the proxy.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping, Sequence

from . import runslot, teardown
from .faultproxy import FaultProxy
from .topology import CLIENT, Endpoint, Grudge, GrudgeLayers, drops

HOST = "127.0.0.1"


class UnsupportedFault(RuntimeError):
    """This cluster mode cannot inject that fault."""


_PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range, so no outgoing connection takes it meanwhile


def free_port(host: str = HOST) -> int:
    """A port that is free now, outside the ephemeral range (bind-to-0 ports get reused by clients)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(*_PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {_PORT_RANGE} on {host}")


class LoopbackCluster:
    mode = "loopback"
    client_host = HOST
    network_faults = frozenset({"partition"})

    def __init__(self, node_count: int, services: Sequence[str]) -> None:
        if node_count < 1:
            raise ValueError(f"node_count must be >= 1, got {node_count}")
        self.nodes: tuple[int, ...] = tuple(range(1, node_count + 1))
        self.services = frozenset(services)
        self._proxy = FaultProxy(HOST)
        self._slot = runslot.acquire()  # names the run's processes for cleanup_stale
        self.slot = self._slot.number
        self.run_token = self._slot.token
        self._grudges = GrudgeLayers()
        self._teardown_key = teardown.register(self.close)
        try:
            self._bind = {(n, svc): free_port() for n in self.nodes for svc in services}
            self._links = {
                (src, dst, svc): self._proxy.add_link(src, dst, (HOST, self._bind[dst, svc]))
                for src in (*self.nodes, CLIENT) for dst in self.nodes if src != dst for svc in services
            }
        except BaseException:
            self.close()
            raise

    def bind_address(self, node: int, service: str) -> tuple[str, int]:
        return HOST, self._bind[self._node(node), service]

    def address(self, src: Endpoint, dst: int, service: str) -> tuple[str, int]:
        if src == dst:
            return self.bind_address(dst, service)
        return HOST, self._links[src, self._node(dst), service]

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        self._node(node)
        return list(argv)

    def _node(self, node: int) -> int:
        if node not in self.nodes:
            raise ValueError(f"no node {node!r} in this cluster (nodes {list(self.nodes)})")
        return node

    def set_grudge(self, layer: str, grudge: Grudge) -> None:
        self._grudges.set(layer, grudge)
        self._apply()

    def clear_grudge(self, layer: str) -> None:
        self._grudges.clear(layer)
        self._apply()

    def _apply(self) -> None:
        grudge = self._grudges.combined
        endpoints = (*self.nodes, CLIENT)
        self._proxy.set_blocked({(a, b) for a in endpoints for b in endpoints if a != b and drops(grudge, a, b)})

    def set_packet_loss(self, probabilities: Mapping[int, float]) -> None:
        if probabilities:
            raise UnsupportedFault("packet loss needs network namespaces (iptables); loopback mode cannot drop packets")

    def set_bandwidth(self, rates: Mapping[int, str]) -> None:
        if rates:
            raise UnsupportedFault("bandwidth limits need network namespaces (tc); loopback mode cannot shape traffic")

    def heal_network(self) -> None:
        self._grudges.clear()
        self._apply()

    def close(self) -> None:
        if not self._slot.held:
            return
        try:
            self._proxy.close()
        finally:
            self._slot.release()
            teardown.unregister(self._teardown_key)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
