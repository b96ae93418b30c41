"""Checks on what brokers report about themselves, outside the client history:
replica divergence (each replica's log up to its high watermark) and election
safety (at most one leader per Raft group per term).

Replica input (JSON object), node -> partition -> records up to that node's
high watermark, in offset order::

    {"1": {"jepsen/0": [[0, 17], [1, 42]], "jepsen/1": []},
     "2": {"jepsen/0": [[0, 17], [1, 42]]}}

Leader input: a JSON array, or JSON lines, of observations::

    {"group": "jepsen/0" | "__metadata", "term": 3, "leader": 2,
     "observer": 1, "time": 123}      # observer and time optional; leader null = none

"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .anomaly import Anomaly
from .history import SCALAR_TYPES, HistoryError, split_partition_key
from .observations import Observations

ReplicaLogs = dict[str, dict[str, list[tuple[int, Any]]]]


@dataclass(frozen=True, slots=True)
class LeaderObservation:
    group: str
    term: int
    leader: Any
    observer: Any = None
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "term": self.term, "leader": self.leader,
                "observer": self.observer, "time": self.time}


def parse_replicas(raw: Any) -> ReplicaLogs:
    if not isinstance(raw, Mapping):
        raise HistoryError("replicas: expected an object node -> partition -> records")
    logs: ReplicaLogs = {}
    for node, partitions in raw.items():
        if not isinstance(partitions, Mapping):
            raise HistoryError(f"replicas[{node!r}]: expected an object partition -> records")
        logs[str(node)] = {}
        for tp, pairs in partitions.items():
            split_partition_key(tp)
            if not isinstance(pairs, list) or not all(
                    isinstance(p, list) and len(p) == 2 and type(p[0]) is int
                    and type(p[1]) in SCALAR_TYPES for p in pairs):
                raise HistoryError(f"replicas[{node!r}][{tp!r}]: expected [[offset, value], ...]")
            logs[str(node)][tp] = [(o, v) for o, v in pairs]
    return logs


def parse_leaders(raws: Iterable[Any]) -> list[LeaderObservation]:
    observations = []
    for i, raw in enumerate(raws):
        if (not isinstance(raw, Mapping) or not isinstance(raw.get("group"), str)
                or type(raw.get("term")) is not int):
            raise HistoryError(
                f"leaders[{i}]: expected {{'group': str, 'term': int, 'leader': ...}}")
        observations.append(LeaderObservation(raw["group"], raw["term"], raw.get("leader"),
                                              raw.get("observer"), raw.get("time")))
    return observations


def load_replicas(path: str | Path) -> ReplicaLogs:
    return parse_replicas(orjson.loads(Path(path).read_bytes()))


def load_leaders(path: str | Path) -> list[LeaderObservation]:
    """A JSON array of observations, or one observation per line."""
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"["):
        return parse_leaders(orjson.loads(data))
    return parse_leaders(orjson.loads(line) for line in data.splitlines() if line.strip())


def replica_divergence(replicas: ReplicaLogs, obs: Observations | None = None) -> list[Anomaly]:
    """Every replica of a partition must hold the same dense (offset, value) list.

    Reported kinds: ``gap`` (a replica's offsets are not consecutive),
    ``value-mismatch`` (two replicas disagree at an offset), ``length-mismatch``
    (a replica ends before another), and ``history-mismatch`` (a replica holds a
    value at an offset where clients observed a different one).
    """
    found = []
    by_tp: dict[str, dict[str, list[tuple[int, Any]]]] = {}
    for node, partitions in replicas.items():
        for tp, pairs in partitions.items():
            by_tp.setdefault(tp, {})[node] = pairs
    for tp, logs in sorted(by_tp.items()):
        maps = {}
        for node, pairs in sorted(logs.items()):
            for (a, _), (b, _) in zip(pairs, pairs[1:]):
                if b != a + 1:
                    found.append(Anomaly("replica-divergence",
                                         {"kind": "gap", "partition": tp, "node": node,
                                          "offsets": [a, b]}))
                    break
            maps[node] = dict(pairs)
        nodes = sorted(maps)
        all_offsets = sorted(set().union(*maps.values()))
        for offset in all_offsets:
            values = {node: maps[node].get(offset) for node in nodes if offset in maps[node]}
            if len(set(values.values())) > 1:
                found.append(Anomaly("replica-divergence",
                                     {"kind": "value-mismatch", "partition": tp,
                                      "offset": offset, "values": values}))
            if obs is not None:
                seen = obs.log.get(tp, {}).get(offset)
                bad = {n: v for n, v in values.items() if seen is not None and v != seen[0]}
                if bad:
                    found.append(Anomaly("replica-divergence",
                                         {"kind": "history-mismatch", "partition": tp,
                                          "offset": offset, "observed": seen[0],
                                          "values": bad}, (seen[1],)))
        ends = {node: max(maps[node], default=-1) for node in nodes}
        if len(set(ends.values())) > 1:
            found.append(Anomaly("replica-divergence",
                                 {"kind": "length-mismatch", "partition": tp,
                                  "last_offsets": ends}))
    return found


def election_safety(observations: Iterable[LeaderObservation]) -> list[Anomaly]:
    """At most one leader per (group, term). Leader ids compare as strings (2 == "2")."""
    leaders: dict[tuple[str, int], dict[str, LeaderObservation]] = {}
    for o in observations:
        if o.leader is not None:
            leaders.setdefault((o.group, o.term), {}).setdefault(str(o.leader), o)
    return [
        Anomaly("election-safety",
                {"group": group, "term": term, "leaders": list(by_leader),
                 "observations": [o.to_json() for o in by_leader.values()]})
        for (group, term), by_leader in sorted(leaders.items()) if len(by_leader) > 1
    ]
