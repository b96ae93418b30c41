"""Who leads the groups a broker does not host: both sides of ``GET /raft/leaders``.

A broker knows the leaders of the groups it hosts; for the others it asks its
peers.  `LeaderPoller.led_groups` is what a broker answers (the partition
groups it leads with their terms, and the metadata group's term if it leads it
under its lease); `LeaderPoller.run_forever` asks the peers and keeps
`remote_leaders` (group -> the broker reported to lead it in the highest
term).  Answers carry changes since the asker's last version only, and a peer
is asked only when its heartbeats say something changed (see `run_forever`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import orjson

from raftka.node.cluster.metadata import METADATA_GROUP
from raftka.raft.wake_grid import sleep_on_grid

if TYPE_CHECKING:
    from raftka.node.cluster.broker import Broker

LEADER_POLL_INTERVAL_S = 0.5


@dataclass
class PeerLeaders:
    """What a peer last answered to `GET /raft/leaders`."""

    version: str  # its leadership tag then
    groups: dict[str, int]  # partition group -> term it leads
    metadata_term: int | None  # the metadata group's term, if it led it under its lease
    metadata_lease_pending: bool  # it led the metadata group, its lease not yet confirmed


class LeaderPoller:
    def __init__(self, broker: "Broker"):
        self.broker = broker
        self.remote_leaders: dict[str, int] = {}  # group -> leader, as reported by peers
        self.polls = 0  # GET /raft/leaders sent to peers (see run_forever)

    def led_groups(self, since: str | None = None) -> dict:
        """What `GET /raft/leaders` answers: the partition groups this broker leads with their terms (omitted when
        unchanged since version `since`), and the metadata group's term if it leads it under its lease."""
        broker = self.broker
        version = broker.host.leadership_tag
        leading = broker.metadata_leader_term()
        metadata = leading if leading is not None and broker.host.read_allowed(METADATA_GROUP) else None
        doc = {"broker": broker.id, "version": version, "metadata_term": metadata,
               "metadata_lease_pending": leading is not None and metadata is None}
        if since != version:
            doc["groups"] = {name: group.led_term for name in list(broker.host.leading)
                             if name != METADATA_GROUP and (group := broker.host.groups.get(name)) is not None
                             and group.led_term is not None}
        return doc

    async def run_forever(self) -> None:
        """Ask peers which groups they lead; a peer answers with its changes only (versions), so a cluster
        of 10,000 partitions costs a few bytes per poll.  A peer is asked only when its heartbeats announce
        another leadership tag than the version it last answered with, when it fell silent or its Raft link
        is down (the request fails and its claims are dropped), or while it leads the metadata group without
        its lease yet (leases are not in the tag): an idle cluster sends no poll at all."""
        broker = self.broker
        known: dict[int, PeerLeaders] = {}
        while True:
            await sleep_on_grid(LEADER_POLL_INTERVAL_S)
            peers = [b for b in broker.urls if b != broker.id]
            due = [b for b in peers if self._leaders_changed(b, known.get(b))]
            if not due:
                continue
            self.polls += len(due)
            results = await asyncio.gather(*(self._fetch_led(b, known[b].version if b in known else "")
                                             for b in due), return_exceptions=True)
            for peer, doc in zip(due, results):
                if not isinstance(doc, dict):
                    known.pop(peer, None)  # a silent peer's claims are dropped
                    continue
                groups = doc["groups"] if "groups" in doc else known[peer].groups if peer in known else {}
                known[peer] = PeerLeaders(doc["version"], groups, doc.get("metadata_term"),
                                          bool(doc.get("metadata_lease_pending")))
            reports: dict[str, tuple[int, int]] = {}
            for peer in peers:
                if peer not in known:
                    continue
                led = dict(known[peer].groups)
                if known[peer].metadata_term is not None:
                    led[METADATA_GROUP] = known[peer].metadata_term
                for group, term in led.items():
                    if group not in reports or reports[group][1] < term:
                        reports[group] = (peer, term)
            self.remote_leaders = {g: b for g, (b, _) in reports.items()}

    def _leaders_changed(self, peer: int, known: PeerLeaders | None) -> bool:
        """Must `run_forever` ask `peer` again (see there)?"""
        if known is None or known.metadata_lease_pending:
            return True
        announced = self.broker.host.peer_announcements.get(peer)
        return (announced is None or announced.leadership != known.version or not self.broker.alive(peer)
                or not self.broker.host.broker_reachable(peer))

    async def _fetch_led(self, peer: int, since: str) -> dict | None:
        async with self.broker.session.get(self.broker.urls[peer] + "/raft/leaders", params={"since": since},
                                           timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return orjson.loads(await resp.read()) if resp.status == 200 else None
