"""The metadata leader's side of replica moves: watching each job, completing it, finishing drains, reporting.

A move (`metadata_cluster`: a reassignment, a decommission's or a
replication-factor change's part for one partition) is carried out by the
partition group's leader, one membership step at a time
(`raftka.node.cluster.membership`).  The metadata leader runs `JobDriver`
every `INTERVAL_S`:

* it asks every broker involved (the partition's leader and each of its old
  and new replicas, `GET /raft?groups=...`) how the group stands: voters,
  learners, and each replica's log size;
* a job whose group's voters are exactly its target replicas (at their
  registered incarnations) and that has no learners is **complete**: it
  proposes `complete_reassignment`;
* a draining broker that no replica list names any more and that holds no
  metadata voter seat is **decommissioned** (`finish_decommission`);
* it keeps each job's *view* for ``GET /reassignments``: state, per-replica
  bytes copied of the leader's total, and why a job is **stuck** (a broker it
  waits for is down, or the partition has no leader).

Nothing here is state of its own: the jobs are in the metadata, so a new
metadata leader picks them up where the old one left off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import aiohttp
import orjson

from raftka.node.cluster.metadata import command
from raftka.node.cluster.metadata_cluster import DRAINING, replicas_on
from raftka.raft.replica import broker_of
from raftka.raft.wake_grid import sleep_on_grid

if TYPE_CHECKING:
    from raftka.node.cluster.broker import Broker

log = logging.getLogger("raftka.node.cluster.jobs")

INTERVAL_S = 0.5
POLL_TIMEOUT_S = 2.0
STUCK_AFTER_S = 3.0  # a broker the job waits for, silent this long, makes the job "stuck"


class JobDriver:
    def __init__(self, broker: "Broker"):
        self.broker = broker
        self.views: dict[str, dict] = {}  # "topic/p" -> view, as of the last round
        self._round_lock = asyncio.Lock()

    async def run_forever(self) -> None:
        while True:
            await sleep_on_grid(INTERVAL_S)
            if not self.broker.is_metadata_leader():
                self.views = {}
                continue
            try:
                await self.run_round()
            except Exception:
                log.exception("broker %d: watching replica moves failed", self.broker.id)

    async def run_round(self) -> None:
        """Poll the groups being moved, refresh the views, complete what is done, finish drains."""
        async with self._round_lock:
            md = self.broker.metadata
            jobs = dict(md.reassignments())
            statuses = await self._poll(jobs) if jobs else {}
            self.views = {key: self._view(job, statuses) for key, job in jobs.items()}
            for key, view in self.views.items():
                if view["state"] == "complete":
                    job = jobs[key]
                    self.broker.propose_metadata_soon(f"complete-{job['id']}", command(
                        "complete_reassignment", topic=job["topic"], partition=job["partition"], id=job["id"],
                        target=job["target"], members=view["members"]))
            self._finish_drains()

    # ------------------------------------------------------------------ polling

    def _group(self, job: dict) -> str | None:
        topic = self.broker.metadata.topic(job["topic"])
        return None if topic is None else f"{topic['id']}/{job['partition']}"

    async def _poll(self, jobs: dict[str, dict]) -> dict[tuple[int, str], dict]:
        """(broker, group) -> that broker's status of the group, for every broker involved in a move."""
        broker = self.broker
        wanted: dict[int, set[str]] = {}
        for job in jobs.values():
            group = self._group(job)
            if group is None:
                continue
            involved = set(self.broker.metadata.topic(job["topic"])["partitions"][job["partition"]])
            leader = broker.leader_of(job["topic"], job["partition"])
            if leader is not None:
                involved.add(leader)
            for b in involved:
                wanted.setdefault(b, set()).add(group)
        asked = [b for b in wanted if b == broker.id or b in broker.urls]
        answers = await asyncio.gather(*(self._statuses(b, wanted[b]) for b in asked), return_exceptions=True)
        out = {}
        for b, answer in zip(asked, answers):
            if isinstance(answer, list):
                for status in answer:
                    out[(b, status["group"])] = status
        return out

    async def _statuses(self, b: int, groups: set[str]) -> list[dict]:
        broker = self.broker
        if b == broker.id:
            return broker.health.group_statuses(groups)
        url = f"{broker.urls[b]}/raft?groups={','.join(sorted(groups))}"
        try:
            async with broker.session.get(url, timeout=aiohttp.ClientTimeout(total=POLL_TIMEOUT_S)) as resp:
                return orjson.loads(await resp.read())["groups"] if resp.status == 200 else []
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, KeyError):
            return []

    # -------------------------------------------------------------------- views

    def _silent_for(self, b: int) -> float:
        if b == self.broker.id:
            return 0.0
        return self.broker.host.peer_silence_s(b)

    def _view(self, job: dict, statuses: dict[tuple[int, str], dict]) -> dict:
        broker, md = self.broker, self.broker.metadata
        group = self._group(job)
        target, before = job["target"], job["before"]
        leader = broker.leader_of(job["topic"], job["partition"])
        led = statuses.get((leader, group)) if leader is not None else None
        voters = {broker_of(r): r for r in led["voters"]} if led else {}
        learners = {broker_of(r): r for r in led["learners"]} if led else {}
        total = led.get("size_bytes", 0) if led else None
        replicas = []
        for b in md.topic(job["topic"])["partitions"][job["partition"]]:  # the target, then those leaving it
            own = statuses.get((b, group))
            if b in voters:
                role = "voter"
            elif b in learners:
                role = "learner"
            else:
                role = "leaving" if b not in target else "waiting"
            copied = None if own is None else own.get("replica_bytes", 0)
            if role == "voter" and total is not None:
                copied = total
            elif copied is not None and total is not None:
                copied = min(copied, total)
            replicas.append({"broker": b, "role": role, "in_target": b in target, "bytes_copied": copied,
                             "bytes_total": total, "alive": broker.alive(b)})
        wanted = [md.replica(b) for b in target]
        done = bool(led) and sorted(led["voters"]) == sorted(wanted) and not led["learners"]
        stuck = self._stuck_reason(job, leader, led, voters, target)
        if done:
            state = "complete"
        elif stuck is not None:
            state = "stuck"
        elif any(b not in voters for b in target):
            state = "cancelling" if job["cancelled"] else "copying"
        else:
            state = "cancelling" if job["cancelled"] else "removing"
        adding = [r for r in replicas if r["in_target"] and r["broker"] not in before]
        return {
            "id": job["id"], "topic": job["topic"], "partition": job["partition"], "reason": job["reason"],
            "state": state, "stuck_reason": stuck, "cancelled": job["cancelled"], "before": before,
            "target": target, "adding": [b for b in target if b not in before],
            "removing": [b for b in before if b not in target], "leader": leader,
            "created_ms": job["created_ms"], "elapsed_s": round(time.time() - job["created_ms"] / 1000, 1),
            "replicas": replicas, "members": wanted,
            "bytes_copied": sum(r["bytes_copied"] or 0 for r in adding),
            "bytes_total": (total or 0) * len(adding),
        }

    def _stuck_reason(self, job: dict, leader: int | None, led: dict | None, voters: dict,
                      target: list[int]) -> str | None:
        cancel = (f"cancel it with DELETE /topics/{job['topic']}/partitions/{job['partition']}/reassignment"
                  if not job["cancelled"] else "")
        for b in target:
            silent = self._silent_for(b)
            if b not in voters and silent > STUCK_AFTER_S:
                heard = "never heard from" if silent > 1e8 else f"not heard from for {silent:.0f} s"
                return (f"broker {b} is down ({heard}); the move waits for it to copy the partition"
                        + (f": bring it back, or {cancel}" if cancel else ": bring it back"))
        if leader is None:
            return f"partition {job['topic']}/{job['partition']} has no leader (a quorum of its replicas is down)"
        if led is None and self._silent_for(leader) > STUCK_AFTER_S:
            return f"its leader, broker {leader}, does not answer"
        return None

    def view(self, topic: str, partition: int) -> dict | None:
        return self.views.get(f"{topic}/{partition}")

    # ------------------------------------------------------------------- drains

    def _finish_drains(self) -> None:
        broker = self.broker
        md = broker.metadata
        seated = broker.seated_voters()
        for b, entry in md.brokers().items():
            if entry.get("membership") == DRAINING and not replicas_on(md.state, b) and b not in seated:
                log.info("broker %d is drained: recording it as decommissioned", b)
                broker.propose_metadata_soon(f"finish-{b}", command("finish_decommission", broker=b))


__all__ = ["JobDriver"]
