"""Keeps every Raft group's membership in line with the metadata: lost replicas are replaced.

Two duties, run every `INTERVAL_S` on every broker:

* **Registering incarnations** (metadata leader only).  Broker heartbeats
  announce each broker's data-directory incarnation.  When a broker announces
  one the metadata does not know, its old incarnation lost its disk: the
  leader records the new one (`register_incarnation`), provided no other
  incarnation of that broker was heard within `PROVEN_GONE_S` — two live
  directories under one broker id are an operator's mistake to sort out, or
  to settle with `POST /brokers/{id}/replace` (`force_register`).  A retired
  incarnation is never registered again.
* **Changing memberships** (each group's leader).  The wanted voters are the
  assigned brokers at their registered incarnations; `membership.next_step`
  gives one step at a time (a lost voter is swapped for its successor as a
  learner, which is promoted once it has caught up), and the Raft core
  refuses unsafe ones.  A broker whose metadata replica does not yet know a
  member's incarnation leaves that group alone (its view is behind).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from raftka.raft.core import MembershipChangeError, NotLeaderError, Role
from raftka.raft.membership import MembershipError, next_step
from raftka.raft.replica import broker_of, incarnation_of

if TYPE_CHECKING:
    from raftka.node.cluster.broker import Broker

log = logging.getLogger("raftka.node.cluster.membership")

INTERVAL_S = 0.25
PROVEN_GONE_S = 3.0


class MembershipReconciler:
    def __init__(self, broker: "Broker"):
        self.broker = broker
        self._registering: set[tuple[int, int]] = set()
        # group -> (term, membership index, topology version) at which it needed no step: skipped until one changes
        self._settled: dict[str, tuple[int, int, int]] = {}
        self._seen: tuple[int, int] | None = None  # (leadership version, topology version) of the last full look
        self._unsettled = False  # some group led here still needs steps

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            try:
                self.reconcile_once()
            except Exception:
                log.exception("broker %d: membership reconciliation failed", self.broker.id)

    def reconcile_once(self) -> None:
        broker = self.broker
        if broker.is_metadata_leader():
            self._register_new_incarnations()
        seen = (broker.host.leadership_version, broker.topology_version)
        if seen == self._seen and not self._unsettled:
            return  # no leadership, topic or incarnation changed, and every group led here is settled
        self._seen, self._unsettled = seen, False
        for name in list(broker.host.leading):
            group = broker.host.groups.get(name)
            if group is None or group.node.role is not Role.LEADER:
                continue
            node = group.node
            if self._settled.get(name) != (node.log.term, node.membership_index, broker.topology_version):
                self._step_group(name)
                if self._settled.get(name) != (node.log.term, node.membership_index, broker.topology_version):
                    self._unsettled = True  # a step in flight, or waiting for a learner: look again next round
        if len(self._settled) > 2 * len(broker.host.groups) + 64:  # groups removed meanwhile
            self._settled = {g: k for g, k in self._settled.items() if g in broker.host.groups}

    # ----------------------------------------------------------- incarnations

    def _register_new_incarnations(self) -> None:
        broker = self.broker
        now = time.monotonic()
        for peer, announced in list(broker.host.peer_announcements.items()):
            incarnation = announced.incarnation
            if incarnation is None or peer not in broker.urls:
                continue
            if incarnation == broker.metadata.incarnation(peer) or broker.metadata.retired(peer, incarnation):
                continue
            heard = broker.host.incarnations_heard.get(peer, {})
            others = [i for i, t in heard.items() if i != incarnation and now - t < PROVEN_GONE_S]
            if others:
                log.warning("broker %d is announced by two data directories (incarnations %s): not replacing "
                            "the old one automatically; stop one of them, or use POST /brokers/%d/replace",
                            peer, ", ".join(f"{i:08x}" for i in [incarnation, *others]), peer)
                continue
            self._register(peer, incarnation)

    def force_register(self, peer: int) -> int:
        """Register the incarnation `peer` announces now, even if another was heard lately; returns it."""
        host = self.broker.host
        announced = host.announcement if peer == self.broker.id else host.peer_announcements.get(peer)
        if announced is None or announced.incarnation is None:
            raise LookupError(f"broker {peer} has not announced an incarnation")
        if announced.incarnation == self.broker.metadata.incarnation(peer):
            raise LookupError(f"broker {peer} already runs at its registered incarnation {announced.incarnation:08x}")
        if self.broker.metadata.retired(peer, announced.incarnation):
            raise LookupError(f"broker {peer} announces retired incarnation {announced.incarnation:08x}")
        self._register(peer, announced.incarnation)
        return announced.incarnation

    def _register(self, peer: int, incarnation: int) -> None:
        key = (peer, incarnation)
        if key in self._registering:
            return
        self._registering.add(key)
        previous = self.broker.metadata.incarnation(peer)
        log.warning("broker %d came back with a new data directory (incarnation %08x, was %08x): its old replicas "
                    "are lost; registering it so that every group replaces them", peer, incarnation, previous)
        task = asyncio.create_task(self._propose_registration(peer, incarnation, previous))
        task.add_done_callback(lambda _: self._registering.discard(key))

    async def _propose_registration(self, peer: int, incarnation: int, previous: int) -> None:
        from raftka.node.cluster.metadata import command
        try:
            await self.broker.propose_metadata(command("register_incarnation", broker=peer, incarnation=incarnation,
                                                       previous=previous))
        except Exception as exc:  # retried on the next round
            log.info("registering broker %d incarnation %08x: %s", peer, incarnation, exc)

    # ------------------------------------------------------------- memberships

    def _step_group(self, name: str) -> None:
        broker = self.broker
        node = broker.host.group(name).node
        desired = broker.desired_voters(name)
        if desired is None or node.membership is None:
            return
        metadata = broker.metadata
        if any(metadata.replica(broker_of(r)) != r and not metadata.retired(broker_of(r), incarnation_of(r))
               for r in node.membership.members):
            return  # a member this broker's metadata does not know yet: our view is behind
        caught_up = frozenset(r for r in node.membership.learners
                              if r in node.progress and node.progress[r].match >= node.commit)
        step = next_step(node.membership, desired, caught_up)
        if step is None:
            if not node.membership.learners:  # nothing to wait for until the term, membership or metadata moves
                self._settled[name] = (node.log.term, node.membership_index, broker.topology_version)
            return
        try:
            broker.host.propose_membership(name, step)
        except (MembershipChangeError, NotLeaderError) as exc:
            log.debug("raft group %s: membership step postponed: %s", name, exc)
        except MembershipError as exc:
            log.error("raft group %s: planned an invalid membership step %s: %s", name, step.describe(), exc)
