"""Elastic-cluster nemeses: brokers join, drain and come back; partitions move; replication factors change.

``Membership`` does one change of the cluster's shape per fault window, through
the brokers' own API (``raftka.node.services.cluster``), while the workload
runs and other faults (kill, partition) may be active at the same time:

* ``join``: a node that has not run yet starts with ``--join`` (the cluster
  grows, e.g. 3 -> 5 brokers), and a rebalance moves replicas onto it;
* ``reassign``: one partition of the workload's topic moves to a random set of
  live brokers (its size kept);
* ``replication-factor``: the topic's factor changes to a random one from 2 to
  the live brokers (even ones included);
* ``decommission``: a random live broker drains; at the window's end (waiting
  up to ``drain_wait_s`` more for the drain) it is added back — wiped and
  started with ``--join`` as a new broker — if the drain finished, else
  recommissioned;
* ``rebalance``: replicas and preferred leaders spread over the brokers.

A request the cluster refuses (a partition still moving, a drain that would
leave a partition short, no quorum under a partition) is part of the game: the
start value records the answer, the run goes on. Moves continue in the
background after their window; the heal waits for nothing of them, and the
runner's convergence wait (collect.py) lets them finish before the replicas are
compared.

``MoveAway`` (for the ``new-replica-votes`` canary) moves a partition to two
new brokers and one old one, the new ones first, with the new ones cut off
from the partition's leader: the move that lets new, empty replicas form a
majority if they vote before they have caught up.
"""

from __future__ import annotations

import time
from typing import Any

from . import topology
from .api import BrokerApi, NoAnswer, NotDelivered
from .loopback import UnsupportedFault
from .nemesis import Nemesis, NemesisContext
from .topology import CLIENT

REQUEST_TIMEOUT_S = 15.0
DRAIN_WAIT_S = 20.0
ACTIONS = ("reassign", "replication-factor", "decommission", "rebalance")


class _Elastic(Nemesis):
    def __init__(self, ctx: NemesisContext, topic: str) -> None:
        super().__init__(ctx)
        self.topic = topic
        self.api = BrokerApi({n: ctx.cluster.address(CLIENT, n, "http") for n in ctx.cluster.nodes}, ctx.rng,
                             ctx.api_security)

    def _running(self) -> list[int]:
        return [n for n in self.ctx.cluster.nodes if self.ctx.brokers.running(n) and not self.ctx.brokers.paused(n)]

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """The request through a random running broker (forwarded to the metadata leader): status and a summary."""
        running = self._running()
        for node in self.ctx.rng.sample(running, len(running)):
            try:
                reply = self.api.request(node, method, path, body, timeout_s=REQUEST_TIMEOUT_S)
            except NotDelivered:
                continue
            except NoAnswer as exc:
                return {"status": None, "answer": str(exc)}
            summary = reply.doc.get("message") or reply.doc.get("state") if isinstance(reply.doc, dict) else None
            return {"status": reply.status, "answer": summary, "doc": reply.doc}
        return {"status": None, "answer": "no broker reachable"}

    def _get(self, path: str) -> Any:
        outcome = self._call("GET", path)
        return outcome["doc"] if outcome["status"] == 200 else None

    def _replicas(self) -> list[list[int]] | None:
        doc = self._get("/metadata")
        try:
            return [p["replicas"] for p in doc["topics"][self.topic]["partitions"]]
        except (TypeError, KeyError):
            return None

    def _active(self) -> list[int]:
        doc = self._get("/brokers")
        details = doc.get("details", []) if isinstance(doc, dict) else []
        return [d["id"] for d in details if d.get("membership") == "active" and d.get("alive")]

    @staticmethod
    def _value(action: str, outcome: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"action": action, "status": outcome["status"], "answer": outcome["answer"], **extra}


