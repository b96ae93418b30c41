"""The partition replicas a broker hosts: opened, reconfigured, retained and removed in line with the metadata.

`PartitionHosting` reconciles the partition groups hosted here with the
metadata whenever a topic changes (`reconcile_soon`: create → open groups,
delete or move away → remove groups and their data; changed topic configs take
effect at once) and keeps `Broker.partitions` (`HostedPartition`):

* storage is opened in worker threads, `OPEN_BATCH` partitions at a time, and
  recorded in `hosted_groups` before their groups can say anything;
* a replica whose state was lost under a live incarnation is not hosted
  (`lost_groups`); a partition that cannot be opened for another reason (a
  full or broken disk, ...) is recorded (`open_failures`, shown as
  `partition_problems` by /health, /raft and the metrics) and retried with
  backoff, while every other group proceeds;
* once per start, with a current metadata replica, the journals, logs and
  hard states of replicas no longer hosted here are deleted (orphans);
* every replica deletes whole segments past retention.ms / retention.bytes
  (`retention_forever`);
* after each batch of partitions opened, the heap is frozen out of the garbage
  collector's scans (`heap.settle`; a removed partition needs no collection).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raftka.node.cluster import heap
from raftka.node.cluster.metadata import METADATA_GROUP
from raftka.node.cluster.topics import partition_directory_name
from raftka.raft import canary
from raftka.raft.host import GroupStateLost, ReadIndexError
from raftka.raft.partition import PartitionStateMachine
from raftka.raft.wake_grid import sleep_on_grid
from raftka.storage import LogConfig

if TYPE_CHECKING:
    from raftka.node.cluster.broker import Broker

log = logging.getLogger("raftka.node.cluster.hosting")

RETENTION_INTERVAL_S = 10.0
RETENTION_INTERVAL_LOW_DISK_S = 2.0  # free a full disk quickly
OPEN_RETRY_FIRST_S = 0.5  # a partition that failed to open is retried after this, doubling each time ...
OPEN_RETRY_MAX_S = 30.0  # ... up to this
OPEN_BATCH = 64  # partitions opened in parallel worker threads, then hosted together
ORPHAN_READ_INDEX_S = 2.0
ORPHAN_RETRY_S = 2.0


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


@dataclass
class OpenFailure:
    """A partition this broker should host but could not open: the error, attempts so far, next retry (loop time)."""

    group: str
    error: str
    attempts: int
    retry_at: float


@dataclass
class HostedPartition:
    topic: str
    partition: int
    group: str
    sm: "NotifyingPartition"
    configs: dict  # the topic configs its log runs with


class NotifyingPartition(PartitionStateMachine):
    """A partition state machine that wakes long-polling fetches after each append."""

    def __init__(self, directory: str, log_config: LogConfig, *, raft_log: bool = True):
        # The broker's Raft host locks the data directory; the log is the group's Raft log (partition_journal)
        # unless the replica was created by a raftka that kept a separate journal.
        super().__init__(directory, log_config, lock=False, raft_log=raft_log)
        self._waiters: list[asyncio.Future] = []

    def apply(self, index, term, data):
        result = super().apply(index, term, data)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        return result

    async def wait_beyond(self, offset: int, timeout: float) -> None:
        """Return when the high watermark passes `offset`, or after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.high_watermark <= offset and loop.time() < deadline:
            fut = loop.create_future()
            self._waiters.append(fut)
            try:
                async with asyncio.timeout_at(deadline):
                    await fut
            except asyncio.TimeoutError:
                return


