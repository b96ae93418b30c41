"""Network fault shapes as grudges: who drops packets from whom (pure, no I/O).

A grudge maps a destination endpoint to the set of source endpoints whose
packets it drops (Jepsen's term). Endpoints are node ids (ints) and CLIENT,
the harness and its workload clients. Dropping is per direction, so a grudge
also describes one-way partitions; a TCP exchange between a and b needs both
directions (data one way, acknowledgements the other), see ``can_talk``.
The cluster backends (netns.py, loopback.py) turn a grudge into iptables
rules or proxy gates; the nemeses (nemesis.py) choose the grudge.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

CLIENT = "client"
Endpoint = int | str
Grudge = dict[Endpoint, frozenset[Endpoint]]


def _normalized(drops: Mapping[Endpoint, Iterable[Endpoint]]) -> Grudge:
    out = {dst: frozenset(srcs) - {dst} for dst, srcs in drops.items()}
    return {dst: srcs for dst, srcs in out.items() if srcs}


def from_components(nodes: Collection[int], components: Sequence[Collection[int]]) -> Grudge:
    """Nodes talk iff some component holds both; components may overlap (bridge).

    A node in no component talks to no other node.
    """
    member_of = {n: {i for i, c in enumerate(components) if n in c} for n in nodes}
    return _normalized({a: {b for b in nodes if not member_of[a] & member_of[b]} for a in nodes})


def isolate(nodes: Collection[int], isolated: Collection[int]) -> Grudge:
    """The isolated nodes form one side (they still talk to each other), the rest the other."""
    unknown = set(isolated) - set(nodes)
    if unknown:
        raise ValueError(f"cannot isolate unknown nodes {sorted(unknown)}")
    rest = [n for n in nodes if n not in isolated]
    return from_components(nodes, [list(isolated), rest])


def halves(nodes: Sequence[int], rng: random.Random) -> Grudge:
    """A random split into a minority (n // 2 nodes) and a majority."""
    shuffled = rng.sample(list(nodes), len(nodes))
    cut = len(shuffled) // 2
    return from_components(nodes, [shuffled[:cut], shuffled[cut:]])


def bridge(nodes: Sequence[int], rng: random.Random) -> Grudge:
    """Two halves that both still talk to one node in the middle."""
    if len(nodes) < 3:
        raise ValueError("a bridge needs at least 3 nodes")
    shuffled = rng.sample(list(nodes), len(nodes))
    middle = (len(shuffled) - 1) // 2
    return from_components(nodes, [shuffled[: middle + 1], shuffled[middle:]])


def majorities_ring(nodes: Sequence[int], rng: random.Random) -> Grudge:
    """Nodes on a random ring; each sees only its ring neighbours, which (with itself)
    are a majority, and no two nodes see the same set."""
    n = len(nodes)
    if n < 4:
        raise ValueError("a majorities ring needs at least 4 nodes")
    ring = rng.sample(list(nodes), n)
    reach = (n // 2 + 1) // 2  # neighbours on each side: 1 for 4-5 nodes, 2 for 6-7, ...
    position = {node: i for i, node in enumerate(ring)}

    def distance(a: int, b: int) -> int:
        d = abs(position[a] - position[b])
        return min(d, n - d)

    return _normalized({a: {b for b in nodes if distance(a, b) > reach} for a in nodes})


def one_way(sources: Collection[Endpoint], destinations: Collection[Endpoint]) -> Grudge:
    """Packets from sources to destinations are dropped; the other direction flows."""
    return _normalized({dst: set(sources) for dst in destinations})


def isolate_from_client(nodes: Collection[int]) -> Grudge:
    """CLIENT and the given nodes drop each other's packets; nodes still talk among themselves."""
    return union([one_way([CLIENT], nodes), one_way(nodes, [CLIENT])])


def union(grudges: Iterable[Mapping[Endpoint, Collection[Endpoint]]]) -> Grudge:
    merged: dict[Endpoint, set[Endpoint]] = {}
    for grudge in grudges:
        for dst, srcs in grudge.items():
            merged.setdefault(dst, set()).update(srcs)
    return _normalized(merged)


def drops(grudge: Mapping[Endpoint, Collection[Endpoint]], src: Endpoint, dst: Endpoint) -> bool:
    """Whether packets from src to dst are dropped."""
    return src in grudge.get(dst, ())


def can_talk(grudge: Mapping[Endpoint, Collection[Endpoint]], a: Endpoint, b: Endpoint) -> bool:
    """Whether a request/response exchange (TCP) between a and b can succeed."""
    return not drops(grudge, a, b) and not drops(grudge, b, a)


def to_json(grudge: Mapping[Endpoint, Collection[Endpoint]]) -> dict[str, list[Any]]:
    """``{"2": [1, 3]}``: node 2 drops packets from 1 and 3 (for history values)."""
    return {str(dst): sorted(srcs, key=str) for dst, srcs in sorted(grudge.items(), key=lambda kv: str(kv[0]))}


class GrudgeLayers:
    """Named grudges that hold at the same time (e.g. a partition and a client
    isolation); the network enforces their union."""

    def __init__(self) -> None:
        self._layers: dict[str, Grudge] = {}

    def set(self, name: str, grudge: Mapping[Endpoint, Collection[Endpoint]]) -> None:
        self._layers[name] = _normalized(grudge)

    def clear(self, name: str | None = None) -> None:
        """Drop one layer, or all of them when name is None."""
        if name is None:
            self._layers.clear()
        else:
            self._layers.pop(name, None)

    @property
    def combined(self) -> Grudge:
        return union(self._layers.values())