class Membership(_Elastic):
    name = "membership"

    def __init__(self, ctx: NemesisContext, topic: str, actions: tuple[str, ...] = ACTIONS,
                 drain_wait_s: float = DRAIN_WAIT_S) -> None:
        super().__init__(ctx, topic)
        self.actions = actions
        self.drain_wait_s = drain_wait_s
        self.draining: int | None = None

    def _start(self) -> Any:
        waiting = [n for n in self.ctx.brokers.joiners if not self.ctx.brokers.running(n)]
        if waiting:
            return self._join(self.ctx.rng.choice(waiting))
        return getattr(self, "_" + self.ctx.rng.choice(self.actions).replace("-", "_"))()

    def _stop(self) -> Any:
        node, self.draining = self.draining, None
        if node is None:
            return None
        deadline = time.monotonic() + self.drain_wait_s
        while True:
            status = self._get(f"/brokers/{node}/decommission")
            done = isinstance(status, dict) and status.get("done")
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if done:
            self.ctx.brokers.rejoin(node)
            return {"action": "re-add", "nodes": [node]}
        return self._value("recommission", self._call("POST", f"/brokers/{node}/recommission"), nodes=[node])

    def _join(self, node: int) -> Any:
        self.ctx.brokers.start([node])
        return {"action": "join", "nodes": [node]}

    def _reassign(self) -> Any:
        replicas, active = self._replicas(), self._active()
        if not replicas or not active:
            return {"action": "reassign", "skipped": "no metadata or no live broker"}
        p = self.ctx.rng.randrange(len(replicas))
        size = min(len(replicas[p]), len(active))
        target = self.ctx.rng.sample(active, size)
        outcome = self._call("POST", f"/topics/{self.topic}/partitions/{p}/reassignment", {"replicas": target})
        return self._value("reassign", outcome, partition=p, before=replicas[p], target=target)

    def _replication_factor(self) -> Any:
        active = self._active()
        factor = self.ctx.rng.randint(2, max(2, len(active)))
        outcome = self._call("PATCH", f"/topics/{self.topic}", {"replication_factor": factor})
        return self._value("replication-factor", outcome, factor=factor)

    def _decommission(self) -> Any:
        active = self._active()
        if len(active) < 4:
            return {"action": "decommission", "skipped": f"only {len(active)} live active brokers"}
        node = self.ctx.rng.choice(active)
        outcome = self._call("POST", f"/brokers/{node}/decommission")
        if outcome["status"] == 202:
            self.draining = node
        return self._value("decommission", outcome, nodes=[node])

    def _rebalance(self) -> Any:
        return self._value("rebalance", self._call("POST", "/cluster/rebalance"))


class MoveAway(_Elastic):
    """A partition whose leader does not lead the metadata group moves to two brokers new to it (first) and one
    of its replicas; the two new brokers are cut off from the partition's leader (and only from it) before the
    move starts. They still learn the move from the metadata group and create their replicas, but the leader
    cannot reach them: correct new replicas are learners and wait (the move stalls, then finishes after the
    heal); new replicas that vote at once (the ``new-replica-votes`` canary) are a majority of the target with
    their empty logs, elect one of themselves and take writes at offsets the real group gave away."""

    name = "move-away"

    def __init__(self, ctx: NemesisContext, topic: str) -> None:
        if "partition" not in ctx.cluster.network_faults:
            raise UnsupportedFault(f"{ctx.cluster.mode} mode cannot partition")
        super().__init__(ctx, topic)
        self._layer = f"move-away-{id(self)}"

    def _start(self) -> Any:
        doc, active = self._get("/metadata"), self._active()
        try:
            partitions = doc["topics"][self.topic]["partitions"]
        except (TypeError, KeyError):
            return {"skipped": "no metadata"}
        choices = [p for p, part in enumerate(partitions)
                   if part["leader"] is not None and part["leader"] != doc.get("metadata_leader")]
        if not choices or not active:
            return {"skipped": "no partition led outside the metadata leader, or no live broker"}
        p = self.ctx.rng.choice(choices)
        current, leader = partitions[p]["replicas"], partitions[p]["leader"]
        fresh = self.ctx.rng.sample([b for b in active if b not in current], min(2, len(active) - len(current)))
        self.ctx.cluster.set_grudge(self._layer, topology.union([topology.one_way([leader], fresh),
                                                                 topology.one_way(fresh, [leader])]))
        target = [*fresh, current[0]]
        outcome = self._call("POST", f"/topics/{self.topic}/partitions/{p}/reassignment", {"replicas": target})
        return {**self._value("move-away", outcome, partition=p, before=current, target=target),
                "cut_off_from_leader": {"leader": leader, "nodes": fresh}}

    def _stop(self) -> Any:
        self.ctx.cluster.clear_grudge(self._layer)
        return None


__all__ = ["ACTIONS", "Membership", "MoveAway"]
