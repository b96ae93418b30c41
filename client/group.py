"""Consumer-group membership over raftka's group protocol: join, heartbeat, leave, commit, committed.

Protocol (coordinator = metadata leader; any broker forwards):

* ``POST /groups/{g}/members`` ``{"member_id"?, "topics", "session_timeout_ms",
  "rebalance_timeout_ms"}`` long-polls until the rebalance completes and
  answers ``{"member_id", "generation", "assignment": [{"topic", "partition"}]}``.
* ``POST /groups/{g}/heartbeat`` every ``heartbeat_interval_ms`` from a
  background task. 409 RebalanceInProgress or StaleGeneration, or 404 (the
  coordinator forgot the member: session expired) -> ``needs_join`` and the
  ``wakeup`` event is set, so the consumer's ``poll`` revokes and rejoins
  (eager protocol: every partition is revoked before the new assignment).
  After a 409 the heartbeats go on until the member rejoins: they keep its
  session alive while the application finishes the records it is processing.
* ``DELETE /groups/{g}/members/{m}`` on close (the group rebalances at once
  instead of waiting for the session to expire), and when the application has
  not called ``poll`` for ``max_poll_interval_ms``: heartbeats alone must not
  let a stuck consumer keep its partitions (Kafka's rule); its next ``poll``
  joins again.
* ``POST /groups/{g}/offsets`` with the member id and generation; the broker
  refuses commits of a stale generation -> ``CommitFailedError``. Without a
  membership (manual ``assign``) the commit carries no member/generation.
  Committed offsets only grow unless the commit says ``"reset": true``, which
  the consumer sends for explicit offsets and for partitions it sought.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from raftka.client.cluster import Cluster
from raftka.client.errors import (
    CommitFailedError,
    GroupNotFoundError,
    NotFoundError,
    ProtocolError,
    RaftkaError,
    RebalanceInProgressError,
    RetriableError,
    StaleGenerationError,
    UnknownMemberError,
)
from raftka.client.retry import Backoff
from raftka.client.structs import TopicPartition

__all__ = ["GroupMember", "parse_assignment"]

logger = logging.getLogger("raftka.client.group")


def parse_assignment(doc: Any) -> tuple[str, int, list[TopicPartition]]:
    """(member_id, generation, assignment) from a join answer (ProtocolError if malformed)."""
    try:
        member_id, generation = doc["member_id"], doc["generation"]
        assignment = [TopicPartition(a["topic"], a["partition"]) for a in doc["assignment"]]
    except (TypeError, KeyError) as exc:
        raise ProtocolError(f"join answer {doc!r} lacks {exc}") from None
    if not isinstance(member_id, str) or not isinstance(generation, int):
        raise ProtocolError(f"join answer {doc!r}: member_id must be a string and generation an integer")
    if not all(isinstance(tp.topic, str) and isinstance(tp.partition, int) for tp in assignment):
        raise ProtocolError(f"join answer {doc!r}: malformed assignment")
    return member_id, generation, assignment


class GroupMember:
    def __init__(
        self,
        cluster: Cluster,
        group_id: str,
        *,
        wakeup: asyncio.Event,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        heartbeat_interval_ms: int,
        max_poll_interval_ms: int,
        request_timeout_ms: int,
        backoff: Backoff,
    ) -> None:
        if not group_id:
            raise ValueError("group_id must be a non-empty string")
        self._cluster = cluster
        self.group_id = group_id
        self._path = "/groups/" + quote(group_id, safe="")
        self._wakeup = wakeup
        self._session_timeout_ms = session_timeout_ms
        self._rebalance_timeout_ms = rebalance_timeout_ms
        self._heartbeat_s = heartbeat_interval_ms / 1000
        self._max_poll_interval_s = max_poll_interval_ms / 1000
        self.last_poll = time.monotonic()  # the consumer updates it on every poll
        self._request_timeout_s = request_timeout_ms / 1000
        self._backoff = backoff
        self.member_id: str | None = None
        self.generation: int | None = None
        self.assignment: list[TopicPartition] = []
        self.needs_join = True
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def joined(self) -> bool:
        return self.generation is not None

    def request_rejoin(self, reason: str) -> None:
        if not self.needs_join:
            logger.info("group %s: rejoining (%s)", self.group_id, reason)
        self.needs_join = True
        self._wakeup.set()

    async def join(self, topics: list[str]) -> list[TopicPartition]:
        """Join (or rejoin) and wait for the rebalance to finish; returns this member's assignment."""
        self._stop_heartbeat()
        self.generation = None
        attempt = 0
        wait_s = self._rebalance_timeout_ms / 1000 + self._request_timeout_s
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_s
        while True:
            body: dict[str, Any] = {
                "topics": topics,
                "session_timeout_ms": self._session_timeout_ms,
                "rebalance_timeout_ms": self._rebalance_timeout_ms,
            }
            if self.member_id is not None:
                body["member_id"] = self.member_id
            try:
                answer = await self._cluster.request_coordinator(
                    "POST", self._path + "/members", json=body, timeout_s=wait_s
                )
            except NotFoundError:
                if self.member_id is None:
                    raise
                self.member_id = None  # our membership expired: join as a new member
                continue
            except (RetriableError, RebalanceInProgressError) as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                if loop.time() + delay > give_up:
                    raise
                logger.debug("group %s: join failed (%s); retrying", self.group_id, exc)
                await asyncio.sleep(delay)
                continue
            self.member_id, self.generation, self.assignment = parse_assignment(answer.json())
            self.needs_join = False
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._run_heartbeat(self.member_id, self.generation), name=f"raftka-heartbeat-{self.group_id}"
            )
            logger.info(
                "group %s: member %s generation %d assigned %s",
                self.group_id, self.member_id, self.generation, self.assignment,
            )
            return list(self.assignment)

    async def _run_heartbeat(self, member_id: str, generation: int) -> None:
        body = {"member_id": member_id, "generation": generation}
        while True:
            await asyncio.sleep(self._heartbeat_s)
            idle = time.monotonic() - self.last_poll
            if idle > self._max_poll_interval_s:
                logger.warning(
                    "group %s: poll() not called for %.0f s (max_poll_interval_ms %.0f); leaving the group so its "
                    "partitions move to live members", self.group_id, idle, self._max_poll_interval_s * 1000,
                )
                self._heartbeat = None
                await self.leave()
                self._wakeup.set()
                return
            try:
                await self._cluster.request_coordinator(
                    "POST", self._path + "/heartbeat", json=body, timeout_s=self._heartbeat_s + self._request_timeout_s
                )
            except (RebalanceInProgressError, StaleGenerationError) as exc:
                # Keep heartbeating until poll() rejoins: the session stays alive meanwhile, so a member
                # that is slow to rejoin is judged by the rebalance timeout, not evicted by its session.
                self.request_rejoin(type(exc).__name__)
            except NotFoundError:
                self.member_id = None
                self.request_rejoin("the coordinator no longer knows this member")
                return
            except RaftkaError as exc:
                logger.debug("group %s: heartbeat failed: %s", self.group_id, exc)

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    async def leave(self) -> None:
        """Leave the group (best effort: an unreachable coordinator expires the session instead)."""
        self._stop_heartbeat()
        member_id, self.member_id, self.generation = self.member_id, None, None
        self.assignment = []
        self.needs_join = True
        if member_id is None:
            return
        try:
            await self._cluster.request_coordinator(
                "DELETE", f"{self._path}/members/{quote(member_id, safe='')}", timeout_s=self._request_timeout_s
            )
        except RaftkaError as exc:
            logger.info("group %s: leave failed (%s); the session will expire instead", self.group_id, exc)

    async def commit(self, offsets: Mapping[TopicPartition, int], *, with_membership: bool, reset: bool) -> None:
        """Commit next-offsets-to-read; retriable failures are retried for up to the request timeout.

        The broker keeps committed offsets grow-only (a late or repeated commit never moves the group
        back); ``reset`` asks it to store these offsets even if lower (an explicit commit after a seek).
        """
        body: dict[str, Any] = {
            "offsets": [{"topic": tp.topic, "partition": tp.partition, "offset": o} for tp, o in offsets.items()]
        }
        if reset:
            body["reset"] = True
        if with_membership:
            if self.member_id is None or self.generation is None:
                raise CommitFailedError(
                    f"Cannot commit for group '{self.group_id}': this consumer is not a member right now "
                    "(rebalance in progress); the partitions may have moved to another member"
                )
            body["member_id"], body["generation"] = self.member_id, self.generation
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._request_timeout_s
        attempt = 0
        while True:
            try:
                await self._cluster.request_coordinator("POST", self._path + "/offsets", json=body)
                return
            except (StaleGenerationError, RebalanceInProgressError, UnknownMemberError) as exc:
                if with_membership:
                    self.request_rejoin(type(exc).__name__)
                raise CommitFailedError(
                    f"Commit refused for group '{self.group_id}': {exc.message}. The group has rebalanced; "
                    "records processed since the last successful commit may be delivered again",
                    error_code=exc.error_code,
                    http_status=exc.http_status,
                    broker=exc.broker,
                    details=exc.details,
                ) from exc
            except RetriableError:
                attempt += 1
                delay = self._backoff.delay(attempt)
                if loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)

    async def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Committed offsets (None where nothing is committed)."""
        wanted = list(dict.fromkeys(partitions))
        found: dict[TopicPartition, int | None] = dict.fromkeys(wanted)
        for topic in dict.fromkeys(tp.topic for tp in wanted):
            try:
                answer = await self._cluster.request_coordinator(
                    "GET", self._path + "/offsets", params={"topic": topic}, idempotent=True
                )
            except GroupNotFoundError:
                continue
            doc = answer.json()
            entries = doc.get("offsets") if isinstance(doc, dict) else None
            if not isinstance(entries, list):
                raise ProtocolError(f"GET {self._path}/offsets answered {doc!r}")
            for entry in entries:
                tp = TopicPartition(entry.get("topic"), entry.get("partition"))
                if tp in found and isinstance(entry.get("offset"), int) and entry["offset"] >= 0:
                    found[tp] = entry["offset"]
        return found
