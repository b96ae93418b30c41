"""The client's picture of the cluster (brokers, partition leaders) and the rules for keeping it fresh.

Pure: no I/O; the current time is passed in (monotonic seconds). The cache is
filled from ``GET /metadata``::

    {"brokers": {"1": "http://h:p", ...},
     "topics": {"t": {"partitions": [{"leader": 1, "replicas": [1, 2, 3]}, ...]}},
     "metadata_leader": 1}

Refresh rules (``refresh_due`` / ``refresh_delay``):

* never fetched, or older than ``max_age_s`` -> due (periodic refresh picks up
  new topics, added partitions and moved leaders);
* ``invalidate()`` -> due, after at most ``refresh_backoff_s`` since the last
  attempt. Callers invalidate on answers that prove the cache wrong and carry
  no usable hint: NotLeader without ``leader_id``, unknown topic or partition,
  a leader that cannot be reached. A storm of such errors costs one
  ``GET /metadata`` per backoff period.
* Hints fix the cache in place without a refresh: NotLeader's
  ``leader_id``/``leader_url`` and, on a partition request, the
  ``X-Raftka-Broker`` header naming the broker that actually served it
  (``note_leader``); ``X-Raftka-Broker`` on a group request names the metadata
  leader (``note_metadata_leader``).

A broker whose connection failed is *suspected down* for ``down_backoff_s``:
routing avoids it (any other broker forwards to the leader) and "any broker"
requests try it last. Bootstrap addresses stay candidates forever, so a client
can always start over from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from raftka.client.errors import ProtocolError

__all__ = ["MetadataCache", "PartitionInfo"]


@dataclass
class PartitionInfo:
    leader: int | None
    replicas: tuple[int, ...]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(doc: Any) -> tuple[dict[int, str], dict[str, list[PartitionInfo]], int | None]:
    if not isinstance(doc, dict):
        raise ProtocolError(f"GET /metadata: expected an object, got {type(doc).__name__}")
    raw_brokers = doc.get("brokers", {})
    raw_topics = doc.get("topics", {})
    if not isinstance(raw_brokers, dict) or not isinstance(raw_topics, dict):
        raise ProtocolError("GET /metadata: 'brokers' and 'topics' must be objects")
    brokers: dict[int, str] = {}
    for key, url in raw_brokers.items():
        try:
            broker_id = int(key)
        except (TypeError, ValueError):
            raise ProtocolError(f"GET /metadata: broker id {key!r} is not an integer") from None
        if not isinstance(url, str) or not url:
            raise ProtocolError(f"GET /metadata: broker {key} has no URL")
        brokers[broker_id] = url.rstrip("/")
    topics: dict[str, list[PartitionInfo]] = {}
    for name, topic in raw_topics.items():
        parts = topic.get("partitions") if isinstance(topic, dict) else None
        if not isinstance(parts, list):
            raise ProtocolError(f"GET /metadata: topic {name!r} has no partition list")
        infos: list[PartitionInfo | None] = [None] * len(parts)
        for index, part in enumerate(parts):
            if not isinstance(part, dict):
                raise ProtocolError(f"GET /metadata: topic {name!r} partition {index} is not an object")
            number = part.get("partition", index)
            leader = part.get("leader")
            replicas = part.get("replicas") or []
            if (
                not _is_int(number)
                or not 0 <= number < len(parts)
                or infos[number] is not None
                or not (leader is None or _is_int(leader))
                or not isinstance(replicas, list)
                or not all(_is_int(r) for r in replicas)
            ):
                raise ProtocolError(f"GET /metadata: malformed partition {part!r} of topic {name!r}")
            infos[number] = PartitionInfo(leader, tuple(replicas))
        topics[name] = infos  # type: ignore[assignment]  # every slot filled: numbers are distinct and in range
    leader = doc.get("metadata_leader")
    return brokers, topics, leader if _is_int(leader) else None


class MetadataCache:
    def __init__(
        self,
        bootstrap: list[str],
        *,
        max_age_s: float = 30.0,
        refresh_backoff_s: float = 0.1,
        down_backoff_s: float = 1.0,
    ) -> None:
        self.bootstrap = list(bootstrap)
        self.max_age_s = max_age_s
        self.refresh_backoff_s = refresh_backoff_s
        self.down_backoff_s = down_backoff_s
        self.brokers: dict[int, str] = {}
        self.topics: dict[str, list[PartitionInfo]] = {}
        self.metadata_leader: int | None = None
        self.updated_at: float | None = None
        self._invalidated = False
        self._last_attempt = -math.inf
        self._down_until: dict[str, float] = {}
        self._rotation = 0

    # -- refresh rules ---------------------------------------------------------

    def update(self, doc: Any, now: float) -> None:
        """Replace the cache with a ``GET /metadata`` document (ProtocolError if malformed)."""
        self.brokers, self.topics, self.metadata_leader = _parse(doc)
        self.updated_at = now
        self._invalidated = False

    @property
    def invalidated(self) -> bool:
        return self._invalidated

    def invalidate(self) -> None:
        """The cache was proven wrong: refresh at the next opportunity (subject to the backoff)."""
        self._invalidated = True

    def refresh_started(self, now: float) -> None:
        self._last_attempt = now

    def refresh_due(self, now: float) -> bool:
        return self.refresh_delay(now) == 0.0

    def refresh_delay(self, now: float) -> float | None:
        """Seconds until a refresh is due (0: now); None when fresh and not invalidated."""
        if self.updated_at is not None and not self._invalidated:
            age = now - self.updated_at
            return 0.0 if age >= self.max_age_s else None
        return max(0.0, self._last_attempt + self.refresh_backoff_s - now)

    def age_refresh_in(self, now: float) -> float:
        """Seconds until the periodic (max age) refresh is due."""
        if self.updated_at is None:
            return 0.0
        return max(0.0, self.updated_at + self.max_age_s - now)

    # -- hints -----------------------------------------------------------------

    def note_leader(self, topic: str, partition: int, broker_id: int, url: str | None = None) -> None:
        """Record that ``broker_id`` leads (served) the partition; ``url`` registers the broker's address."""
        if url:
            self.brokers[broker_id] = url.rstrip("/")
        infos = self.topics.get(topic)
        if infos is not None and 0 <= partition < len(infos):
            infos[partition].leader = broker_id
        if broker_id not in self.brokers:
            self.invalidate()  # a broker we have no address for: learn it

    def on_not_leader(self, topic: str, partition: int, leader_id: int | None, leader_url: str | None) -> bool:
        """Apply a NotLeader answer; True if it named a leader to go to directly."""
        if leader_id is None:
            self.invalidate()
            return False
        self.note_leader(topic, partition, leader_id, leader_url)
        return True

    def note_metadata_leader(self, broker_id: int) -> None:
        self.metadata_leader = broker_id

    # -- liveness ----------------------------------------------------------------

    def mark_down(self, url: str, now: float) -> None:
        self._down_until[url] = now + self.down_backoff_s

    def mark_up(self, url: str) -> None:
        self._down_until.pop(url, None)

    def is_down(self, url: str, now: float) -> bool:
        until = self._down_until.get(url)
        return until is not None and now < until

    # -- routing ---------------------------------------------------------------

    def partitions(self, topic: str) -> list[PartitionInfo] | None:
        return self.topics.get(topic)

    def candidates(self, now: float, prefer: str | None = None) -> list[str]:
        """Every broker URL worth trying, best first: ``prefer``, known live brokers (rotated to spread
        load), bootstrap addresses, then the suspected-down ones."""
        known = [self.brokers[b] for b in sorted(self.brokers)]
        if known:
            self._rotation = (self._rotation + 1) % len(known)
            known = known[self._rotation :] + known[: self._rotation]
        ordered: list[str] = []
        for url in ([prefer] if prefer else []) + known + self.bootstrap:
            if url not in ordered:
                ordered.append(url)
        live = [u for u in ordered if not self.is_down(u, now)]
        return live + [u for u in ordered if u not in live]

    def leader_url(self, topic: str, partition: int, now: float) -> str | None:
        """The partition leader's URL if known and not suspected down, else None (ask any broker)."""
        infos = self.topics.get(topic)
        if infos is None or not 0 <= partition < len(infos):
            return None
        leader = infos[partition].leader
        url = self.brokers.get(leader) if leader is not None else None
        if url is None or self.is_down(url, now):
            return None
        return url

    def coordinator_url(self, now: float) -> str | None:
        """The metadata leader's URL (group coordinator) if known and not suspected down."""
        url = self.brokers.get(self.metadata_leader) if self.metadata_leader is not None else None
        if url is None or self.is_down(url, now):
            return None
        return url
