"""Admin methods for the elastic cluster: brokers, replica moves, decommissions, replication factors, balancing.

`ClusterAdminMixin` is part of `AIOAdmin` (and so of the blocking `Admin`).
Every operation is a job the broker carries out in the background; the
methods return at once with its state, and ``wait_reassignments`` /
``wait_decommission`` poll until it is done (with an optional progress
callback, as the CLI's progress bars use).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftka.client.cluster import topic_path
from raftka.client.errors import ProtocolError

__all__ = ["BrokerInfo", "ClusterAdminMixin", "Decommission", "RebalancePlan", "Reassignment", "ReplicaProgress"]

POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class BrokerInfo:
    """One broker as ``GET /brokers`` describes it."""

    id: int
    url: str | None
    alive: bool
    membership: str  # active, draining, decommissioned
    replicas: int
    leaders: int
    metadata_role: str  # voter, learner, none
    rack: str | None = None
    raft_address: str | None = None


@dataclass(frozen=True)
class ReplicaProgress:
    broker: int
    role: str  # voter, learner, waiting (not added yet), leaving
    bytes_copied: int | None
    bytes_total: int | None
    alive: bool


@dataclass(frozen=True)
class Reassignment:
    """One partition's move (a job of the metadata group)."""

    topic: str
    partition: int
    state: str  # copying, removing, cancelling, stuck, complete
    before: tuple[int, ...]
    target: tuple[int, ...]
    reason: str = ""
    stuck_reason: str | None = None
    cancelled: bool = False
    bytes_copied: int = 0
    bytes_total: int = 0
    replicas: tuple[ReplicaProgress, ...] = ()
    id: int | None = None

    @property
    def done(self) -> bool:
        return self.state == "complete"


@dataclass(frozen=True)
class Decommission:
    broker: int
    membership: str
    partitions_total: int | None
    partitions_remaining: int
    metadata_voter: bool
    done: bool
    bytes_copied: int = 0
    bytes_total: int = 0
    reassignments: tuple[Reassignment, ...] = ()


@dataclass(frozen=True)
class RebalancePlan:
    dry_run: bool
    changes: list[dict[str, Any]]  # topic, partition, replicas_before, replicas_after, moves_data
    brokers: list[dict[str, Any]]  # id, rack, replicas_before/after, preferred_leaders_before/after
    reassignments: list[int] = field(default_factory=list)  # ids of the jobs started


