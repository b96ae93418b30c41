"""Which broker to ask: metadata refresh (coalesced), partition-leader routing, failover between brokers.

``Cluster`` joins a ``Connection`` (HTTP) and a ``MetadataCache`` (routing
state and refresh rules). It is shared by the producer, consumer and admin
cores of one client and lives on one event loop.

* ``request_any``: any broker will do (admin, metadata); tries the candidates
  in order and moves on when a broker cannot be reached -> ``NoBrokersAvailable``
  listing every address and why it failed.
* ``request_partition``: goes straight to the partition leader from the cache,
  falls back to any broker (brokers forward), learns from ``X-Raftka-Broker``
  and NotLeader hints, invalidates the cache on unknown topic/partition.
  It does not retry NotLeader/timeouts itself: the producer and fetcher own
  their retry loops and deadlines.
* ``request_coordinator``: group requests, preferably to the metadata leader.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from raftka.client.connection import ClientSecurity, Connection, Response, parse_bootstrap
from raftka.client.errors import (
    BrokerConnectionError,
    BrokerNotAvailableError,
    NoBrokersAvailable,
    NotLeaderError,
    PartitionNotFoundError,
    RequestTimedOutError,
    StorageUnavailableError,
    TopicNotFoundError,
)
from raftka.client.metadata import MetadataCache, PartitionInfo

__all__ = ["Cluster", "topic_path"]


def topic_path(topic: str, partition: int | None = None, suffix: str = "") -> str:
    """``/topics/{t}[/partitions/{p}]{suffix}`` with the topic name URL-quoted."""
    path = "/topics/" + quote(topic, safe="")
    if partition is not None:
        path += f"/partitions/{partition}"
    return path + suffix


class Cluster:
    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | None = None,
        *,
        request_timeout_ms: int = 30_000,
        connect_timeout_ms: int = 5_000,
        metadata_max_age_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        security: ClientSecurity | None = None,
    ) -> None:
        self.bootstrap = parse_bootstrap(bootstrap_servers)
        self.connection = Connection(
            request_timeout_s=request_timeout_ms / 1000, connect_timeout_s=connect_timeout_ms / 1000,
            security=security,
        )
        self.cache = MetadataCache(
            self.bootstrap,
            max_age_s=metadata_max_age_ms / 1000,
            refresh_backoff_s=retry_backoff_ms / 1000,
        )
        self._refresh_task: asyncio.Task[None] | None = None

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # -- metadata ----------------------------------------------------------------

    async def ensure_metadata(self) -> None:
        """Make the cache usable: wait for a refresh if it is empty or invalidated; if it is merely
        old, refresh in the background and return at once."""
        delay = self.cache.refresh_delay(self.now())
        if delay is None:
            return
        if self.cache.updated_at is not None and not self.cache.invalidated:
            self._start_refresh()
            return
        if delay > 0:
            await asyncio.sleep(delay)
        await asyncio.shield(self._start_refresh())

    async def refresh(self) -> None:
        """Fetch fresh metadata (shared with a refresh already running; rate-limited by the backoff)."""
        self.cache.invalidate()
        await self.ensure_metadata()

    def _start_refresh(self) -> asyncio.Task[None]:
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.get_running_loop().create_task(self._fetch_metadata())
            self._refresh_task.add_done_callback(_consume_exception)
        return self._refresh_task

    async def _fetch_metadata(self) -> None:
        # The metadata leader applies changes first: prefer it, so a topic just created is seen at once.
        now = self.now()
        self.cache.refresh_started(now)
        answer = await self.request_any("GET", "/metadata", prefer=self.cache.coordinator_url(now), idempotent=True)
        self.cache.update(answer.json(), self.now())

    async def topic_partitions(self, topic: str) -> list[PartitionInfo]:
        """The topic's partitions from the cache (refreshing once if unknown); TopicNotFoundError if none."""
        await self.ensure_metadata()
        infos = self.cache.partitions(topic)
        if infos is None:
            await self.refresh()
            infos = self.cache.partitions(topic)
        if infos is None:
            # Metadata lists only the topics this user may describe: ask for the topic itself, which answers
            # "not authorized" (TopicAuthorizationError) rather than "not found" when that is the reason.
            try:
                await self.request_any("GET", topic_path(topic), idempotent=True)
            except TopicNotFoundError:
                pass
            else:
                await self.refresh()
                infos = self.cache.partitions(topic)
        if infos is None:
            raise TopicNotFoundError(
                f"Topic '{topic}' not found.", details={"topic": topic, "suggestions": self.near_topics(topic)}
            )
        return infos

    def near_topics(self, topic: str) -> list[str]:
        """Known topic names similar to ``topic`` (for "did you mean" messages)."""
        return difflib.get_close_matches(topic, list(self.cache.topics), n=3, cutoff=0.6)

    # -- requests ------------------------------------------------------------------

    async def request_any(
        self, method: str, path: str, *, prefer: str | None = None, idempotent: bool = False, **kwargs: Any
    ) -> Response:
        """Ask brokers in turn until one answers. Unreachable brokers are skipped (the request never
        left); with ``idempotent`` also brokers that did not answer in time or could not serve it."""
        tried: dict[str, str] = {}
        for url in self.cache.candidates(self.now(), prefer):
            try:
                answer = await self.connection.request(url, method, path, **kwargs)
            except BrokerConnectionError as exc:
                self.cache.mark_down(url, self.now())
                tried[url] = exc.message
                continue
            except (RequestTimedOutError, BrokerNotAvailableError) as exc:
                if not idempotent:
                    raise
                tried[url] = exc.message
                continue
            self.cache.mark_up(url)
            return answer
        raise NoBrokersAvailable(tried)

    async def request_partition(self, topic: str, partition: int, method: str, path: str, **kwargs: Any) -> Response:
        """Send a partition request to its leader (or, if unknown or unreachable, to any broker).

        Only for requests brokers serve on the partition leader and forward otherwise (produce, fetch,
        offsets): the answer's ``X-Raftka-Broker`` is then taken as the partition's leader.
        """
        await self.ensure_metadata()
        leader = self.cache.leader_url(topic, partition, self.now())
        try:
            answer = await self.request_any(method, path, prefer=leader, **kwargs)
        except (NotLeaderError, StorageUnavailableError) as exc:  # the leader moved, or is moving away
            self.cache.on_not_leader(topic, partition, exc.leader_id, exc.leader_url)
            raise
        except (TopicNotFoundError, PartitionNotFoundError):
            self.cache.invalidate()
            raise
        served_by = answer.served_by
        if served_by is not None and self.cache.brokers.get(served_by) != leader:
            self.cache.note_leader(topic, partition, served_by)
        return answer

    async def request_coordinator(self, method: str, path: str, **kwargs: Any) -> Response:
        """Send a consumer-group request, preferably to the metadata leader (the group coordinator)."""
        await self.ensure_metadata()
        answer = await self.request_any(method, path, prefer=self.cache.coordinator_url(self.now()), **kwargs)
        if answer.served_by is not None:
            self.cache.note_metadata_leader(answer.served_by)
        return answer

    async def close(self) -> None:
        task, self._refresh_task = self._refresh_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.connection.close()


def _consume_exception(task: asyncio.Task[None]) -> None:
    """Background refreshes may fail (brokers down); the next ensure_metadata retries. Avoid
    'exception was never retrieved' warnings."""
    if not task.cancelled():
        task.exception()