class PartitionHosting:
    def __init__(self, broker: "Broker"):
        self.broker = broker
        self.lost_groups: dict[str, str] = {}  # group -> why this broker will not host it
        self.open_failures: dict[tuple[str, int], OpenFailure] = {}  # partitions that could not be opened here
        self._reconcile_wanted = asyncio.Event()
        self._orphans_unchecked = True  # see _remove_orphans

    async def run_forever(self) -> None:
        while True:
            await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            try:
                await self._reconcile()
            except Exception:
                log.exception("broker %d: reconciling partition groups failed", self.broker.id)

    def reconcile_soon(self) -> None:
        self._reconcile_wanted.set()

    def _wanted(self) -> dict[tuple[str, int], tuple[str, list[int], dict]]:
        broker = self.broker
        wanted = {}
        for name, topic in broker.metadata.topics.items():
            for p, replicas in enumerate(topic["partitions"]):
                if broker.id in replicas:
                    # A replica added to an existing group (a move) starts empty and learns its membership from the
                    # leader; a founding replica bootstraps with the membership its group was created with.
                    members = broker.metadata.initial_members(topic, p)
                    if broker.host.replica not in members:
                        members = None
                        if canary.enabled("new-replica-votes"):  # the unsafe bootstrap the rule above prevents
                            members = [broker.metadata.replica(b) for b in broker.metadata.goal(name, p)]
                    wanted[(name, p)] = (f"{topic['id']}/{p}", members, topic["configs"])
        return wanted

    async def _reconcile(self) -> None:
        broker = self.broker
        wanted = self._wanted()
        wanted_groups = {group for group, _, _ in wanted.values()}
        for key, hosted in list(broker.partitions.items()):
            if key not in wanted or wanted[key][0] != hosted.group:
                del broker.partitions[key]
                broker.partitions_by_group.pop(hosted.group, None)
                await broker.host.remove_group(hosted.group, delete_data=True)
                # Also on a broker whose disk is full; in a worker thread, so a removal of thousands of partitions
                # leaves the loop free between them (it stalled the loop past an election timeout).
                await asyncio.to_thread(shutil.rmtree, hosted.sm.directory, ignore_errors=True)
                log.info("broker %d: removed partition %s/%d", broker.id, *key)
        stale = {g for g in broker.hosted_groups.read() if g != METADATA_GROUP and g not in wanted_groups}
        if stale:
            broker.hosted_groups.write(broker.hosted_groups.read() - stale)
        for group in [g for g in self.lost_groups if g not in wanted_groups]:
            del self.lost_groups[group]
        for key in [k for k in self.open_failures if k not in wanted or wanted[k][0] != self.open_failures[k].group]:
            del self.open_failures[key]
        to_open = []
        now = asyncio.get_running_loop().time()
        for (topic, p), (group, members, configs) in wanted.items():
            hosted = broker.partitions.get((topic, p))
            if hosted is not None:
                if hosted.configs != configs:  # e.g. lowered retention: takes effect at once
                    hosted.sm.reconfigure(LogConfig.from_topic_config(configs))
                    hosted.configs = configs
                    self._apply_retention(hosted)
                continue
            failure = self.open_failures.get((topic, p))
            if group in self.lost_groups or (failure is not None and now < failure.retry_at):
                continue  # lost, or failed and retried later (open_failures)
            to_open.append((topic, p, group, members, configs))
        for start in range(0, len(to_open), OPEN_BATCH):
            await self._open_partitions(to_open[start:start + OPEN_BATCH])
            heap.settle()
        if self._orphans_unchecked:
            await self._remove_orphans()

    async def _open_partitions(self, batch: list[tuple[str, int, str, list[int] | None, dict]]) -> None:
        """Open the partitions' storage in worker threads (in parallel; the event loop serves meanwhile), record
        them in hosted-groups.json once for the batch, then host their Raft groups. A replica whose state was lost
        goes to `lost_groups`; any other failure (a full or broken disk, ...) is logged and recorded in
        `open_failures` with a retry time (exponential backoff). One partition never keeps the others from being
        hosted."""
        broker = self.broker
        hosted_before = broker.hosted_groups.read()
        results = await asyncio.gather(*(asyncio.to_thread(self._open_storage, group, members, configs, topic, p,
                                                           hosted_before, self._log_is_raft_log(topic))
                                         for topic, p, group, members, configs in batch), return_exceptions=True)
        opened = []
        for (topic, p, group, members, configs), result in zip(batch, results):
            if isinstance(result, BaseException):
                self._open_failed(topic, p, group, result)
            else:
                opened.append(((topic, p, group, members, configs), result))
        new = {group for (_, _, group, _, _), _ in opened} - hosted_before
        if new:  # after the journals exist, before any of them can say anything (the pump)
            try:
                await asyncio.to_thread(broker.hosted_groups.write, broker.hosted_groups.read() | new)
            except OSError as exc:
                for (topic, p, group, _, _), (sm, (journal, _)) in opened:
                    self._close_quietly(sm, journal)
                    self._open_failed(topic, p, group, exc)
                return
        for (topic, p, group, members, configs), (sm, replica) in opened:
            broker.host.add_group(group, members, sm, opened=replica)
            failure = self.open_failures.pop((topic, p), None)
            if failure is not None:
                log.info("broker %d: partition %s/%d opened after %d failed attempts", broker.id, topic, p,
                         failure.attempts)
            hosted = broker.partitions[(topic, p)] = HostedPartition(topic, p, group, sm, configs)
            broker.partitions_by_group[group] = hosted
            node = replica[1]
            if members and members[0] == node.id and node.log.term == 0:
                node.campaign()  # a new partition: the preferred leader stands first
            log.info("broker %d: hosting partition %s/%d (%s)", broker.id, topic, p,
                     f"replicas {members}" if members else "a new replica: it joins as a learner")

    async def _remove_orphans(self) -> None:
        """Once per start: delete the journals, logs and hard states of replicas this broker no longer hosts (it was
        down, or stopped, when a move took them away or a topic was deleted; a stale hard state would also keep a
        replica moved back here later from starting empty). Only with a metadata replica known to be current (a
        read index): a stale one could take a replica this broker still holds for an orphan."""
        broker = self.broker
        if not broker.is_metadata_leader():
            try:
                await broker.host.read_index(METADATA_GROUP, ORPHAN_READ_INDEX_S)
            except ReadIndexError:
                asyncio.get_running_loop().call_later(ORPHAN_RETRY_S, self._reconcile_wanted.set)
                return
        self._orphans_unchecked = False
        wanted = self._wanted()
        groups = {group for group, _, _ in wanted.values()} | set(broker.host.groups) | {METADATA_GROUP}
        directories = {partition_directory_name(topic, p, group.split("/")[0])
                       for (topic, p), (group, _, _) in wanted.items()}
        directories |= {os.path.basename(h.sm.directory) for h in broker.partitions.values()}
        raft_dir = os.path.join(broker.data_dir, "raft")  # group directories (journals), beside the hard state store
        orphans = [os.path.join(raft_dir, name) for name in _listdir(raft_dir)
                   if name.replace("~", "/") not in groups and os.path.isdir(os.path.join(raft_dir, name))]
        orphans += [os.path.join(broker.data_dir, "partitions", name)
                    for name in _listdir(os.path.join(broker.data_dir, "partitions")) if name not in directories]
        for path in orphans:
            log.info("broker %d: removing %s: no replica of it is hosted here any more", broker.id, path)
            shutil.rmtree(path, ignore_errors=True)
        for group in broker.host.hard_states.groups:  # the term, vote and meta entries of those replicas
            if group not in groups:
                log.info("broker %d: removing the hard state of raft group %s: no replica of it is hosted here any "
                         "more", broker.id, group)
                broker.host.hard_states.remove(group)

    def _log_is_raft_log(self, topic: str) -> bool:
        """Are the logs of the topic's partitions their Raft logs (topics created since), or do their replicas keep
        a separate journal (older topics: every replica of a group must store its entries alike, also a replica a
        move or a disk replacement adds now)?"""
        doc = self.broker.metadata.topic(topic)
        return doc is not None and bool(doc.get("log_is_raft_log"))

    def _open_storage(self, group: str, members: list[int] | None, configs: dict, topic: str, p: int,
                      hosted: set[str], log_is_raft_log: bool):
        """(state machine, (journal, node)) of a partition replica; blocking I/O, run in a worker thread."""
        broker = self.broker
        directory = os.path.join(broker.data_dir, "partitions",
                                 partition_directory_name(topic, p, group.split("/")[0]))
        broker.hosted_groups.check_not_lost(group, hosted,
                                            directory if log_is_raft_log else broker.host.group_directory(group))
        sm = NotifyingPartition(directory, LogConfig.from_topic_config(configs), raft_log=log_is_raft_log)
        try:
            return sm, broker.host.open_replica(group, members, sm)
        except BaseException:
            self._close_quietly(sm)
            raise

    @staticmethod
    def _close_quietly(*things) -> None:
        for thing in things:
            try:
                thing.close()
            except Exception:
                log.debug("closing %r after a failed open", thing, exc_info=True)

    def _open_failed(self, topic: str, p: int, group: str, exc: BaseException) -> None:
        if isinstance(exc, GroupStateLost):
            self.lost_groups[group] = str(exc)
            self.open_failures.pop((topic, p), None)
            log.error("broker %d: not hosting partition %s/%d: %s", self.broker.id, topic, p, exc)
            return
        loop = asyncio.get_running_loop()
        failure = self.open_failures.get((topic, p))
        attempts = failure.attempts + 1 if failure is not None else 1
        delay = min(OPEN_RETRY_MAX_S, OPEN_RETRY_FIRST_S * 2 ** (attempts - 1))
        self.open_failures[(topic, p)] = OpenFailure(group, f"{type(exc).__name__}: {exc}", attempts,
                                                     loop.time() + delay)
        loop.call_later(delay, self._reconcile_wanted.set)
        log.error("broker %d: cannot host partition %s/%d (attempt %d, next in %.1f s)", self.broker.id, topic, p,
                  attempts, delay, exc_info=(type(exc), exc, exc.__traceback__) if attempts == 1 else None)

    def partition_problems(self) -> list[dict]:
        """Partitions this broker should host but could not open: why, how often tried, when next (replicas whose
        state was lost are `lost_groups`, not retried)."""
        now = asyncio.get_running_loop().time()
        return [{"partition": f"{topic}/{p}", "group": f.group, "error": f.error, "attempts": f.attempts,
                 "retry_in_s": round(max(0.0, f.retry_at - now), 1)}
                for (topic, p), f in sorted(self.open_failures.items())]

    async def retention_forever(self) -> None:
        """Each replica deletes whole segments past retention.ms / retention.bytes (as in Kafka), also
        replicas stopped by a full disk; more often while the disk is low."""
        broker = self.broker
        while True:
            low = broker.host.storage_status()["status"] != "ok"
            await sleep_on_grid(RETENTION_INTERVAL_LOW_DISK_S if low else RETENTION_INTERVAL_S)
            for hosted in list(broker.partitions.values()):
                self._apply_retention(hosted)

    def _apply_retention(self, hosted: HostedPartition) -> None:
        try:
            hosted.sm.apply_retention()
        except Exception:
            log.exception("broker %d: retention of %s/%d failed", self.broker.id, hosted.topic, hosted.partition)