def _reassignment(raw: Any) -> Reassignment:
    try:
        return Reassignment(
            topic=str(raw["topic"]), partition=int(raw["partition"]), state=str(raw.get("state", "complete")),
            before=tuple(raw.get("before") or ()), target=tuple(raw.get("target") or ()),
            reason=str(raw.get("reason", "")), stuck_reason=raw.get("stuck_reason"),
            cancelled=bool(raw.get("cancelled")), bytes_copied=int(raw.get("bytes_copied") or 0),
            bytes_total=int(raw.get("bytes_total") or 0),
            replicas=tuple(ReplicaProgress(int(r["broker"]), str(r["role"]), r.get("bytes_copied"),
                                           r.get("bytes_total"), bool(r.get("alive")))
                           for r in raw.get("replicas", [])),
            id=raw.get("id"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed reassignment {raw!r} ({exc})") from None


def _decommission(raw: Any) -> Decommission:
    try:
        return Decommission(int(raw["broker"]), str(raw["membership"]), raw.get("partitions_total"),
                            int(raw["partitions_remaining"]), bool(raw.get("metadata_voter")), bool(raw["done"]),
                            int(raw.get("bytes_copied") or 0), int(raw.get("bytes_total") or 0),
                            tuple(_reassignment(r) for r in raw.get("reassignments", [])))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed decommission status {raw!r} ({exc})") from None


class ClusterAdminMixin:
    """Needs ``_read(path)`` and ``_write(method, path, json=...)`` (see `AIOAdmin`)."""

    async def describe_brokers(self) -> list[BrokerInfo]:
        doc = await self._read("/brokers")
        try:
            return [BrokerInfo(int(d["id"]), d.get("url"), bool(d.get("alive")), str(d.get("membership", "active")),
                               int(d.get("replicas", 0)), int(d.get("leaders", 0)), str(d.get("metadata_role", "none")),
                               d.get("rack"), d.get("raft_address")) for d in doc["details"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"GET /brokers: malformed answer {doc!r} ({exc})") from None

    async def reassign_partition(self, topic: str, partition: int, replicas: Sequence[int]) -> Reassignment:
        """Move a partition to `replicas` (preferred leader first); returns the job (``done`` at once when only the
        order changed)."""
        doc = await self._write("POST", topic_path(topic, partition, "/reassignment"),
                                json={"replicas": [int(b) for b in replicas]})
        if "state" not in doc:
            return Reassignment(topic, partition, "complete", tuple(replicas), tuple(replicas))
        return _reassignment(doc)

    async def cancel_reassignment(self, topic: str, partition: int) -> Reassignment:
        return _reassignment(await self._write("DELETE", topic_path(topic, partition, "/reassignment")))

    async def list_reassignments(self) -> list[Reassignment]:
        doc = await self._read("/reassignments")
        return [_reassignment(r) for r in doc.get("reassignments", [])]

    async def alter_replication_factor(self, topic: str, factor: int) -> list[Reassignment]:
        """Every partition of `topic` moves to `factor` replicas; returns the moves started."""
        doc = await self._write("PATCH", topic_path(topic), json={"replication_factor": int(factor)})
        return [_reassignment(r) for r in doc.get("reassignments", [])]

    async def decommission_broker(self, broker_id: int) -> Decommission:
        return _decommission(await self._write("POST", f"/brokers/{int(broker_id)}/decommission"))

    async def decommission_status(self, broker_id: int) -> Decommission:
        return _decommission(await self._read(f"/brokers/{int(broker_id)}/decommission"))

    async def recommission_broker(self, broker_id: int) -> Decommission:
        return _decommission(await self._write("POST", f"/brokers/{int(broker_id)}/recommission"))

    async def rebalance(self, dry_run: bool = False) -> RebalancePlan:
        doc = await self._write("POST", "/cluster/rebalance?dry_run=" + ("true" if dry_run else "false"))
        return RebalancePlan(bool(doc.get("dry_run")), list(doc.get("changes", [])), list(doc.get("brokers", [])),
                             list(doc.get("reassignments", [])))

    async def balance_leaders(self) -> list[dict[str, Any]]:
        """Ask every partition leader to hand leadership to the preferred replica; returns the transfers asked."""
        return list((await self._write("POST", "/cluster/leaders/balance")).get("transfers", []))

    async def wait_reassignments(self, partitions: Sequence[tuple[str, int]] | None = None, *,
                                 timeout: float | None = None,
                                 progress: Callable[[list[Reassignment]], None] | None = None) -> None:
        """Return when none of `partitions` (default: any partition) is moving; `progress` sees each poll."""
        wanted = None if partitions is None else {(t, int(p)) for t, p in partitions}
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            moving = [r for r in await self.list_reassignments()
                      if wanted is None or (r.topic, r.partition) in wanted]
            if progress is not None:
                progress(moving)
            if not moving:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(moving)} reassignment(s) still running: "
                                   + ", ".join(f"{r.topic}/{r.partition} ({r.state})" for r in moving[:5]))
            await asyncio.sleep(POLL_INTERVAL_S)

    async def wait_decommission(self, broker_id: int, *, timeout: float | None = None,
                                progress: Callable[[Decommission], None] | None = None) -> Decommission:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = await self.decommission_status(broker_id)
            if progress is not None:
                progress(status)
            if status.done or status.membership == "active":
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"broker {broker_id} still has {status.partitions_remaining} partition(s) to drain")
            await asyncio.sleep(POLL_INTERVAL_S)
