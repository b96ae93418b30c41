"""Named fault selections for the runner's ``--nemesis``, the canary scenarios, and the
``--full`` / ``--quick`` matrices.

A nemesis name selects one or more entries of the nemesis catalogue
(nemesis.p0_nemeses / p1_nemeses, disk_loss.disk_loss_nemeses); a schedule
rotates through them. Leader targets need callbacks that name the current
leader of a partition or of the metadata group (the runner asks ``GET
/metadata``); disk-loss faults also need the brokers' view of their Raft
groups and whether the cluster may lose a disk now (``GET /raft``,
raft_state.py). Elastic-cluster faults (elastic.py) act on the workload's topic
through the brokers' API: ``membership`` changes the cluster's shape in every
window, alone or together with a kill or a partition (run it on 5 nodes of
which 3 bootstrap: the first windows grow the cluster to 5).

Each canary (``--bug NAME``, raft/canary.py) comes with the scenario that
exposes it and the anomaly kinds that count as detection: a canary run
passes only when the checker reports one of them (a merely vacuous or slow
run proves nothing). ``fast`` canaries detect reliably in a short run and are
part of the fast test tier; the others run in ``--full``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .disk_loss import Ready, View, disk_loss_nemeses
from .elastic import Membership, MoveAway
from .nemesis import Nemesis, NemesisContext, p0_nemeses, p1_nemeses
from .schedule import Entry

LeaderCallback = Callable[[], int | None]

# name -> entries; an entry is one catalogue key, or a tuple of keys started together
NEMESES: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "none": (),
    # P0
    "partition": ("partition-one", "partition-halves", "partition-bridge"),
    "partition-leader": ("partition-leader",),
    "partition-metadata-leader": ("partition-metadata-leader",),
    "client-isolation": ("isolate-client-one", "isolate-client-leader", "isolate-client-metadata-leader"),
    "kill": ("kill-one", "kill-minority"),
    "kill-leader": ("kill-leader",),
    "kill-metadata-leader": ("kill-metadata-leader",),
    "pause": ("pause-one", "pause-leader", "pause-metadata-leader"),
    "power": ("power-failure-one",),
    "power-all": ("power-failure-all",),
    "disk-full": ("disk-full-leader", "disk-full-one"),
    # P1
    "partition-one-way": ("partition-one-way",),
    "majorities-ring": ("partition-majorities-ring",),
    "packet-loss": ("packet-loss",),
    "bandwidth": ("bandwidth",),
    "clock": ("clock",),
    "pause-kill": (("pause-one", "kill-one"),),
    "partition-kill": (("partition-one", "kill-one"),),
    # disk loss (disk_loss.py): wipes mixed with pauses and kills, and issue 11's repro
    "disk-loss": (("disk-loss-metadata-leader", "pause-another"), "pause-wipe-kill",
                  ("disk-loss-leader", "kill-another"), "disk-loss-one"),
    "pause-wipe-kill": ("pause-wipe-kill",),
    # elastic cluster (elastic.py): joins, moves, factor changes, drains and re-adds, with kills and partitions
    "membership": ("membership", ("membership", "kill-one"), ("membership", "partition-one")),
    "move-away": ("move-away",),
}
ELASTIC = ("membership", "move-away")
P0 = ("partition", "partition-leader", "partition-metadata-leader", "client-isolation", "kill", "kill-leader",
      "kill-metadata-leader", "pause", "power", "power-all", "disk-loss", "disk-full")
SMALL_DISKS = frozenset({"disk-full"})  # selections that need small data-dir filesystems (diskspace.py)


def entries(names: Iterable[str], ctx: NemesisContext, *, partition_leader: LeaderCallback,
            metadata_leader: LeaderCallback, view: View | None = None, ready: Ready | None = None,
            topic: str | None = None) -> list[Entry]:
    """The schedule entries of the named selections, in order (disk-loss faults only when view and
    ready are given, elastic-cluster faults only with the workload's topic)."""
    names = list(names)
    check_names(names)
    catalogue: dict[str, Nemesis] = {**p0_nemeses(ctx, partition_leader=partition_leader,
                                                  metadata_leader=metadata_leader)}
    if any(name not in P0 and name != "none" for name in names):
        catalogue.update(p1_nemeses(ctx))
    if view is not None and ready is not None:
        catalogue.update(disk_loss_nemeses(ctx, ready=ready, view=view, partition_leader=partition_leader,
                                           metadata_leader=metadata_leader))
    if topic is not None and any(name in ELASTIC for name in names):
        catalogue.update({"membership": Membership(ctx, topic), "move-away": MoveAway(ctx, topic)})
    out: list[Entry] = []
    for name in names:
        for entry in NEMESES[name]:
            keys = (entry,) if isinstance(entry, str) else entry
            missing = [k for k in keys if k not in catalogue]
            if missing:
                raise ValueError(f"nemesis {name}: {', '.join(missing)} unavailable in this cluster "
                                 f"({ctx.cluster.mode} mode, {len(ctx.cluster.nodes)} nodes)")
            out.append(catalogue[keys[0]] if len(keys) == 1 else [catalogue[k] for k in keys])
    return out


@dataclass(frozen=True)
class CanaryScenario:
    bug: str
    nemeses: tuple[str, ...]
    detects: frozenset[str]  # anomaly kinds that prove the canary was caught
    why: str
    time_limit_s: float = 20.0
    fault_s: float = 6.0
    heal_s: float = 4.0
    producer: str = "plain"
    resend_probability: float = 0.0
    random_broker_fraction: float = 0.25
    needs_groups: bool = False
    fast: bool = False
    windows: int | None = None  # fault windows at most (None: as many as the time limit holds)
    nodes: int | None = None  # brokers the scenario needs (None: whatever the run asks for)
    http_only: str = ""  # why clients speaking the Kafka protocol cannot expose it ("": they can)


CANARIES: dict[str, CanaryScenario] = {c.bug: c for c in (
    CanaryScenario(
        "no-dedup", ("none",), frozenset({"duplicate"}),
        "idempotent producer; 20 % of acknowledged sends are resent as a client would after a lost ack: "
        "without dedup the value lands at a second offset",
        time_limit_s=8.0, producer="idempotent", resend_probability=0.2, fast=True,
        http_only="librdkafka numbers and retries batches itself: a Kafka client cannot send an acknowledged batch "
                  "again under its old sequence numbers"),
    CanaryScenario(
        "follower-reads", ("partition",), frozenset({"nonmonotonic-poll", "poll-skip", "lost-write"}),
        "any replica serves fetches; a consumer that read ahead on the leader meets a stale replica, gets "
        "offset-out-of-range and resets back (auto.offset.reset=latest): a nonmonotonic poll. Clients pick "
        "brokers at random (as behind a load balancer) so that they keep meeting the stale replica",
        time_limit_s=14.0, fault_s=5.0, heal_s=3.0, random_broker_fraction=1.0, fast=True,
        http_only="a Kafka consumer fetches from the partition leader its metadata names, never from a broker "
                  "picked at random"),
    CanaryScenario(
        "ack-before-commit", ("partition-leader",),
        frozenset({"lost-write", "inconsistent-offsets", "replica-divergence"}),
        "a partition leader cut off from the majority still acks writes until its lease ends; the new "
        "leader overwrites them: acknowledged writes lost",
        time_limit_s=16.0, fault_s=5.0, heal_s=3.0, fast=True),
    CanaryScenario(
        "skip-truncate", ("partition-leader",),
        frozenset({"replica-divergence", "inconsistent-offsets", "lost-write", "duplicate"}),
        "an isolated leader appends proposals it cannot commit; after the heal it keeps them instead of "
        "truncating, applies them and diverges from the other replicas",
        time_limit_s=16.0, fault_s=5.0, heal_s=3.0),
    CanaryScenario(
        "no-fsync", ("power-all",), frozenset({"lost-write", "inconsistent-offsets", "replica-divergence"}),
        "the Raft journal is never fsynced; a power failure of every node drops acknowledged entries",
        time_limit_s=16.0, fault_s=3.0, heal_s=4.0),
    CanaryScenario(
        "wiped-node-votes", ("pause-wipe-kill",),
        frozenset({"lost-write", "inconsistent-offsets", "replica-divergence", "election-safety"}),
        "issue 11's repro: a follower paused, the other follower wiped and restarted, the leader killed, the "
        "paused one resumed; the wiped broker takes its old replica id and votes for the stale follower, which "
        "hands out acknowledged offsets again; the old leader truncates them when it returns",
        time_limit_s=40.0, fault_s=3.0, heal_s=2.0, windows=1),
    CanaryScenario(
        "full-disk-keeps-leadership", ("disk-full",), frozenset({"disk-full-unavailable"}),
        "the leader of a partition runs out of disk and keeps its leadership (refusing every produce with "
        "507) instead of handing it to a replica that can write: the partition stays unavailable while "
        "the disk is full",
        time_limit_s=16.0, fault_s=10.0, heal_s=3.0),
    CanaryScenario(
        "commit-offset-lww", ("none",), frozenset({"committed-offset-regression"}),
        "consumers of one group commit their own positions; last-writer-wins lets a lower commit "
        "overwrite a higher one, which list_committed then shows",
        time_limit_s=10.0, needs_groups=True, fast=True),
    CanaryScenario(
        "new-replica-votes", ("move-away",),
        frozenset({"inconsistent-offsets", "lost-write", "replica-divergence", "election-safety", "duplicate"}),
        "a partition moves to two new brokers and one old one, and the new ones are cut off from the rest once "
        "they host it; a replica a move adds starts as a voter of the target replicas instead of a learner, so "
        "the two new, empty replicas elect a leader of their own, which takes writes at offsets the real group "
        "gave away",
        time_limit_s=16.0, fault_s=6.0, heal_s=3.0, windows=1, nodes=5),
)}


def detected(counts: dict[str, int], scenario: CanaryScenario) -> bool:
    return any(counts.get(kind) for kind in scenario.detects)


def check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in NEMESES]
    if unknown:
        raise ValueError(f"unknown nemesis {', '.join(unknown)}; known: {', '.join(NEMESES)}")
