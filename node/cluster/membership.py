"""Keeps every Raft group's membership in line with the metadata: lost replicas are replaced, replicas move.

Duties, run every `INTERVAL_S` on every broker:

* **The broker registry** (metadata leader only).  The first leader records
  the cluster id and the bootstrap brokers (`bootstrap_cluster`); broker
  heartbeats announce each broker's addresses and rack, and a change is
  recorded (`update_broker`: a broker restarted with other settings).
* **Registering incarnations** (metadata leader only).  Broker heartbeats
  announce each broker's data-directory incarnation.  When a broker announces
  one the metadata does not know, its old incarnation lost its disk: the
  leader records the new one (`register_incarnation`), provided no other
  incarnation of that broker was heard within `PROVEN_GONE_S` — two live
  directories under one broker id are an operator's mistake to sort out, or
  to settle with `POST /brokers/{id}/replace` (`force_register`).  A retired
  incarnation is never registered again.
* **Changing memberships** (each group's leader).  The wanted voters are a
  partition's goal replicas (a move's target) at their registered
  incarnations, or the metadata group's voter seats (its other brokers follow
  as learners); `membership.next_step` gives one step at a time (learners are
  added, promoted once caught up, then old voters removed), and the Raft core
  refuses unsafe ones.  A leader about to remove itself hands leadership to a
  voter that stays first (the preferred replica when it can), so that the
  group is not left to an election.  A broker whose metadata replica does not
  yet know a member's incarnation leaves that group alone (its view is behind).
* **Leader balance**.  When the metadata's leader-balance counter grows
  (`POST /cluster/leaders/balance`), each partition leader hands leadership to
  the partition's preferred replica if that replica is a voter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from raftka.node.cluster.metadata import command
from raftka.node.cluster.metadata_cluster import DECOMMISSIONED
from raftka.raft.core import MembershipChangeError, NotLeaderError, Role
from raftka.raft.membership import MembershipError, next_step
from raftka.raft.replica import broker_of, incarnation_of
from raftka.raft.wake_grid import sleep_on_grid

if TYPE_CHECKING:
    from raftka.node.cluster.broker import Broker

log = logging.getLogger("raftka.node.cluster.membership")

INTERVAL_S = 0.25
PROVEN_GONE_S = 3.0
TRANSFER_PATIENCE_S = 3.0  # a leader leaving its group tries to hand over this long, then just removes itself
REGISTRY_FIELDS = ("http_url", "raft_host", "raft_port", "rack")


class MembershipReconciler:
    def __init__(self, broker: "Broker"):
        self.broker = broker
        self._registering: set[tuple[int, int]] = set()
        # group -> (term, membership index, topology version) at which it needed no step: skipped until one changes
        self._settled: dict[str, tuple[int, int, int]] = {}
        self._seen: tuple[int, int] | None = None  # (leadership version, topology version) of the last full look
        self._unsettled = False  # some group led here still needs steps
        self._transfers: dict[str, float] = {}  # group -> when its leader first tried to hand over before leaving
        self._balanced_epoch: int | None = None

    async def run_forever(self) -> None:
        while True:
            await sleep_on_grid(INTERVAL_S)
            try:
                self.reconcile_once()
            except Exception:
                log.exception("broker %d: membership reconciliation failed", self.broker.id)

    def reconcile_once(self) -> None:
        broker = self.broker
        if broker.is_metadata_leader():
            self._maintain_registry()
            self._register_new_incarnations()
        seen = (broker.host.leadership_version, broker.topology_version)
        if seen == self._seen and not self._unsettled:
            return  # no leadership, topic, assignment or incarnation changed, and every group led here is settled
        self._seen, self._unsettled = seen, False
        epoch = broker.metadata.leader_balance_epoch  # (a balance request changes the metadata: seen moved)
        balance = self._balanced_epoch is not None and epoch > self._balanced_epoch
        self._balanced_epoch = epoch
        for name in list(broker.host.leading):
            group = broker.host.groups.get(name)
            if group is None or group.node.role is not Role.LEADER:
                continue
            node = group.node
            if self._settled.get(name) != (node.log.term, node.membership_index, broker.topology_version):
                self._step_group(name, balance)
                if self._settled.get(name) != (node.log.term, node.membership_index, broker.topology_version):
                    self._unsettled = True  # a step in flight, or waiting for a learner: look again next round
        if len(self._settled) > 2 * len(broker.host.groups) + 64:  # groups removed meanwhile
            self._settled = {g: k for g, k in self._settled.items() if g in broker.host.groups}

    # --------------------------------------------------------------- registry

    def _maintain_registry(self) -> None:
        broker = self.broker
        md = broker.metadata
        if md.cluster_id is None:
            founders = broker.identity.peer_ids or tuple(broker.seed.urls)
            brokers = {str(b): {"http_url": broker.seed.urls[b], "raft_host": broker.seed.raft[b][0],
                                "raft_port": broker.seed.raft[b][1]} for b in founders if b in broker.seed.urls}
            cmd = command("bootstrap_cluster", cluster_id=broker.identity.cluster_id, brokers=brokers)
            broker.propose_metadata_soon("bootstrap", cmd)
            return
        registry = md.brokers()
        heard = {b: a for b, a in broker.host.peer_announcements.items()}
        heard[broker.id] = broker.host.announcement
        for b, announced in heard.items():
            entry = registry.get(b)
            if announced.extra is None or entry is None or entry.get("membership") == DECOMMISSIONED \
                    or entry.get("incarnation") != announced.incarnation:
                continue
            changed = {f: announced.extra.get(f) for f in REGISTRY_FIELDS if entry.get(f) != announced.extra.get(f)}
            if changed:
                log.info("broker %d now announces %s: recording it", b, changed)
                cmd = command("update_broker", broker=b, incarnation=announced.incarnation, **changed)
                broker.propose_metadata_soon(f"update-{b}", cmd)

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
        try:
            await self.broker.propose_metadata(command("register_incarnation", broker=peer, incarnation=incarnation,
                                                       previous=previous))
        except Exception as exc:  # retried on the next round
            log.info("registering broker %d incarnation %08x: %s", peer, incarnation, exc)

    # ------------------------------------------------------------- memberships

    def _step_group(self, name: str, balance: bool = False) -> None:
        broker = self.broker
        node = broker.host.group(name).node
        desired = broker.desired_membership(name)
        if desired is None or node.membership is None:
            return
        voters, learners = desired
        metadata = broker.metadata
        if any(metadata.replica(broker_of(r)) != r and not metadata.retired(broker_of(r), incarnation_of(r))
               for r in node.membership.members):
            return  # a member this broker's metadata does not know yet: our view is behind
        caught_up = frozenset(r for r in node.membership.learners
                              if r in node.progress and node.progress[r].match >= node.commit)
        step = next_step(node.membership, voters, caught_up, learners)
        if step is None:
            self._transfers.pop(name, None)
            if balance:
                self._hand_to_preferred(name)
            if not node.membership.learners and not learners:
                # nothing to wait for until the term, membership or metadata moves (a group with learners to keep,
                # the metadata group's, has its voters follow which brokers are alive: it is looked at every round)
                self._settled[name] = (node.log.term, node.membership_index, broker.topology_version)
            return
        if node.id in node.membership.voters and node.id not in step.voters and self._hand_over_first(name, step):
            return
        try:
            broker.host.propose_membership(name, step)
        except (MembershipChangeError, NotLeaderError) as exc:
            log.debug("raft group %s: membership step postponed: %s", name, exc)
        except MembershipError as exc:
            log.error("raft group %s: planned an invalid membership step %s: %s", name, step.describe(), exc)

    # ------------------------------------------------------------- leadership

    def _preference(self, name: str) -> list[int]:
        """Replica ids of the group in preferred-leader order (a partition's goal replicas; else none)."""
        broker = self.broker
        hosted = broker.partitions_by_group.get(name)
        if hosted is None or broker.metadata.topic(hosted.topic) is None:
            return []
        return [broker.metadata.replica(b) for b in broker.metadata.goal(hosted.topic, hosted.partition)]

    def _hand_over_first(self, name: str, step) -> bool:
        """This leader leaves the voters with `step`: hand leadership to a voter that stays, for a while, before
        removing itself (then the core hands over once the removal commits). True: wait for the new leader."""
        now = time.monotonic()
        first = self._transfers.get(name)
        if first is None or now - first > 10 * TRANSFER_PATIENCE_S:  # a new departure (not the last one's)
            first = self._transfers[name] = now
        if now - first > TRANSFER_PATIENCE_S:
            return False
        node = self.broker.host.group(name).node
        staying = [r for r in node.membership.voters if r in step.voters and r != node.id]
        if not staying:
            return False
        order = self._preference(name)
        target = min(staying, key=lambda r: (order.index(r) if r in order else len(order), -node.progress[r].match))
        if node.transfer_target is None:
            log.info("raft group %s: leader %s leaves the group: handing leadership to %s first", name, node.id,
                     target)
            self.broker.host.transfer_leadership(name, target)
        return True

    def _hand_to_preferred(self, name: str) -> None:
        node = self.broker.host.group(name).node
        order = self._preference(name)
        if order and order[0] != node.id and order[0] in node.membership.voters and node.transfer_target is None:
            log.info("raft group %s: handing leadership to its preferred replica %s", name, order[0])
            self.broker.host.transfer_leadership(name, order[0])
