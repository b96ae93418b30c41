"""Nemeses: faults with a start and a stop, recorded in the history as fault windows.

A Nemesis acts on a NemesisContext (cluster network, broker processes,
history recorder, rng). ``start()`` injects the fault and records
``{"process": "nemesis", "type": "info", "f": "start-NAME", "value": ...}``;
``stop()`` undoes it and records ``stop-NAME`` (history.py). Which nodes a
fault hits is a Target: random ones (``one``, ``minority``, ``majority``,
``all_nodes``), fixed ones (``fixed``), or whatever a workload callback
names (``chosen_by``, e.g. the leader of a partition or of the metadata
group; when the callback has no answer a random node is used and the value
says so).

P0: Partition (shapes: isolated target, halves, bridge; P1 shapes: one-way,
majorities ring), ClientIsolation, Kill (kill -9, restart at stop), Pause
(SIGSTOP/SIGCONT), PowerFailure (kill -9 + drop unfsynced data, restart at
stop), DiskFull (a filler takes every free byte of the data directory's small
filesystem, see diskspace.py; deleted at stop). P1: PacketLoss (iptables statistic), Bandwidth (tc tbf), ClockJump
(libfaketime). Network faults a cluster mode cannot do raise
UnsupportedFault when the nemesis is made, not in the middle of a run.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import topology
from .diskspace import SmallDisks
from .history import HistoryRecorder
from .loopback import UnsupportedFault
from .processes import Brokers
from .topology import Grudge


@dataclass
class NemesisContext:
    cluster: Any  # cluster.Cluster
    brokers: Brokers
    recorder: HistoryRecorder
    rng: random.Random = field(default_factory=random.Random)
    disks: SmallDisks | None = None  # small data-dir filesystems, for DiskFull
    api_security: Any = None  # api.ApiSecurity of a --tls run: how nemeses that call the HTTP API log in


# --------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """Picks the nodes a fault hits: choose(nodes, rng) -> (nodes, description)."""

    label: str
    pick: Callable[[Sequence[int], random.Random], tuple[list[int], str]]

    def choose(self, nodes: Sequence[int], rng: random.Random) -> tuple[list[int], str]:
        return self.pick(nodes, rng)


def one() -> Target:
    return Target("one", lambda nodes, rng: ([rng.choice(nodes)], "one"))


def minority() -> Target:
    """(n - 1) // 2 random nodes, at least one."""
    return Target("minority",
                  lambda nodes, rng: (sorted(rng.sample(list(nodes), max(1, (len(nodes) - 1) // 2))), "minority"))


def majority() -> Target:
    return Target("majority", lambda nodes, rng: (sorted(rng.sample(list(nodes), len(nodes) // 2 + 1)), "majority"))


def all_nodes() -> Target:
    return Target("all", lambda nodes, rng: (list(nodes), "all"))


def fixed(*node_ids: int) -> Target:
    return Target("fixed", lambda nodes, rng: (list(node_ids), "fixed"))


def chosen_by(label: str, callback: Callable[[], int | Iterable[int] | None]) -> Target:
    """The node(s) callback names (e.g. label "leader of jepsen/0"); a random node when it
    returns None, raises, or names no node of the cluster."""

    def pick(nodes: Sequence[int], rng: random.Random) -> tuple[list[int], str]:
        try:
            answer = callback()
        except Exception as exc:  # a workload that cannot tell must not stop the schedule
            return [rng.choice(nodes)], f"{label} (unknown: {exc!r}; random instead)"
        chosen = [answer] if isinstance(answer, int) else list(answer or [])
        if not chosen or any(n not in nodes for n in chosen):
            return [rng.choice(nodes)], f"{label} (unknown: {answer!r}; random instead)"
        return chosen, label

    return Target(label, pick)


# --------------------------------------------------------------------- base


class Nemesis(ABC):
    """A fault with a start and a stop; ``name`` is the fault window's name in the history."""

    name: str

    def __init__(self, ctx: NemesisContext) -> None:
        self.ctx = ctx
        self.active = False

    def start(self) -> Any:
        if self.active:
            raise RuntimeError(f"{self.name} is already active")
        value = self._start()
        self.active = True
        self.ctx.recorder.nemesis(f"start-{self.name}", value)
        return value

    def stop(self) -> Any:
        """Undo the fault; a no-op when it is not active."""
        if not self.active:
            return None
        value = self._stop()
        self.active = False
        self.ctx.recorder.nemesis(f"stop-{self.name}", value)
        return value

    @abstractmethod
    def _start(self) -> Any: ...

    @abstractmethod
    def _stop(self) -> Any: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class _TargetedNemesis(Nemesis):
    def __init__(self, ctx: NemesisContext, target: Target) -> None:
        super().__init__(ctx)
        self.target = target
        self.nodes: list[int] = []

    def _choose(self) -> dict[str, Any]:
        self.nodes, description = self.target.choose(self.ctx.cluster.nodes, self.ctx.rng)
        return {"nodes": self.nodes, "target": description}


# --------------------------------------------------------------------- network

Shape = Callable[[Sequence[int], random.Random], tuple[Grudge, dict[str, Any]]]


def isolated(target: Target) -> Shape:
    """The target nodes on one side, everyone else on the other."""

    def shape(nodes: Sequence[int], rng: random.Random) -> tuple[Grudge, dict[str, Any]]:
        chosen, description = target.choose(nodes, rng)
        return topology.isolate(nodes, chosen), {"shape": "isolated", "nodes": chosen, "target": description}

    return shape


def halves(nodes: Sequence[int], rng: random.Random) -> tuple[Grudge, dict[str, Any]]:
    return topology.halves(nodes, rng), {"shape": "halves"}


def bridge(nodes: Sequence[int], rng: random.Random) -> tuple[Grudge, dict[str, Any]]:
    return topology.bridge(nodes, rng), {"shape": "bridge"}


def majorities_ring(nodes: Sequence[int], rng: random.Random) -> tuple[Grudge, dict[str, Any]]:
    return topology.majorities_ring(nodes, rng), {"shape": "majorities-ring"}


def one_way(target: Target, outbound: bool = True) -> Shape:
    """Packets from the target nodes to the others are dropped (outbound) or the reverse."""

    def shape(nodes: Sequence[int], rng: random.Random) -> tuple[Grudge, dict[str, Any]]:
        chosen, description = target.choose(nodes, rng)
        rest = [n for n in nodes if n not in chosen]
        grudge = topology.one_way(chosen, rest) if outbound else topology.one_way(rest, chosen)
        return grudge, {"shape": "one-way-outbound" if outbound else "one-way-inbound",
                        "nodes": chosen, "target": description}

    return shape


class Partition(Nemesis):
    """Cuts the network between nodes by a shape; CLIENT keeps reaching every node."""

    name = "partition"

    def __init__(self, ctx: NemesisContext, shape: Shape) -> None:
        if "partition" not in ctx.cluster.network_faults:
            raise UnsupportedFault(f"{ctx.cluster.mode} mode cannot partition")
        super().__init__(ctx)
        self.shape = shape
        self._layer = f"partition-{id(self)}"

    def _start(self) -> Any:
        grudge, value = self.shape(self.ctx.cluster.nodes, self.ctx.rng)
        self.ctx.cluster.set_grudge(self._layer, grudge)
        return {**value, "grudge": topology.to_json(grudge)}

    def _stop(self) -> Any:
        self.ctx.cluster.clear_grudge(self._layer)
        return None


class ClientIsolation(_TargetedNemesis):
    """CLIENT (harness and workload clients) and the target nodes cannot reach each other;
    the nodes still talk among themselves."""

    name = "isolate-client"

    def __init__(self, ctx: NemesisContext, target: Target) -> None:
        if "partition" not in ctx.cluster.network_faults:
            raise UnsupportedFault(f"{ctx.cluster.mode} mode cannot partition")
        super().__init__(ctx, target)
        self._layer = f"isolate-client-{id(self)}"

    def _start(self) -> Any:
        value = self._choose()
        self.ctx.cluster.set_grudge(self._layer, topology.isolate_from_client(self.nodes))
        return value

    def _stop(self) -> Any:
        self.ctx.cluster.clear_grudge(self._layer)
        return {"nodes": self.nodes}


class PacketLoss(_TargetedNemesis):
    """Each packet arriving at the target nodes is dropped with a probability."""

    name = "packet-loss"

    def __init__(self, ctx: NemesisContext, target: Target, probability: float = 0.2) -> None:
        if "packet-loss" not in ctx.cluster.network_faults:
            raise UnsupportedFault(f"{ctx.cluster.mode} mode cannot drop packets")
        super().__init__(ctx, target)
        self.probability = probability

    def _start(self) -> Any:
        value = self._choose()
        self.ctx.cluster.set_packet_loss({n: self.probability for n in self.nodes})
        return {**value, "probability": self.probability}

    def _stop(self) -> Any:
        self.ctx.cluster.set_packet_loss({})
        return {"nodes": self.nodes}


class Bandwidth(_TargetedNemesis):
    """What the target nodes send is limited to a tc rate (e.g. "1mbit")."""

    name = "bandwidth"

    def __init__(self, ctx: NemesisContext, target: Target, rate: str = "1mbit") -> None:
        if "bandwidth" not in ctx.cluster.network_faults:
            raise UnsupportedFault(f"{ctx.cluster.mode} mode cannot limit bandwidth")
        super().__init__(ctx, target)
        self.rate = rate

    def _start(self) -> Any:
        value = self._choose()
        self.ctx.cluster.set_bandwidth({n: self.rate for n in self.nodes})
        return {**value, "rate": self.rate}

    def _stop(self) -> Any:
        self.ctx.cluster.set_bandwidth({})
        return {"nodes": self.nodes}


# --------------------------------------------------------------------- processes


class Kill(_TargetedNemesis):
    """kill -9 the target nodes; stop() starts them again (without waiting for health)."""

    name = "kill"

    def _start(self) -> Any:
        value = self._choose()
        self.ctx.brokers.kill(self.nodes)
        return value

    def _stop(self) -> Any:
        self.ctx.brokers.start(self.nodes)
        return {"nodes": self.nodes}


class Pause(_TargetedNemesis):
    """SIGSTOP the target nodes; stop() sends SIGCONT."""

    name = "pause"

    def _start(self) -> Any:
        value = self._choose()
        self.ctx.brokers.pause(self.nodes)
        return value

    def _stop(self) -> Any:
        self.ctx.brokers.resume(self.nodes)
        return {"nodes": self.nodes}


class PowerFailure(_TargetedNemesis):
    """Power loss of the target nodes: kill -9, then every file is cut back to its last
    fsynced size (torn_writes keeps random parts of unsynced tails); stop() powers them on."""

    name = "power-failure"

    def __init__(self, ctx: NemesisContext, target: Target, torn_writes: bool = False) -> None:
        super().__init__(ctx, target)
        self.torn_writes = torn_writes

    def _start(self) -> Any:
        value = self._choose()
        lost = {}
        for node in self.nodes:
            report = self.ctx.brokers.power_failure(node, keep_unsynced=self.ctx.rng if self.torn_writes else None)
            lost[str(node)] = {"truncated_bytes": sum(report.truncated.values()), "deleted_files": len(report.deleted)}
        return {**value, "torn_writes": self.torn_writes, "lost": lost}

    def _stop(self) -> Any:
        self.ctx.brokers.start(self.nodes)
        return {"nodes": self.nodes}


class DiskFull(_TargetedNemesis):
    """The target nodes' data directories fill up: a filler file takes every free byte (ENOSPC from
    then on, below any watermark); stop() deletes it and the brokers recover without a restart."""

    name = "disk-full"

    def __init__(self, ctx: NemesisContext, target: Target) -> None:
        if ctx.disks is None:
            raise UnsupportedFault("disk-full needs small filesystems for the data directories (diskspace.py)")
        super().__init__(ctx, target)

    def _start(self) -> Any:
        value = self._choose()
        filled = {str(node): self.ctx.disks.fill(node) for node in self.nodes}
        return {**value, "filled_bytes": filled}

    def _stop(self) -> Any:
        for node in self.nodes:
            self.ctx.disks.free(node)
        return {"nodes": self.nodes}


class ClockJump(_TargetedNemesis):
    """Shifts the target nodes' clocks by up to ±max_offset_s (libfaketime; needs
    Brokers(clock_faults=True); wall and monotonic clocks both jump, see
    Brokers.set_clock_offset)."""

    name = "clock"

    def __init__(self, ctx: NemesisContext, target: Target, max_offset_s: int = 300) -> None:
        if not ctx.brokers.clock_faults:
            raise UnsupportedFault("clock faults need Brokers(clock_faults=True)")
        super().__init__(ctx, target)
        self.max_offset_s = max_offset_s

    def _start(self) -> Any:
        value = self._choose()
        offsets = {}
        for node in self.nodes:
            offsets[str(node)] = self.ctx.rng.choice([-1, 1]) * self.ctx.rng.randint(1, self.max_offset_s)
            self.ctx.brokers.set_clock_offset(node, offsets[str(node)])
        return {**value, "offsets_s": offsets}

    def _stop(self) -> Any:
        for node in self.nodes:
            self.ctx.brokers.set_clock_offset(node, 0)
        return {"nodes": self.nodes}


# --------------------------------------------------------------------- catalogue

LeaderCallback = Callable[[], int | Iterable[int] | None]


def p0_nemeses(ctx: NemesisContext, *, partition_leader: LeaderCallback | None = None,
               metadata_leader: LeaderCallback | None = None) -> dict[str, Nemesis]:
    """Every P0 fault by name, leader-targeted ones only when their callback is given."""
    out: dict[str, Nemesis] = {
        "partition-one": Partition(ctx, isolated(one())),
        "partition-halves": Partition(ctx, halves),
        "partition-bridge": Partition(ctx, bridge),
        "isolate-client-one": ClientIsolation(ctx, one()),
        "kill-one": Kill(ctx, one()),
        "kill-minority": Kill(ctx, minority()),
        "pause-one": Pause(ctx, one()),
        "power-failure-one": PowerFailure(ctx, one()),
        "power-failure-all": PowerFailure(ctx, all_nodes()),
    }
    if ctx.disks is not None:
        out["disk-full-one"] = DiskFull(ctx, one())
    for label, callback in (("leader", partition_leader), ("metadata-leader", metadata_leader)):
        if callback is not None:
            target = chosen_by(label, callback)
            out[f"partition-{label}"] = Partition(ctx, isolated(target))
            out[f"isolate-client-{label}"] = ClientIsolation(ctx, target)
            out[f"kill-{label}"] = Kill(ctx, target)
            out[f"pause-{label}"] = Pause(ctx, target)
            if ctx.disks is not None:
                out[f"disk-full-{label}"] = DiskFull(ctx, target)
    return out


def p1_nemeses(ctx: NemesisContext) -> dict[str, Nemesis]:
    """The P1 faults this cluster mode and broker setup support, by name."""
    out: dict[str, Nemesis] = {"partition-one-way": Partition(ctx, one_way(one()))}
    if len(ctx.cluster.nodes) >= 4:
        out["partition-majorities-ring"] = Partition(ctx, majorities_ring)
    if "packet-loss" in ctx.cluster.network_faults:
        out["packet-loss"] = PacketLoss(ctx, all_nodes())
    if "bandwidth" in ctx.cluster.network_faults:
        out["bandwidth"] = Bandwidth(ctx, all_nodes())
    if ctx.brokers.clock_faults:
        out["clock"] = ClockJump(ctx, minority())
    return out
